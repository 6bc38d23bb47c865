"""Training samples: cached window features + report text + labels + mined snippets per volume."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ctvlp.core.label_set import CTRATE_LABELS
from ctvlp.features.window import feature_file, fits_in_memory, load_features, volume_tokens


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
    label_values: dict[str, int] | None = None  # every label column of the labels table (any label set)


LABEL_META = {"volume_id", "dataset", "labeler", "labeler_version", "split"}


def report_text(findings: str | None, impression: str | None, fallback: str | None) -> str | None:
    """The report as RadFinder gives it to the text tower: "Findings: ...\nImpressions: ...\n" (the word
    "Impressions" removed from the findings, as RadFinder does); the raw text when neither section exists."""
    findings, impression = (findings or "").strip(), (impression or "").strip()
    if not findings and not impression:
        return fallback
    out = f"Findings: {findings}\n".replace("Impressions", "").replace("impressions", "") if findings else ""
    return out + (f"Impressions: {impression}\n" if impression else "")


def build_samples(volumes: pd.DataFrame, reports: pd.DataFrame, labels: pd.DataFrame,
                  snippets: pd.DataFrame, features: pd.DataFrame) -> list[Sample]:
    """One sample per volume with features; text/labels/snippets where the volume has them."""
    have = set(features[features.status == "ok"].volume_id)
    sections = {"findings", "impression"} <= set(reports.columns)
    text = {r.volume_id: report_text(r.findings, r.impression, r.text) if sections else r.text
            for r in reports.itertuples()}
    lab = labels.set_index("volume_id")
    label_columns = [c for c in lab.columns if c not in LABEL_META and pd.api.types.is_numeric_dtype(lab[c])]
    snip: dict[str, list] = {}
    for s in snippets.itertuples():
        snip.setdefault(s.volume_id, []).append((s.snippet, int(s.depth_bin)))
    samples = []
    for v in volumes[volumes.status == "ok"].sort_values("volume_id").itertuples():
        if v.volume_id not in have:
            continue
        row = lab.loc[v.volume_id] if v.volume_id in lab.index else None
        y = np.array([_label(row, c) for c in CTRATE_LABELS], dtype=np.int64)
        values = {c: _label(row, c) for c in label_columns} if row is not None else None
        samples.append(Sample(v.volume_id, v.split, v.dataset, v.patient_id, text.get(v.volume_id), y,
                              snip.get(v.volume_id, []), v.scan_id, values))
    return samples


def _label(row, column: str) -> int:
    """1, 0 or -1 (unknown: no row, no column, or a missing value)."""
    if row is None or column not in row.index or pd.isna(row[column]):
        return -1
    return int(row[column])


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


def feature_stats(features, samples: list[Sample], seed: int, max_volumes: int = 2000) -> dict:
    """{"scan"|"depth": (mean, std)} per channel of the training tokens, streamed (float64 sums) over at
    most ``max_volumes`` volumes chosen by the seed: memory stays flat at any dataset size."""
    order = np.random.default_rng(seed).permutation(len(samples))[:max_volumes]
    sums: dict[str, list] = {}
    for i in sorted(order):
        with torch.no_grad():
            tokens = features.tokens(samples[i].volume_id)
        for kind in ("scan", "depth"):
            t = tokens[f"{kind}_tokens"].double()
            acc = sums.setdefault(kind, [0, 0.0, 0.0])
            acc[0] += len(t)
            acc[1] = acc[1] + t.sum(dim=0)
            acc[2] = acc[2] + (t * t).sum(dim=0)
    stats = {}
    for kind, (n, total, squares) in sums.items():
        mean = total / n
        std = ((squares / n - mean * mean).clamp(min=0) * n / max(n - 1, 1)).sqrt()
        stats[kind] = (mean.float(), std.float())
    return stats
