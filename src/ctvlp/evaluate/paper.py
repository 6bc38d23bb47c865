"""The paper's evaluation protocols as the authors' code computes them (``evaluate.protocol: paper``).

Source: lmb-freiburg/radfinder @7c6ab92 (see the protocol notes below for each choice). What differs from
it, and why, is in ``PAPER_DIFFERENCES`` and printed under every paper table.

Embedding keys read from a run's ``embeddings.npz`` (written by the embed step), per evaluation set:

- ``scan``: main image head; ``report``: main text head of the report.
- ``scan_copy`` (optional): the image copy head, used for zero-shot as in RadFinder; when the run has no
  copy head the main head is used and the metrics say so (``image_head``).
- ``pos_mean7`` / ``neg_mean7`` (optional, (18, E)): mean7 prompt embeddings through the main text head,
  made with ``ctvlp.evaluate.zero_shot.mean7_embeddings``; absent -> the zero-shot cells are NA with a reason.
- ``report_findings`` / ``report_impressions`` / ``report_full`` (optional, Merlin): the three text
  variants of ``ctvlp.evaluate.zero_shot.pool_text_variants``; without them only ``full`` is computed, from
  ``report``.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from ctvlp.core.label_set import CTRATE_LABELS
from ctvlp.evaluate.bootstrap import percentile_ci, sample_weights, weighted_mean
from ctvlp.core.metrics import (average_precision_at_k, chexzero_metrics, localization_summary, middle_bins,
                                    paper_recall_summary, pool_recall_repeats, random_bin_draws,
                                    random_bin_expectation, retrieval_ranks, spectre_average_precision_at_k,
                                    unit_rows, weighted_auc, zero_shot_probabilities)

PAPER_NOTES = {
    "source": "lmb-freiburg/radfinder @7c6ab92",
    "ctrate_dup_all": "every CT-RATE validation volume is its own query and pool item; text-to-image; only the exact "
                      "paired volume is a hit (the other reconstruction with the identical report is a distractor)",
    "ctrate_first_all": "one volume per report key, the first in sorted-path order",
    "retrieval_metrics": "R@k = share of queries with 0-based rank < k; MedR = floor(median)+1; MeanR = mean+1",
    "zero_shot": "mean7: 7 templates, label names verbatim, each template's prompt embeddings L2-normalised, "
                 "averaged, re-normalised; main text head; image copy head; p = softmax(cos+, cos-); CT-RATE "
                 "first_all with its 18 labels; Rad-ChestCT 16 classes (calcifications merged by max, mosaic "
                 "dropped); per-class ROC AUC, classes with undefined AUC skipped, unweighted macro mean; Youden-J "
                 "thresholds for sensitivity, specificity, precision, weighted F1, balanced accuracy",
    "v2v": "CT-RATE first_all, abnormal volumes only (>= 1 positive of 18), main image head, self excluded; "
           "relevant = shares >= 1 positive label; AP@k divided by k",
    "v2v_spectre": "SPECTRE's variant: relevant = identical label vector, AP divided by min(#relevant, k), queries "
                   "without a relevant item skipped",
    "merlin_pool": "Merlin test split; random pools, one default_rng(seed) shuffle per repeat shared by all pool "
                   "sizes, "
                   "leftover beyond a multiple of the pool size dropped; text-to-image hit = own image in top k; "
                   "findings / impressions / full as separate queries through the main text head; CI = 2.5/97.5 "
                   "percentiles of the repeats",
    "localization": "one snippet per scan; prediction = argmax over depth bins; exact, within 1 and 2 bins, MAE, "
                    "median; random baseline = RandomState(seed) draws (and its exact expectation); middle = "
                    "(first + last bin) // 2",
    "bootstrap": "samples (queries, volumes, snippets), not patients; percentile CI; retrieval ranks computed once "
                 "on the full pool and resampled",
}
PAPER_DIFFERENCES = [
    "CT-RATE volumes our QC rejects (known broken, no_chest list, unreadable) are not in the pools; RadFinder keeps "
    "no-chest studies in first_all/dup_all",
    "ties in similarity count against the model (RadFinder's argsort order breaks them arbitrarily; exact ties "
    "only occur for identical embeddings)",
    "zero-shot bootstrap recomputes the AUCs in every resample; the Youden-J metrics are point estimates only "
    "(RadFinder recomputes them in every resample too)",
    "volume-to-volume: the query itself never enters its own top k (RadFinder's -inf self-similarity lets it in "
    "when k >= the number of abnormal volumes: only in tiny pools such as the demo's)",
    "report text: our text stage's (findings, then impression, no headers), in training and evaluation alike; "
    "RadFinder trains and evaluates on 'Findings: {F}\\nImpressions: {I}\\n' (Merlin pool retrieval uses RadFinder's "
    "format through ctvlp.evaluate.zero_shot.pool_text_variants)",
    "training (not evaluation) reads every CT-RATE reconstruction as its own pair; RadFinder trains on first_all with "
    "a random reconstruction of the report drawn per fetch",
    "localization: the first snippet of each scan in report order (RadFinder: the lexicographically first slice "
    "key); bin size from the run's config (12 mm in the paper preset, as RadFinder's hard-coded value)",
]


PAPER_SETS = ("ct_rate", "rad_chestct", "merlin", "hospital")


@dataclass(frozen=True)
class PaperSettings:
    """``evaluate.paper`` in the config."""

    resamples: int = 10000
    seed: int = 42
    ci: float = 95.0
    pool_sizes: tuple[int, ...] = (32, 64, 128)
    pool_ks: tuple[int, ...] = (1, 8)
    pool_repeats: int = 100
    map_ks: tuple[int, ...] = (5, 10, 50)
    recall_ks: tuple[int, ...] = (1, 5, 10, 50, 100)

    @classmethod
    def from_config(cls, evaluate: dict) -> "PaperSettings":
        p = dict(evaluate.get("paper") or {})
        for key in ("pool_sizes", "pool_ks", "map_ks", "recall_ks"):
            if key in p:
                p[key] = tuple(p[key])
        return cls(ci=float(evaluate.get("ci", 95.0)), **p)


def _ci(values: np.ndarray, weights: np.ndarray, level: float) -> dict:
    """Point value and percentile CI of a per-item mean under sample resampling."""
    metric = weighted_mean(values)
    boot = np.asarray(weights @ np.asarray(values, dtype=float) / weights.sum(axis=1), dtype=float)
    lo, hi = percentile_ci(boot, level)
    return {"value": metric(np.ones(len(values))), "ci_low": lo, "ci_high": hi}


# ---- pools -----------------------------------------------------------------------------------------------
def ctrate_pools(meta: list[dict], sources: dict[str, str]) -> dict[str, np.ndarray]:
    """Indices (into meta) of the ``dup_all`` and ``first_all`` pools, in sorted-path order.

    ``sources`` maps volume_id to its path under the CT-RATE root (the manifest's ``source``); the report key
    is the scan (``scan_id``), the first volume of a key in path order is its ``first_all`` representative.
    """
    have = [i for i, m in enumerate(meta) if m["has_text"]]
    order = sorted(have, key=lambda i: (sources.get(meta[i]["volume_id"], meta[i]["volume_id"]), i))
    first: dict[str, int] = {}
    for i in order:
        first.setdefault(meta[i]["scan_id"], i)
    first_set = set(first.values())
    return {"dup_all": np.array(order, dtype=int), "first_all": np.array([i for i in order if i in first_set], int)}


def retrieval(emb: dict, idx: np.ndarray, settings: PaperSettings) -> dict:
    """Text-to-image on one pool, with sample-bootstrap CIs of each R@k and MeanR."""
    if len(idx) < 2:
        return {"n": int(len(idx)), "na": "fewer than 2 volumes"}
    ranks = retrieval_ranks(emb["report"][idx], emb["scan"][idx])
    out: dict = paper_recall_summary(ranks, settings.recall_ks)
    w = sample_weights(len(ranks), settings.resamples, settings.seed)
    for k in settings.recall_ks:
        out[f"R@{k}_ci"] = _ci((ranks <= k) * 100.0, w, settings.ci)
    out["MeanR_ci"] = _ci(ranks.astype(float), w, settings.ci)
    out["ranks"] = ranks.tolist()
    return out


# ---- zero-shot -------------------------------------------------------------------------------------------
def _auc_matrix(labels: np.ndarray, probs: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """(resamples, L) AUC of each label in each resample; NaN where a resample lost a class."""
    out = np.full((len(weights), labels.shape[1]), np.nan)
    for j in range(labels.shape[1]):
        known = labels[:, j] >= 0
        for b, w in enumerate(weights):
            out[b, j] = weighted_auc(labels[known, j], probs[known, j], w[known])
    return out


def zero_shot(image: np.ndarray, pos: np.ndarray, neg: np.ndarray, labels: np.ndarray, names: list[str],
              settings: PaperSettings, merge=None) -> dict:
    """Macro AUC (with its sample-bootstrap CI), per-class AUC and Youden metrics, as RadFinder.

    ``merge`` (Rad-ChestCT) maps (labels, {"p": probs}) to the 16 evaluated classes.
    """
    probs = zero_shot_probabilities(image, pos, neg, scale=1.0)  # softmax(cos+, cos-): no temperature
    if merge is not None:
        labels, merged, names = merge(labels, {"p": probs})
        probs = merged["p"]
    labelled = (labels >= 0).any(axis=1)  # unlabelled scans are dropped
    labels, probs = labels[labelled], probs[labelled]
    per_class, aucs = {}, []
    for j, name in enumerate(names):
        known = labels[:, j] >= 0
        m = chexzero_metrics(labels[known, j], probs[known, j])
        n_pos, n_neg = int(np.sum(labels[known, j] == 1)), int(np.sum(labels[known, j] == 0))
        per_class[name] = {"n_pos": n_pos, "n_neg": n_neg, **(m or {"auc": None, "reason": "NA: "
                           + ("no positives" if not n_pos else "no negatives")})}
        if m:
            aucs.append(m["auc"])
    out: dict = {"n": int(len(labels)), "classes": len(names), "classes_scored": len(aucs), "per_class": per_class}
    if not aucs:
        return {**out, "mean_auc": None, "na": "no class has both positives and negatives"}
    w = sample_weights(len(labels), settings.resamples, settings.seed)
    matrix = _auc_matrix(labels, probs, w)
    with warnings.catch_warnings():  # a resample in which every class lost a side: NaN, i.e. NA
        warnings.simplefilter("ignore", RuntimeWarning)
        macro = np.nanmean(matrix, axis=1)  # undefined classes skipped per resample, as RadFinder
    lo, hi = percentile_ci(macro, settings.ci)
    out["mean_auc"] = {"value": float(np.mean(aucs)), "ci_low": lo, "ci_high": hi}
    for j, name in enumerate(names):
        if per_class[name].get("auc") is not None:
            lo, hi = percentile_ci(matrix[:, j], settings.ci)
            per_class[name]["auc_ci"] = [lo, hi]  # NaN (NA) when a resample lost all positives or negatives
    for key in ("sensitivity", "specificity", "precision", "f1_weighted", "balanced_accuracy"):
        out[f"mean_{key}"] = float(np.mean([e[key] for e in per_class.values() if e.get("auc") is not None]))
    return out


# ---- volume-to-volume ------------------------------------------------------------------------------------
def volume_map(image: np.ndarray, labels: np.ndarray, settings: PaperSettings) -> dict:
    """MAP@k over abnormal volumes (RadFinder) and SPECTRE's variant, each with a query bootstrap."""
    y = (np.asarray(labels) == 1).astype(int)
    abnormal = y.sum(axis=1) > 0
    out: dict = {"n_total": int(len(y)), "n_abnormal": int(abnormal.sum())}
    if abnormal.sum() < 2:
        return {**out, "na": "fewer than 2 abnormal volumes"}
    img, y = image[abnormal], y[abnormal]
    w = sample_weights(len(y), settings.resamples, settings.seed)
    for k in settings.map_ks:
        out[f"MAP@{k}"] = _ci(average_precision_at_k(img, y, k) * 100.0, w, settings.ci)
        sp = spectre_average_precision_at_k(img, y, k)
        kept = ~np.isnan(sp)
        out[f"spectre_MAP@{k}"] = (_ci(sp[kept] * 100.0, sample_weights(int(kept.sum()), settings.resamples,
                                                                         settings.seed), settings.ci)
                                   if kept.any() else None)
    return out


# ---- Merlin pools ----------------------------------------------------------------------------------------
def merlin_pools(emb: dict, idx: np.ndarray, settings: PaperSettings) -> dict:
    """Pool retrieval per text variant (findings / impressions / full): mean over repeats, CI from repeats."""
    variants = {"findings": "report_findings", "impressions": "report_impressions", "full": "report_full"}
    out: dict = {"n": int(len(idx)), "repeats": settings.pool_repeats, "seed": settings.seed}
    for variant, key in variants.items():
        if key not in emb and not (variant == "full" and "report" in emb):
            out[variant] = {"na": f"embeddings have no '{key}'"}
            continue
        text = emb[key] if key in emb else emb["report"]
        reps = pool_recall_repeats(emb["scan"][idx], text[idx], settings.pool_sizes, settings.pool_ks,
                                   settings.pool_repeats, settings.seed)
        entry = {}
        for name, values in reps.items():
            if len(values) == 0:
                entry[name] = {"value": None, "na": f"fewer than {name.split('_')[0][4:]} test scans"}
            else:
                lo, hi = percentile_ci(values, settings.ci)
                entry[name] = {"value": float(np.mean(values)), "ci_low": lo, "ci_high": hi}
        if key not in emb:
            entry["text"] = "training text of the report (no RadFinder-format full variant in the embeddings)"
        out[variant] = entry
    return out


# ---- localization ----------------------------------------------------------------------------------------
def localization(pred: np.ndarray, true: np.ndarray, n_bins: np.ndarray, bin_mm: float,
                 settings: PaperSettings) -> dict:
    """Model, middle and random baselines (seeded draws and exact expectation), snippet bootstrap for MAE."""
    w = sample_weights(len(pred), settings.resamples, settings.seed)
    out: dict = {"n_snippets": int(len(pred)), "bin_mm": bin_mm}
    for name, p in (("model", pred), ("middle", middle_bins(n_bins)),
                    ("random_draws", random_bin_draws(n_bins, settings.seed))):
        entry = localization_summary(p, true, bin_mm)
        err = np.abs(np.asarray(p) - np.asarray(true)).astype(float)
        entry["mae_mm_ci"] = _ci(err * bin_mm, w, settings.ci)
        for key, bins in (("exact", 0), ("within_1_bin", 1), ("within_2_bins", 2)):
            entry[f"{key}_ci"] = _ci((err <= bins) * 100.0, w, settings.ci)
        out[name] = entry
    out["random_expected"] = random_bin_expectation(true, n_bins, bin_mm)
    return out


# ---- one run -----------------------------------------------------------------------------------------------
def _image_head(emb: dict) -> tuple[np.ndarray, str]:
    if "scan_copy" in emb:
        return emb["scan_copy"], "image copy head"
    return emb["scan"], "main image head (this run's embeddings have no image copy head)"


def evaluate_paper(sets: dict[str, tuple[dict, list[dict]]], sources: dict[str, str], loc_items: dict,
                   bin_mm: float, settings: PaperSettings, merge_radchest) -> dict:
    """Every paper-protocol number of one run. ``loc_items``: {set: (pred, true, n_bins)} of the snippets
    (one per scan), ``merge_radchest``: the 16-class mapping of the shared protocol module."""
    out: dict = {"notes": PAPER_NOTES, "differences": PAPER_DIFFERENCES,
                 "bootstrap": {"unit": "samples", "resamples": settings.resamples, "seed": settings.seed,
                               "ci": settings.ci}}
    for name, (emb, meta) in sets.items():
        if not meta or name not in PAPER_SETS:
            continue
        labels = np.stack([m["labels"] for m in meta])
        entry: dict = {}
        image, head = _image_head(emb)
        has_mean7 = "pos_mean7" in emb and "neg_mean7" in emb
        if name == "ct_rate":
            pools = ctrate_pools(meta, sources)
            entry["pools"] = {k: int(len(v)) for k, v in pools.items()}
            entry["retrieval"] = {k: retrieval(emb, v, settings) for k, v in pools.items()}
            first = pools["first_all"]
            entry["v2v"] = volume_map(unit_rows(emb["scan"][first]), labels[first], settings)
            entry["zero_shot"] = (zero_shot(image[first], emb["pos_mean7"], emb["neg_mean7"], labels[first],
                                            list(CTRATE_LABELS), settings) if has_mean7 else
                                  {"mean_auc": None, "na": "embeddings have no mean7 prompt embeddings"})
        elif name == "rad_chestct":
            entry["zero_shot"] = (zero_shot(image, emb["pos_mean7"], emb["neg_mean7"], labels, list(CTRATE_LABELS),
                                            settings, merge_radchest) if has_mean7 else
                                  {"mean_auc": None, "na": "embeddings have no mean7 prompt embeddings"})
        elif name == "merlin":
            entry["pool_retrieval"] = merlin_pools(emb, np.arange(len(meta)), settings)
        if "zero_shot" in entry:
            entry["zero_shot"]["image_head"] = head
        if name in loc_items and len(loc_items[name][0]):
            entry["localization"] = localization(*loc_items[name], bin_mm=bin_mm, settings=settings)
        if entry:
            out[name] = entry
    return out
