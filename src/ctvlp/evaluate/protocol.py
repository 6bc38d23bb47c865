"""Our evaluation protocol (``ctvlp``), each choice explicit and written next to its numbers, and the
entry point that computes it together with the paper's (``ctvlp.evaluate.paper``): both are always in
``metrics.json``; ``evaluate.protocol`` picks which one the main tables show.

Evaluation sets (held-out splits only): ``hospital`` (retrieval, zero-shot on the 18 labels, snippet
localization), ``ct_rate`` (retrieval on two pools, zero-shot on the 18 labels), ``rad_chestct``
(zero-shot on 16 classes: the two calcification classes merged by max, mosaic attenuation dropped) and
``merlin`` (test split: retrieval; the paper's pool retrieval). Every metric is a function of per-item
weights so that the patient bootstrap and the paired comparison of two runs share one implementation.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ctvlp.evaluate.bootstrap import Metric, bootstrap_ci, paired_difference, patient_weights, weighted_mean
from ctvlp.core.metrics import (grouped_ranks, middle_bins, random_bin_draws, random_bin_expectation,
                                    retrieval_ranks, weighted_auc, youden_metrics, zero_shot_probabilities)
from ctvlp.core.label_set import CTRATE_LABELS
from ctvlp.evaluate.paper import PaperSettings, evaluate_paper

EVAL_SETS = ("hospital", "ct_rate", "rad_chestct", "merlin")
PROTOCOLS = ("paper", "ctvlp")
RECALL_KS = (1, 5, 10, 50, 100)
CALCIFICATIONS = ("Arterial wall calcification", "Coronary artery wall calcification")
RADCHEST_DROPPED = ("Mosaic attenuation pattern",)
PROTOCOL_NOTES = {
    "retrieval": "text-to-image and image-to-text, cosine over the whole pool; an item with the query's own report "
                 "(another volume of the same scan) counts as a hit; ties with other items count against the model",
    "pool_scans": "one volume per scan (the first volume id of each scan)",
    "pool_volumes": "every volume, reports duplicated over the volumes of a scan (same-report items are hits)",
    "zero_shot": "p = softmax over (positive, negative) prompt similarity times the prompt loss's scale; prompt embeddings averaged over "
                 "templates; AUC per label, NA when a label has no positive or no negative",
    "rad_chestct": "16 classes: arterial and coronary calcification merged by max, mosaic attenuation dropped",
    "youden": "per-label threshold maximising sensitivity + specificity - 1 on the evaluation set itself",
    "localization": "one snippet per scan (the first in report order); prediction = argmax over depth bins; "
                    "middle baseline = (n_bins - 1) // 2; random baseline = seeded uniform draws (RandomState(seed)), "
                    "its exact expectation beside it",
    "bootstrap": "percentile, resampling patients; paired differences use the same resamples; NA when a resample "
                 "loses all positives or negatives of a label",
}


@dataclass
class ItemTable:
    """What one run produced on one evaluation set, item by item."""

    name: str
    patients: np.ndarray                 # per scan-level item
    labels: np.ndarray                   # (n, L) in {1, 0, -1}
    label_names: list[str]
    probs: dict[str, np.ndarray]         # prompt set -> (n, L)
    ranks: dict[str, np.ndarray]         # "t2i_scans", "i2t_scans", ... -> per query
    rank_patients: dict[str, np.ndarray]
    loc_pred: np.ndarray                 # per snippet (hospital only)
    loc_true: np.ndarray
    loc_bins: np.ndarray
    loc_patients: np.ndarray


def _merge_radchest(labels: np.ndarray, probs: dict[str, np.ndarray]) -> tuple[np.ndarray, dict, list[str]]:
    names = list(CTRATE_LABELS)
    a, c = names.index(CALCIFICATIONS[0]), names.index(CALCIFICATIONS[1])
    keep = [j for j, n in enumerate(names) if n not in RADCHEST_DROPPED and j != c]
    out_names = [("Calcification" if j == a else names[j]) for j in keep]
    merged_labels = labels.copy()
    merged_labels[:, a] = np.maximum(labels[:, a], labels[:, c])
    merged = {}
    for key, p in probs.items():
        q = p.copy()
        q[:, a] = np.maximum(p[:, a], p[:, c])
        merged[key] = q[:, keep]
    return merged_labels[:, keep], merged, out_names


def _pools(meta: list[dict], report: np.ndarray, scan: np.ndarray) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Ranks on the scan pool (one volume per scan) and on the volume pool (all volumes)."""
    with_text = [i for i, m in enumerate(meta) if m["has_text"]]
    first: dict[str, int] = {}
    for i in sorted(with_text, key=lambda i: meta[i]["volume_id"]):
        first.setdefault(meta[i]["scan_id"], i)
    out = {}
    for pool, idx in (("scans", sorted(first.values())), ("volumes", with_text)):
        if len(idx) < 2:
            continue
        idx = np.array(idx)
        pats = np.array([meta[i]["patient_id"] for i in idx])
        groups = np.array([meta[i]["scan_id"] for i in idx])  # one report per scan
        out[f"t2i_{pool}"] = (grouped_ranks(report[idx], scan[idx], groups, groups), pats)
        out[f"i2t_{pool}"] = (grouped_ranks(scan[idx], report[idx], groups, groups), pats)
    return out


def item_table(name: str, emb: dict, meta: list[dict], prompt_scale: float = 1.0) -> ItemTable:
    """Per-item scores of one evaluation set from its embeddings (see ``ctvlp.evaluate.embed``)."""
    labels = np.stack([m["labels"] for m in meta]) if meta else np.zeros((0, len(CTRATE_LABELS)), int)
    prompt_scans = emb.get("scan_prompt", emb["scan"])  # the image copy head's (RadFinder's zero-shot embedding)
    probs = {ps: zero_shot_probabilities(prompt_scans, emb[f"pos_{ps}"], emb[f"neg_{ps}"], prompt_scale)
             for ps in emb["prompt_sets"]}
    label_names = list(CTRATE_LABELS)
    if name == "rad_chestct":
        labels, probs, label_names = _merge_radchest(labels, probs)
    pools = _pools(meta, emb["report"], emb["scan"]) if name != "rad_chestct" else {}
    first_snippet = {}
    for k, owner in enumerate(emb["snippet_owner"]):
        first_snippet.setdefault(int(owner), k)
    ks = np.array(sorted(first_snippet.values()), dtype=int)
    pred = np.array([int(np.argmax(bin_profile(emb, k))) for k in ks], dtype=int)
    owners = emb["snippet_owner"][ks] if len(ks) else np.zeros(0, int)
    return ItemTable(name, np.array([m["patient_id"] for m in meta]), labels, label_names, probs,
                     {k: v[0] for k, v in pools.items()}, {k: v[1] for k, v in pools.items()},
                     pred, emb["snippet_bin"][ks] if len(ks) else np.zeros(0, int),
                     emb["n_bins"][owners] if len(ks) else np.zeros(0, int),
                     np.array([meta[o]["patient_id"] for o in owners]))


def bin_profile(emb: dict, k: int) -> np.ndarray:
    """Cosine of snippet k with every depth bin of its own scan."""
    depth = emb["depth"][int(emb["snippet_owner"][k])]
    s = emb["snippet"][k]
    return (depth / np.linalg.norm(depth, axis=1, keepdims=True)) @ (s / np.linalg.norm(s))


# ---- metrics as functions of item weights -------------------------------------------------------------
def macro_auc(labels: np.ndarray, probs: np.ndarray) -> Metric:
    def metric(w: np.ndarray) -> float:
        aucs = [weighted_auc(labels[known, j], probs[known, j], w[known])
                for j in range(labels.shape[1]) for known in [labels[:, j] >= 0]]
        aucs = [a for a in aucs if not np.isnan(a)]
        return float(np.mean(aucs)) if aucs else float("nan")
    return metric


def label_auc(labels: np.ndarray, probs: np.ndarray, j: int) -> Metric:
    known = labels[:, j] >= 0
    return lambda w: weighted_auc(labels[known, j], probs[known, j], w[known])


def localization_metrics(items: ItemTable, bin_mm: float, seed: int = 42) -> dict[str, np.ndarray]:
    """Per-snippet error arrays (mm) of the model and of the baselines (the random one drawn, seeded:
    an expected error per snippet would make every 'within n bins' share 0 and bias the median)."""
    return {"model": np.abs(items.loc_pred - items.loc_true) * bin_mm,
            "middle_bin": np.abs(middle_bins(items.loc_bins) - items.loc_true) * bin_mm,
            "random_bin": np.abs(random_bin_draws(items.loc_bins, seed) - items.loc_true) * bin_mm}


def summarize(items: ItemTable, bin_mm: float, n_resamples: int, seed: int, level: float) -> dict:
    """Every number of one run on one evaluation set, with patient-bootstrap CIs."""
    out: dict = {"set": items.name, "n_scans": int(len(items.patients)),
                 "n_patients": int(len(np.unique(items.patients)))}
    for key, ranks in items.ranks.items():
        w = patient_weights(items.rank_patients[key], n_resamples, seed)
        entry = {"pool": int(len(ranks)), "median_rank": float(np.median(ranks)),
                 "recall_curve": [float(np.mean(ranks <= k) * 100) for k in range(1, len(ranks) + 1)]}
        entry["mean_rank"] = bootstrap_ci(weighted_mean(ranks), w, level)
        for k in RECALL_KS:
            entry[f"R@{k}"] = bootstrap_ci(weighted_mean((ranks <= k) * 100.0), w, level)
        out.setdefault("retrieval", {})[key] = entry
    if len(items.patients):
        w = patient_weights(items.patients, n_resamples, seed)
        for ps, probs in items.probs.items():
            per_label = {}
            for j, name in enumerate(items.label_names):
                known = items.labels[:, j] >= 0
                n_pos, n_neg = int(np.sum(items.labels[known, j] == 1)), int(np.sum(items.labels[known, j] == 0))
                entry = {"n_pos": n_pos, "n_neg": n_neg}
                if n_pos and n_neg:
                    entry.update(auc=bootstrap_ci(label_auc(items.labels, probs, j), w, level),
                                 **youden_metrics(items.labels[:, j], probs[:, j]))
                else:
                    entry.update(auc=None, reason="NA: no positives" if not n_pos else "NA: no negatives")
                per_label[name] = entry
            defined = [n for n, e in per_label.items() if e["auc"] is not None]
            out.setdefault("zero_shot", {})[ps] = {
                "macro_auc": bootstrap_ci(macro_auc(items.labels, probs), w, level),
                "labels_scored": len(defined), "labels_na": sorted(set(per_label) - set(defined)),
                "per_label": per_label}
    if len(items.loc_pred):
        w = patient_weights(items.loc_patients, n_resamples, seed)
        errors = localization_metrics(items, bin_mm, seed)
        loc = {"n_snippets": int(len(items.loc_pred)), "bin_mm": bin_mm,
               "random_bin_expected": random_bin_expectation(items.loc_true, items.loc_bins, bin_mm)}
        for name, err in errors.items():
            loc[name] = {"mae_mm": bootstrap_ci(weighted_mean(err), w, level),
                         "median_mm": float(np.median(err)), "errors_mm": [float(e) for e in err],
                         "within_1_bin": bootstrap_ci(weighted_mean((err <= bin_mm + 1e-6) * 100.0), w, level),
                         "within_2_bins": bootstrap_ci(weighted_mean((err <= 2 * bin_mm + 1e-6) * 100.0), w, level)}
        out["localization"] = loc
    return out


def compare(a: ItemTable, b: ItemTable, bin_mm: float, n_resamples: int, seed: int, level: float) -> dict:
    """Paired differences (run a - run b) on the same patient resamples: the ablation table's CIs."""
    out: dict = {}
    for key in a.ranks:
        if key.startswith("t2i") and key in b.ranks:
            w = patient_weights(a.rank_patients[key], n_resamples, seed)
            for k in (1, 5, 10):
                out[f"{key}_R@{k}"] = paired_difference(weighted_mean((a.ranks[key] <= k) * 100.0),
                                                        weighted_mean((b.ranks[key] <= k) * 100.0), w, level)
            out[f"{key}_mean_rank"] = paired_difference(weighted_mean(a.ranks[key]), weighted_mean(b.ranks[key]),
                                                        w, level)
    if len(a.patients):
        w = patient_weights(a.patients, n_resamples, seed)
        for ps in a.probs:
            out[f"macro_auc_{ps}"] = paired_difference(macro_auc(a.labels, a.probs[ps]),
                                                       macro_auc(b.labels, b.probs[ps]), w, level)
    if len(a.loc_pred) and len(b.loc_pred):
        w = patient_weights(a.loc_patients, n_resamples, seed)
        ea, eb = localization_metrics(a, bin_mm)["model"], localization_metrics(b, bin_mm)["model"]
        out["loc_mae_mm"] = paired_difference(weighted_mean(ea), weighted_mean(eb), w, level)
    return out


def bin_mm_of(config: dict) -> float:
    return float(config["model"]["window_encoder"]["patch_voxels"][2] * config["preprocess"]["spacing_mm"][2])


def evaluate_sets(sets: dict[str, tuple[dict, list[dict]]], bin_mm: float, n_resamples: int, seed: int,
                  level: float, prompt_scale: float = 1.0, sources: dict[str, str] | None = None,
                  paper: PaperSettings | None = None) -> dict:
    """metrics.json of one run: every set under our protocol (top level, patient bootstrap) and under the
    paper's (``paper``, sample bootstrap), each with its notes. ``sources``: volume_id -> manifest source
    (CT-RATE's sorted-path order for first_all)."""
    out = {"protocol": PROTOCOL_NOTES, "bootstrap": {"unit": "patients", "resamples": n_resamples, "seed": seed,
                                                     "ci": level}}
    loc_items = {}
    for name, (emb, meta) in sets.items():
        items = item_table(name, emb, meta, prompt_scale)
        out[name] = summarize(items, bin_mm, n_resamples, seed, level)
        loc_items[name] = (items.loc_pred, items.loc_true, items.loc_bins)
    out["paper"] = evaluate_paper(sets, sources or {}, loc_items, bin_mm, paper or PaperSettings(ci=level),
                                  _merge_radchest)
    return out
