"""Percentile bootstrap over patients, and the paired version for the difference between two runs.

Every resample draws patients with replacement; an item (query, scan, snippet) then counts as many times
as its patient was drawn. Metrics are written as functions of per-item weights, so one set of patient
draws serves every metric and two runs are compared on exactly the same resamples.
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


def percentile_ci(values: np.ndarray, level: float = 95.0) -> tuple[float, float]:
    values = np.asarray(values, dtype=float)
    values = values[~np.isnan(values)]
    if len(values) == 0:
        return float("nan"), float("nan")
    half = (100.0 - level) / 2
    lo, hi = np.percentile(values, [half, 100 - half])
    return float(lo), float(hi)


def bootstrap_ci(metric: Metric, weights: np.ndarray, level: float = 95.0) -> dict[str, float]:
    """Point estimate (all weights 1) and the percentile CI over the resampled weights."""
    point = metric(np.ones(weights.shape[1]))
    lo, hi = percentile_ci(np.array([metric(w) for w in weights]), level)
    return {"value": float(point), "ci_low": lo, "ci_high": hi}


def paired_difference(metric_a: Metric, metric_b: Metric, weights: np.ndarray, level: float = 95.0) -> dict:
    """a - b with its CI on the same patient resamples; ``within_ci`` when the CI contains 0."""
    point = metric_a(np.ones(weights.shape[1])) - metric_b(np.ones(weights.shape[1]))
    lo, hi = percentile_ci(np.array([metric_a(w) - metric_b(w) for w in weights]), level)
    return {"difference": float(point), "ci_low": lo, "ci_high": hi,
            "within_ci": bool(lo <= 0 <= hi) if not np.isnan(lo) else None}


def weighted_mean(values: np.ndarray) -> Metric:
    values = np.asarray(values, dtype=float)
    return lambda w: float(np.sum(w * values) / np.sum(w)) if np.sum(w) > 0 else float("nan")
