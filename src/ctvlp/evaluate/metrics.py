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


def zero_shot_probabilities(img: np.ndarray, pos: np.ndarray, neg: np.ndarray, scale: float = 1.0) -> np.ndarray:
    """p(label) = softmax over scale x (cos to positive prompt, cos to negative prompt): (B, L).

    ``scale`` is the prompt loss's logit scale, so p is the probability that loss trained; it changes
    no AUC (monotone), only how readable the printed probabilities are."""
    unit = lambda x: x / np.linalg.norm(x, axis=-1, keepdims=True)  # noqa: E731
    img, pos, neg = unit(img), unit(pos), unit(neg)
    s_pos, s_neg = img @ pos.T, img @ neg.T
    return 1.0 / (1.0 + np.exp(-scale * (s_pos - s_neg)))


def auc_or_na(labels: np.ndarray, scores: np.ndarray) -> tuple[float, str]:
    """AUC over known labels (-1 dropped); NaN with a reason when a class is missing."""
    known = labels >= 0
    y, s = labels[known], scores[known]
    if len(np.unique(y)) < 2:
        return float("nan"), f"undefined: {'no positives' if (y == 0).all() or len(y) == 0 else 'no negatives'}"
    return float(roc_auc_score(y, s)), ""


def localization_errors(pred_bins: np.ndarray, target_bins: np.ndarray, bin_mm: float) -> np.ndarray:
    return np.abs(np.asarray(pred_bins) - np.asarray(target_bins)) * bin_mm


def weighted_auc(labels: np.ndarray, scores: np.ndarray, weights: np.ndarray | None = None) -> float:
    """ROC AUC (Mann-Whitney, ties count half) with integer sample weights: the bootstrap's multiplicities.

    Equal to ``roc_auc_score(labels, scores, sample_weight=weights)`` but vectorised, because the bootstrap
    calls it (labels x resamples) times. NaN when a class has no weight.
    """
    w = np.ones(len(labels)) if weights is None else np.asarray(weights, dtype=float)
    order = np.argsort(scores, kind="mergesort")
    s, y, w = np.asarray(scores)[order], np.asarray(labels)[order], w[order]
    wp, wn = w * (y == 1), w * (y == 0)
    total_p, total_n = wp.sum(), wn.sum()
    if total_p == 0 or total_n == 0:
        return float("nan")
    uniq, start = np.unique(s, return_index=True)
    p_group, n_group = np.add.reduceat(wp, start), np.add.reduceat(wn, start)
    below_n = np.cumsum(n_group) - n_group
    return float(np.sum(p_group * (below_n + 0.5 * n_group)) / (total_p * total_n))


def youden_metrics(labels: np.ndarray, scores: np.ndarray) -> dict[str, float]:
    """Threshold maximising sensitivity + specificity - 1 (Youden's J), and the metrics at it."""
    from sklearn.metrics import roc_curve

    known = labels >= 0
    y, s = labels[known], scores[known]
    if len(np.unique(y)) < 2:
        return {k: float("nan") for k in ("threshold", "f1", "precision", "sensitivity", "specificity",
                                          "balanced_accuracy")}
    fpr, tpr, thresholds = roc_curve(y, s)
    best = int(np.argmax(tpr - fpr))
    pred = s >= thresholds[best]
    tp, fp = int(np.sum(pred & (y == 1))), int(np.sum(pred & (y == 0)))
    fn, tn = int(np.sum(~pred & (y == 1))), int(np.sum(~pred & (y == 0)))
    sens, spec = tp / max(tp + fn, 1), tn / max(tn + fp, 1)
    prec = tp / max(tp + fp, 1)
    f1 = 2 * prec * sens / max(prec + sens, 1e-12)
    return {"threshold": float(min(thresholds[best], 1.0)), "f1": f1, "precision": prec, "sensitivity": sens,
            "specificity": spec, "balanced_accuracy": (sens + spec) / 2}
