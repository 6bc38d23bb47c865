"""Embeddings of a trained run on the evaluation sets (rule ``embed``): scans, depth bins, reports,
snippets and prompts, saved as plain arrays (npz without pickle) plus a metadata table."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ctvlp.evaluate.arrays import PROMPT_SETS, load_embeddings  # noqa: F401 (re-exported)
from ctvlp.core.label_set import CTRATE_LABELS
from ctvlp.evaluate.paper_embed import paper_arrays
from ctvlp.evaluate.protocol import EVAL_SETS
from ctvlp.inference.embedding import embed_samples


def ctclip_pair_prompts() -> dict[str, list[list[str]]]:
    """The single prompt pair CT-CLIP's zero-shot script uses: "<label> is present." / "... is not present."."""
    return {"positive": [[f"{label} is present."] for label in CTRATE_LABELS],
            "negative": [[f"{label} is not present."] for label in CTRATE_LABELS]}


def evaluation_sets(samples: list) -> dict[str, list]:
    """Held-out samples per evaluation set: the test split of each source."""
    return {name: [s for s in samples if s.dataset == name and s.split == "test"] for name in EVAL_SETS}


def report_sections(reports: pd.DataFrame) -> dict[str, tuple[str, str]]:
    """volume_id -> (findings, impressions) of the text stage's reports, for the paper's Merlin-style queries."""
    return {v: (str(f or ""), str(i or "")) for v, f, i in zip(reports.volume_id, reports.findings, reports.impression)}


def embed_run(model, samples: list, features, prompts: dict, out_npz: Path, out_meta: Path,
              sections: dict[str, tuple[str, str]] | None = None) -> dict[str, int]:
    """Every evaluation set's arrays, plus what the paper's protocols read (``paper_arrays``: the mean7 prompt
    embeddings and the findings / impressions / full report variants); ``scan_copy`` is the image copy head
    (``scan_prompt``), which the paper's zero-shot uses."""
    arrays: dict[str, np.ndarray] = {}
    rows = []
    with torch.no_grad():  # the same for every set: encoded once
        pair = [t.float().cpu().numpy() for t in model.encode_prompts(ctclip_pair_prompts())]
    for name, part in evaluation_sets(samples).items():
        if not part:
            continue
        emb = embed_samples(model, part, features, prompts)
        arrays.update({f"{name}/{k}": emb[k] for k in ("scan", "scan_prompt", "report", "snippet", "snippet_owner",
                                                       "snippet_bin", "n_bins")})
        arrays[f"{name}/scan_copy"] = emb["scan_prompt"]
        arrays.update({f"{name}/{k}": v for k, v in paper_arrays(model, part, sections or {}).items()})
        arrays[f"{name}/depth"] = np.concatenate(emb["depth"])
        arrays[f"{name}/pos_ensemble"], arrays[f"{name}/neg_ensemble"] = emb["pos"], emb["neg"]
        arrays[f"{name}/pos_ctclip_pair"], arrays[f"{name}/neg_ctclip_pair"] = pair
        for s in part:
            rows.append({"set": name, "volume_id": s.volume_id, "scan_id": s.scan_id, "patient_id": s.patient_id,
                         "has_text": bool(s.text), **dict(zip(CTRATE_LABELS, map(int, s.labels)))})
    out_npz.parent.mkdir(parents=True, exist_ok=True)
    np.savez(out_npz, **arrays)
    pd.DataFrame(rows).to_parquet(out_meta, index=False)
    return {k: v for k, v in pd.DataFrame(rows).groupby("set").size().items()} if rows else {}
