"""Examples for the qualitative panel: held-out snippets with their scan, truth, prediction and profile."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ctvlp.evaluate.protocol import bin_profile
from ctvlp.features.cache import cache_file, read_cached


def qualitative_examples(hospital: tuple[dict, list[dict]] | None, snippets: pd.DataFrame, cache_dir: Path,
                         n: int) -> list[dict]:
    """Up to n examples, the first snippet of each held-out scan in volume-id order (deterministic)."""
    if hospital is None:
        return []
    emb, meta = hospital
    texts: dict[str, list[str]] = {}
    for row in snippets.itertuples():  # the order build_samples used, so index k matches the embeddings
        texts.setdefault(row.volume_id, []).append(row.snippet)
    seen, examples = set(), []
    for k, owner in enumerate(emb["snippet_owner"]):
        owner = int(owner)
        if owner in seen or len(examples) >= n:
            continue
        seen.add(owner)
        volume_id = meta[owner]["volume_id"]
        index = sum(1 for j in range(k) if int(emb["snippet_owner"][j]) == owner)
        profile = bin_profile(emb, k)
        text = texts.get(volume_id, [""])[index] if index < len(texts.get(volume_id, [])) else ""
        examples.append({"volume": read_cached(cache_file(cache_dir, volume_id)), "true_bin": int(emb["snippet_bin"][k]),
                         "pred_bin": int(np.argmax(profile)), "profile": profile,
                         "label": f"{volume_id}: \"{text[:70]}\""})
    return examples
