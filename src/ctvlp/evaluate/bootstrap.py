"""Percentile bootstrap, over patients (our protocol) or over samples (the paper's), and the paired
version for the difference between two runs.

Patient unit: every resample draws patients with replacement; an item (query, scan, snippet) then counts
as many times as its patient was drawn. Sample unit (RadFinder): every resample draws the items themselves,
``default_rng(seed).integers(0, n, size=(resamples, n))``, the same draws as the authors' code. Metrics are
written as functions of per-item weights (multiplicities), so one set of draws serves every metric and two
runs are compared on exactly the same resamples. An interval whose resamples are undefined (a label that
lost all its positives or negatives) is NA, never a number.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

Metric = Callable[[np.ndarray], float]


def patient_weights(patients: np.ndarray, n_resamples: int, seed: int) -> np.ndarray:
    """(n_resamples, n_items) multiplicities from drawing patients with replacement."""
    codes, inverse = np.unique(np.asarray(patients), return_inverse=True)
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(codes), size=(n_resamples, len(codes)))
    counts = np.stack([np.bincount(d, minlength=len(codes)) for d in draws])
    return counts[:, inverse].astype(float)


def sample_weights(n_items: int, n_resamples: int, seed: int) -> np.ndarray:
    """(n_resamples, n_items) multiplicities from drawing items with replacement (RadFinder's unit)."""
    idx = np.random.default_rng(seed).integers(0, n_items, size=(n_resamples, n_items))
    return np.stack([np.bincount(row, minlength=n_items) for row in idx]).astype(np.float32)


def percentile_ci(values: np.ndarray, level: float = 95.0) -> tuple[float, float]:
    """Percentile interval; NaN (printed NA) when any resample is undefined, because dropping those
    resamples would report an interval conditioned on the label surviving the draw."""
    values = np.asarray(values, dtype=float)
    if len(values) == 0 or np.isnan(values).any():
        return float("nan"), float("nan")
    half = (100.0 - level) / 2
    lo, hi = np.percentile(values, [half, 100 - half])
    return float(lo), float(hi)


def bootstrap_ci(metric: Metric, weights: np.ndarray, level: float = 95.0) -> dict[str, float]:
    """Point estimate (all weights 1) and the percentile CI over the resampled weights."""
    point = metric(np.ones(weights.shape[1]))
    values = np.array([metric(w) for w in weights], dtype=float)
    lo, hi = percentile_ci(values, level)
    out = {"value": float(point), "ci_low": lo, "ci_high": hi}
    undefined = int(np.isnan(values).sum())
    if undefined:
        out["ci_na"] = f"{undefined} of {len(values)} resamples undefined"
    return out


def paired_difference(metric_a: Metric, metric_b: Metric, weights: np.ndarray, level: float = 95.0) -> dict:
    """a - b with its CI on the same patient resamples; ``within_ci`` when the CI contains 0."""
    point = metric_a(np.ones(weights.shape[1])) - metric_b(np.ones(weights.shape[1]))
    lo, hi = percentile_ci(np.array([metric_a(w) - metric_b(w) for w in weights]), level)
    return {"difference": float(point), "ci_low": lo, "ci_high": hi,
            "within_ci": bool(lo <= 0 <= hi) if not np.isnan(lo) else None}


def weighted_mean(values: np.ndarray) -> Metric:
    values = np.asarray(values, dtype=float)
    return lambda w: float(np.sum(w * values) / np.sum(w)) if np.sum(w) > 0 else float("nan")
