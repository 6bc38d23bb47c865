"""Reading a run's saved embeddings (npz without pickle + a metadata table): numpy and pandas only, so the
report-side rules (evaluate, compare, figures) need no deep-learning stack."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ctvlp.core.label_set import CTRATE_LABELS

PROMPT_SETS = ("ensemble", "ctclip_pair")


def load_embeddings(npz: Path, meta: Path) -> dict[str, tuple[dict, list[dict]]]:
    """{set: (embedding dict as ``item_table`` wants it, metadata rows)}."""
    data = np.load(npz, allow_pickle=False)
    table = pd.read_parquet(meta)
    out = {}
    for name, part in table.groupby("set", sort=False):
        emb = {k.split("/", 1)[1]: data[k] for k in data.files if k.startswith(f"{name}/")}
        offsets = np.concatenate([[0], np.cumsum(emb["n_bins"])])
        emb["depth"] = [emb["depth"][a:b] for a, b in zip(offsets[:-1], offsets[1:])]
        emb["prompt_sets"] = list(PROMPT_SETS)
        labels = part[list(CTRATE_LABELS)].to_numpy(dtype=int)
        meta_rows = [{"volume_id": r.volume_id, "scan_id": r.scan_id, "patient_id": r.patient_id,
                      "has_text": bool(r.has_text), "labels": y} for r, y in zip(part.itertuples(), labels)]
        out[name] = (emb, meta_rows)
    return out
