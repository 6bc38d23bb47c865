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


def unit_rows(x: np.ndarray, eps: float = 1e-8) -> np.ndarray:
    """Rows scaled to unit length, a zero row left at zero (RadFinder clips the norm at 1e-8)."""
    x = np.asarray(x, dtype=np.float64)
    return x / np.clip(np.linalg.norm(x, axis=-1, keepdims=True), eps, None)


def grouped_ranks(queries: np.ndarray, pool: np.ndarray, query_groups, pool_groups) -> np.ndarray:
    """1-based rank of the best-scoring pool item that shares the query's group (e.g. the same report).

    Our extra pools hold several volumes per report: the other reconstruction of the same scan carries
    the identical report, so scoring it first is a hit, not a miss. Items of other groups that score
    the same as that best relevant item count against the model (a collapsed model still ranks last).
    """
    sims = unit_rows(queries) @ unit_rows(pool).T
    qg, pg = np.asarray(query_groups), np.asarray(pool_groups)
    relevant = qg[:, None] == pg[None, :]
    if not relevant.any(axis=1).all():
        raise ValueError("grouped_ranks: a query has no pool item of its group")
    best = np.where(relevant, sims, -np.inf).max(axis=1, keepdims=True)
    return 1 + ((sims >= best) & ~relevant).sum(axis=1)


def paper_recall_summary(ranks: np.ndarray, ks=(1, 5, 10, 50, 100)) -> dict[str, float]:
    """RadFinder's retrieval numbers from 1-based ranks: R@k = share with rank <= k (percent),
    MedR = floor(median of 0-based ranks) + 1, MeanR = mean of 0-based ranks + 1."""
    r0 = np.asarray(ranks, dtype=float) - 1
    out = {f"R@{k}": float(np.mean(r0 < k) * 100) for k in ks}
    out.update(MedR=float(np.floor(np.median(r0)) + 1), MeanR=float(np.mean(r0) + 1), n=int(len(r0)))
    return out


def pool_recall_repeats(image: np.ndarray, text: np.ndarray, pool_sizes=(32, 64, 128), ks=(1, 8),
                        repeats: int = 100, seed: int = 42) -> dict[str, np.ndarray]:
    """Text-to-image recall in random pools, one value per repeat: {"pool{P}_R@{k}": (repeats,) percent}.

    As RadFinder's pool retrieval: one ``default_rng(seed)`` generator; per repeat one shuffled index
    order shared by every pool size; the order is cut into non-overlapping pools of P and the leftover
    (fewer than P items) is dropped; a query hits when its own image is among the k most similar images
    of its pool. A pool size larger than the set gives no value (empty array). Ties count against the model.
    """
    img, txt = unit_rows(image), unit_rows(text)
    n = len(img)
    rng = np.random.default_rng(seed)
    out: dict[str, list[float]] = {f"pool{p}_R@{k}": [] for p in pool_sizes for k in ks}
    for _ in range(repeats):
        order = np.arange(n)
        rng.shuffle(order)
        for p in pool_sizes:
            hits = {k: 0 for k in ks}
            queries = 0
            for start in range(0, n - p + 1, p):
                idx = order[start:start + p]
                ranks = retrieval_ranks(txt[idx], img[idx])
                for k in ks:
                    hits[k] += int(np.sum(ranks <= k))
                queries += p
            if queries:
                for k in ks:
                    out[f"pool{p}_R@{k}"].append(100.0 * hits[k] / queries)
    return {key: np.array(v, dtype=float) for key, v in out.items()}


def _ranked_without_self(sims: np.ndarray, i: int) -> np.ndarray:
    """Other items by descending similarity. RadFinder sets self-similarity to -inf, which still lets the
    query itself into its top k when k >= the pool size; here it is left out entirely."""
    order = np.argsort(-sims[i], kind="stable")
    return order[order != i]


def average_precision_at_k(image: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    """Volume-to-volume AP@k per query, as RadFinder defines it.

    Relevant = shares at least one positive label with the query; the query itself is excluded;
    AP@k = sum over relevant ranks r <= k of (relevant so far / r), divided by k (not by the number of
    relevant items). The caller keeps only abnormal volumes (at least one positive), as RadFinder does.
    """
    sims = unit_rows(image) @ unit_rows(image).T
    y = np.asarray(labels) == 1
    ap = np.zeros(len(y))
    for i in range(len(y)):
        top = _ranked_without_self(sims, i)[:k]
        rel = (y[top] & y[i]).any(axis=1)
        ap[i] = float(np.sum(np.cumsum(rel)[rel] / (np.flatnonzero(rel) + 1))) / k
    return ap


def spectre_average_precision_at_k(image: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    """SPECTRE's variant, labelled as such: relevant = identical label vector, AP divided by
    min(#relevant, k), queries without any relevant item skipped (NaN here, dropped by the caller)."""
    sims = unit_rows(image) @ unit_rows(image).T
    y = np.asarray(labels)
    same = (y[:, None, :] == y[None, :, :]).all(axis=2)
    np.fill_diagonal(same, False)
    ap = np.full(len(y), np.nan)
    for i in range(len(y)):
        n_pos = int(same[i].sum())
        if n_pos == 0:
            continue
        rel = same[i][_ranked_without_self(sims, i)[:k]]
        ap[i] = float(np.sum(np.cumsum(rel)[rel] / (np.flatnonzero(rel) + 1))) / min(n_pos, k)
    return ap


def mean7_prompt_embedding(per_template: np.ndarray) -> np.ndarray:
    """(T, L, E) prompt embeddings of T templates -> (L, E): each template's embeddings L2-normalised,
    averaged over the templates, then normalised again (RadFinder's ``mean7`` prompt mode)."""
    return unit_rows(unit_rows(np.asarray(per_template)).mean(axis=0))


def localization_summary(pred: np.ndarray, target: np.ndarray, bin_mm: float) -> dict[str, float]:
    """Exact-bin accuracy, accuracy within 1 and 2 bins (percent), MAE and median error in mm and
    the MAE in bins, from per-snippet predicted and true depth bins."""
    err = np.abs(np.asarray(pred, dtype=float) - np.asarray(target, dtype=float))
    if len(err) == 0:
        return {"n": 0}
    return {"exact": float(np.mean(err == 0) * 100), "within_1_bin": float(np.mean(err <= 1) * 100),
            "within_2_bins": float(np.mean(err <= 2) * 100), "mae_mm": float(np.mean(err) * bin_mm),
            "median_mm": float(np.median(err) * bin_mm), "mae_bins": float(np.mean(err)), "n": int(len(err))}


def random_bin_draws(n_bins: np.ndarray, seed: int = 42) -> np.ndarray:
    """One uniformly random valid bin per snippet, drawn as RadFinder's random baseline does
    (``RandomState(seed).randint(lo, hi + 1)`` per snippet, valid range 0 .. n_bins - 1)."""
    rng = np.random.RandomState(seed)
    return np.array([rng.randint(0, int(n)) for n in n_bins], dtype=int)


def middle_bins(n_bins: np.ndarray) -> np.ndarray:
    """RadFinder's middle baseline: (first + last valid bin) // 2 = (n_bins - 1) // 2."""
    return (np.asarray(n_bins, dtype=int) - 1) // 2


def random_bin_expectation(target: np.ndarray, n_bins: np.ndarray, bin_mm: float) -> dict[str, float]:
    """The random baseline's exact expectation: every bin of a scan equally likely.

    Each snippet contributes the distribution of |b - target| over b = 0 .. n-1 with weight 1/n; the
    accuracies and the MAE are means of per-snippet expectations and the median is the median of the
    pooled distribution (each snippet weighted equally), so it matches the seeded draws on average.
    """
    errors, weights = [], []
    for t, n in zip(np.asarray(target, dtype=int), np.asarray(n_bins, dtype=int)):
        e = np.abs(np.arange(n) - t).astype(float)
        errors.append(e)
        weights.append(np.full(n, 1.0 / n))
    if not errors:
        return {"n": 0}
    e, w = np.concatenate(errors), np.concatenate(weights) / len(errors)
    order = np.argsort(e, kind="stable")
    cum = np.cumsum(w[order])
    lo = e[order][np.searchsorted(cum, 0.5 - 1e-12)]
    hi = e[order][np.searchsorted(cum, 0.5 + 1e-12)]
    return {"exact": float(np.sum(w * (e == 0)) * 100), "within_1_bin": float(np.sum(w * (e <= 1)) * 100),
            "within_2_bins": float(np.sum(w * (e <= 2)) * 100), "mae_mm": float(np.sum(w * e) * bin_mm),
            "median_mm": float((lo + hi) / 2 * bin_mm), "mae_bins": float(np.sum(w * e)), "n": len(errors)}


def chexzero_metrics(labels: np.ndarray, scores: np.ndarray) -> dict[str, float] | None:
    """One class as RadFinder's ``evaluate_chexzero``: ROC AUC, the Youden-J threshold (a non-finite one
    becomes 0.5), sensitivity and specificity read off the ROC curve at that point, and precision, weighted
    F1 and balanced accuracy of ``score >= threshold``. None when the AUC is undefined (one class only)."""
    from sklearn.metrics import balanced_accuracy_score, f1_score, precision_score, roc_curve

    y, s = np.asarray(labels), np.asarray(scores)
    if len(np.unique(y)) < 2:
        return None
    fpr, tpr, thresholds = roc_curve(y, s)
    best = int(np.argmax(tpr - fpr))
    threshold = float(thresholds[best]) if np.isfinite(thresholds[best]) else 0.5
    pred = (s >= threshold).astype(int)
    return {"auc": float(roc_auc_score(y, s)), "threshold": threshold, "sensitivity": float(tpr[best]),
            "specificity": float(1.0 - fpr[best]), "precision": float(precision_score(y, pred, zero_division=0.0)),
            "f1_weighted": float(f1_score(y, pred, average="weighted", zero_division=0.0)),
            "balanced_accuracy": float(balanced_accuracy_score(y, pred))}
