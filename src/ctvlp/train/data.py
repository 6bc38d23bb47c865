"""Training samples: cached window features + report text + labels + mined snippets per volume."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ctvlp.labels import CTRATE_LABELS
from ctvlp.models.features import feature_file, fits_in_memory, load_features, volume_tokens


@dataclass
class Sample:
    volume_id: str
    split: str
    dataset: str
    patient_id: str
    text: str | None
    labels: np.ndarray
    snippets: list[tuple[str, int]] = field(default_factory=list)
    scan_id: str = ""


def build_samples(volumes: pd.DataFrame, reports: pd.DataFrame, labels: pd.DataFrame,
                  snippets: pd.DataFrame, features: pd.DataFrame) -> list[Sample]:
    """One sample per volume with features; text/labels/snippets where the volume has them."""
    have = set(features[features.status == "ok"].volume_id)
    text = reports.set_index("volume_id")["text"].to_dict()
    lab = labels.set_index("volume_id")
    snip: dict[str, list] = {}
    for s in snippets.itertuples():
        snip.setdefault(s.volume_id, []).append((s.snippet, int(s.depth_bin)))
    samples = []
    for v in volumes[volumes.status == "ok"].sort_values("volume_id").itertuples():
        if v.volume_id not in have:
            continue
        row = lab.loc[v.volume_id] if v.volume_id in lab.index else None
        y = np.array([int(row[c]) if row is not None else -1 for c in CTRATE_LABELS], dtype=np.int64)
        samples.append(Sample(v.volume_id, v.split, v.dataset, v.patient_id, text.get(v.volume_id), y,
                              snip.get(v.volume_id, []), v.scan_id))
    return samples


class FeatureSet:
    """Token tensors per volume, read from safetensors; kept in memory when the feature files are small
    (the demo), read on demand otherwise (safetensors maps the file, so a read is cheap)."""

    def __init__(self, feature_dir: str | Path, keep_in_memory: bool | None = None, limit_bytes: float = 2e9):
        self.feature_dir = Path(feature_dir)
        self.keep = (fits_in_memory(self.feature_dir, "*.safetensors", limit_bytes) if keep_in_memory is None
                     else keep_in_memory)
        self._cache: dict[str, dict[str, torch.Tensor]] = {}

    def for_model(self, model) -> "FeatureSet":
        """Frozen features serve any model whose window encoder is frozen (the counterpart of
        ``LiveFeatures.for_model``)."""
        if model.window is not None:
            raise ValueError(f"{self.feature_dir}: frozen features cannot train or evaluate a model whose window "
                             "encoder is trainable; read the cache instead (LiveFeatures)")
        return self

    def tokens(self, volume_id: str) -> dict[str, torch.Tensor]:
        if volume_id in self._cache:
            return self._cache[volume_id]
        out = volume_tokens(load_features(feature_file(self.feature_dir, volume_id)))
        if self.keep:
            self._cache[volume_id] = out
        return out


def epoch_order(n: int, seed: int, epoch: int) -> np.ndarray:
    """The sample order of an epoch: a pure function of (seed, epoch), so a resumed job sees the same batches."""
    return np.random.default_rng([seed, epoch]).permutation(n)
