"""Metrics with their protocol choices explicit (pool, ties, undefined AUCs)."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import roc_auc_score


def retrieval_ranks(queries: np.ndarray, pool: np.ndarray, truth: np.ndarray | None = None) -> np.ndarray:
    """1-based rank of each query's true item in the pool by cosine similarity.

    Ties are counted against the model (rank = 1 + items scoring higher + other items scoring the same),
    so a collapsed embedding gets the worst rank, never the best. ``truth[i]`` is the pool index of
    query i's item (default: the same index).
    """
    q = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    p = pool / np.linalg.norm(pool, axis=1, keepdims=True)
    sims = q @ p.T
    truth = np.arange(len(q)) if truth is None else np.asarray(truth)
    true_sim = sims[np.arange(len(q)), truth][:, None]
    return 1 + (sims > true_sim).sum(axis=1) + (sims == true_sim).sum(axis=1) - 1


def retrieval_summary(ranks: np.ndarray, ks=(1, 5, 10, 50, 100)) -> dict[str, float]:
    out = {f"R@{k}": float(np.mean(ranks <= k) * 100) for k in ks}
    out.update({"median_rank": float(np.median(ranks)), "mean_rank": float(np.mean(ranks)), "pool": int(len(ranks))})
    return out


def zero_shot_probabilities(img: np.ndarray, pos: np.ndarray, neg: np.ndarray) -> np.ndarray:
    """p(label) = softmax over (cos to positive prompt, cos to negative prompt): (B, L)."""
    unit = lambda x: x / np.linalg.norm(x, axis=-1, keepdims=True)  # noqa: E731
    img, pos, neg = unit(img), unit(pos), unit(neg)
    s_pos, s_neg = img @ pos.T, img @ neg.T
    return 1.0 / (1.0 + np.exp(-(s_pos - s_neg)))


def auc_or_na(labels: np.ndarray, scores: np.ndarray) -> tuple[float, str]:
    """AUC over known labels (-1 dropped); NaN with a reason when a class is missing."""
    known = labels >= 0
    y, s = labels[known], scores[known]
    if len(np.unique(y)) < 2:
        return float("nan"), f"undefined: {'no positives' if (y == 0).all() or len(y) == 0 else 'no negatives'}"
    return float(roc_auc_score(y, s)), ""


def localization_errors(pred_bins: np.ndarray, target_bins: np.ndarray, bin_mm: float) -> np.ndarray:
    return np.abs(np.asarray(pred_bins) - np.asarray(target_bins)) * bin_mm
