"""The extra embeddings the paper's protocols read (``ctvlp.evaluate.paper``), for the embed step to save.

Imported by the embed step only (it needs the model, hence torch); the report-side rules never import it.
Wiring, per evaluation set, next to the arrays the embed step already writes::

    arrays.update({f"{name}/{k}": v for k, v in paper_arrays(model, part, sections).items()})

``sections``: volume_id -> (findings, impressions) from the text stage's ``reports.parquet``. The image copy
head is the model's business: when the model has one, the embed step saves its scan embeddings as
``{name}/scan_copy`` and zero-shot uses them; without it the main head is used and the metrics say so.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch

from ctvlp.evaluate.zero_shot import mean7_embeddings, pool_text_variants

VARIANT_KEYS = {"findings": "report_findings", "impressions": "report_impressions", "full": "report_full"}


@torch.no_grad()
def paper_arrays(model, samples: Sequence, sections: Mapping[str, tuple[str, str]],
                 batch_size: int = 16) -> dict[str, np.ndarray]:
    """``pos_mean7``/``neg_mean7`` (18, E) through the main text head, and the three Merlin-style report
    variants (findings / impressions / full, RadFinder's text format) of every sample through the main text head."""
    model.eval()

    def encode(prompts: dict) -> tuple[np.ndarray, np.ndarray]:
        pos, neg = model.encode_prompts(prompts)
        return pos.float().cpu().numpy(), neg.float().cpu().numpy()

    out: dict[str, np.ndarray] = {}
    out["pos_mean7"], out["neg_mean7"] = mean7_embeddings(encode)
    variants = [pool_text_variants(*sections.get(s.volume_id, ("", ""))) for s in samples]
    for variant, key in VARIANT_KEYS.items():
        texts = [v[variant] for v in variants]
        chunks = [model.encode_reports(texts[k:k + batch_size]).float().cpu().numpy()
                  for k in range(0, len(texts), batch_size)]
        out[key] = np.concatenate(chunks) if chunks else np.zeros((0, out["pos_mean7"].shape[1]), np.float32)
    return out
