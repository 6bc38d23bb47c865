"""Evaluation metrics against scikit-learn or hand computation, the bootstrap, protocols and tables."""

from __future__ import annotations

from importlib import resources

import numpy as np
import pytest
import yaml
from sklearn.metrics import f1_score, precision_score, recall_score, roc_auc_score

from ctvlp.evaluate.bootstrap import bootstrap_ci, paired_difference, patient_weights, weighted_mean
from ctvlp.core.metrics import retrieval_ranks, retrieval_summary, weighted_auc, youden_metrics
from ctvlp.evaluate.probe import probe_labels
from ctvlp.evaluate.protocol import ItemTable, _merge_radchest, summarize
from ctvlp.evaluate.tables import fmt, fmt_diff, localization_table, to_latex, to_markdown
from ctvlp.core.label_set import CTRATE_LABELS


def test_retrieval_ranks_count_ties_against_the_model():
    q = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    pool = np.array([[1.0, 0.0], [1.0, 0.0], [1.0, 1.0]])
    # query 0: items 0 and 1 tie at cos 1 -> rank 2 (ties count against the model); query 1: its item (1, 0)
    # has cos 0, item 2 has 0.707 and item 0 ties at 0 -> rank 3; query 2 finds itself -> rank 1
    ranks = retrieval_ranks(q, pool)
    assert ranks.tolist() == [2, 3, 1]
    collapsed = retrieval_ranks(np.ones((4, 2)), np.ones((4, 2)))
    assert collapsed.tolist() == [4, 4, 4, 4]  # a collapsed model gets the worst rank, never the best
    s = retrieval_summary(np.array([1, 2, 6, 60]), ks=(1, 5, 50))
    assert s == {"R@1": 25.0, "R@5": 50.0, "R@50": 75.0, "median_rank": 4.0, "mean_rank": 17.25, "pool": 4}


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_weighted_auc_equals_sklearn_with_ties_and_weights(seed):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, 60)
    s = np.round(rng.normal(size=60) + y, 1)  # rounding makes ties
    w = rng.integers(0, 4, 60).astype(float)
    assert weighted_auc(y, s) == pytest.approx(roc_auc_score(y, s))
    assert weighted_auc(y, s, w) == pytest.approx(roc_auc_score(y, s, sample_weight=w))
    assert np.isnan(weighted_auc(np.zeros(5, int), s[:5]))


def test_youden_threshold_and_metrics_by_hand():
    y = np.array([0, 0, 0, 1, 1, 1, -1])
    s = np.array([0.1, 0.4, 0.35, 0.8, 0.3, 0.9, 0.5])  # the unknown label (-1) is ignored
    m = youden_metrics(y, s)
    # thresholds 0.8 (sens 2/3, spec 1 -> J 0.667) vs 0.3 (sens 1, spec 1/3 -> J 0.333): 0.8 wins
    assert m["threshold"] == pytest.approx(0.8)
    pred = (s[:6] >= 0.8).astype(int)
    assert m["sensitivity"] == pytest.approx(recall_score(y[:6], pred))
    assert m["precision"] == pytest.approx(precision_score(y[:6], pred))
    assert m["f1"] == pytest.approx(f1_score(y[:6], pred))
    assert m["specificity"] == 1.0 and m["balanced_accuracy"] == pytest.approx((2 / 3 + 1) / 2)


def test_bootstrap_ci_covers_the_true_mean_about_95_percent():
    rng = np.random.default_rng(7)
    covered = 0
    trials = 200
    for t in range(trials):
        x = rng.normal(0.0, 1.0, 40)
        w = patient_weights(np.arange(40), 300, seed=t)
        ci = bootstrap_ci(weighted_mean(x), w)
        covered += ci["ci_low"] <= 0.0 <= ci["ci_high"]
    assert 0.88 <= covered / trials <= 0.99


def test_patient_bootstrap_moves_all_items_of_a_patient_together():
    patients = np.array(["a", "a", "b", "c", "c", "c"])
    w = patient_weights(patients, 50, seed=1)
    assert np.all(w[:, 0] == w[:, 1]) and np.all(w[:, 3] == w[:, 5])
    assert np.all(w.reshape(50, -1)[:, [0, 2, 3]].sum(axis=1) == 3)  # three patients drawn each time


def test_paired_difference_of_a_run_with_itself_is_zero_and_within_ci():
    x = np.random.default_rng(0).normal(size=30)
    w = patient_weights(np.arange(30), 200, 0)
    d = paired_difference(weighted_mean(x), weighted_mean(x), w)
    assert d["difference"] == 0 and d["within_ci"] is True
    shifted = paired_difference(weighted_mean(x + 5), weighted_mean(x), w)
    assert shifted["difference"] == pytest.approx(5) and shifted["within_ci"] is False


def test_radchest_mapping_is_the_documented_one_and_scores_16_classes():
    mapping = yaml.safe_load(resources.files("ctvlp.resources").joinpath("radchestct_to_ctrate.yaml").read_text())
    documented = {"emphysema", "atelectasis", "consolidation", "bronchiectasis", "cardiomegaly", "pericardial_effusion",
                  "pleural_effusion", "lymphadenopathy", "nodule", "nodulegr1cm", "opacity", "scarring",
                  "bronchial_wall_thickening", "septal_thickening", "hernia", "calcification", "catheter_or_port",
                  "tracheal_tube", "chest_tube", "breast_implant", "pacemaker_or_defib", "stent", "clip", "staple",
                  "gi_tube", "hardware", "suture"}
    assert set(mapping) == documented
    assert mapping["calcification"] == ["Arterial wall calcification", "Coronary artery wall calcification"]
    assert all(t == ["Medical material"] for k, t in mapping.items() if k in {"stent", "clip", "suture", "hardware"})
    assert not any("Mosaic attenuation pattern" in t for t in mapping.values())
    labels = np.zeros((3, 18), int)
    a, c = CTRATE_LABELS.index("Arterial wall calcification"), CTRATE_LABELS.index("Coronary artery wall calcification")
    labels[0, c] = 1
    probs = np.full((3, 18), 0.2)
    probs[1, a], probs[2, c] = 0.7, 0.9
    merged_labels, merged, names = _merge_radchest(labels, {"ensemble": probs})
    assert len(names) == 16 and "Mosaic attenuation pattern" not in names and "Calcification" in names
    j = names.index("Calcification")
    assert merged_labels[:, j].tolist() == [1, 0, 0] and merged["ensemble"][:, j].tolist() == [0.2, 0.7, 0.9]


def _items(n=12):
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 2, (n, 3))
    labels[:, 2] = 0  # a label without positives: AUC undefined
    probs = {"ensemble": rng.random((n, 3))}
    return ItemTable("hospital", np.array([f"P{i // 2}" for i in range(n)]), labels, ["A", "B", "C"], probs,
                     {"t2i_scans": np.array([1, 3, 2, 7, 1, 1])}, {"t2i_scans": np.array(list("aabbcd"))},
                     np.array([3, 5, 0]), np.array([3, 7, 4]), np.array([10, 10, 8]), np.array(["a", "b", "c"]))


def test_label_without_positives_is_na_with_reason_and_named_in_the_macro():
    out = summarize(_items(), bin_mm=12.0, n_resamples=50, seed=0, level=95)
    zs = out["zero_shot"]["ensemble"]
    assert zs["per_label"]["C"]["auc"] is None and zs["per_label"]["C"]["reason"] == "NA: no positives"
    assert zs["labels_na"] == ["C"] and zs["labels_scored"] == 2
    a = roc_auc_score(_items().labels[:, 0], _items().probs["ensemble"][:, 0])
    b = roc_auc_score(_items().labels[:, 1], _items().probs["ensemble"][:, 1])
    assert zs["macro_auc"]["value"] == pytest.approx((a + b) / 2)
    loc = out["localization"]
    assert loc["model"]["mae_mm"]["value"] == pytest.approx(np.mean([0, 2, 4]) * 12)
    assert loc["middle_bin"]["errors_mm"] == [12.0, 36.0, 12.0]  # middle = (n_bins - 1) // 2 = 4, 4, 3
    assert loc["random_bin_expected"]["exact"] == pytest.approx((1 / 10 + 1 / 10 + 1 / 8) / 3 * 100)
    assert out["retrieval"]["t2i_scans"]["R@5"]["value"] == pytest.approx(5 / 6 * 100)


def test_tables_print_cis_and_verdicts_and_escape_latex():
    assert fmt({"value": 0.81234, "ci_low": 0.7, "ci_high": 0.9}, 3) == "0.812 [0.700, 0.900]"
    assert fmt(None) == "NA"
    assert fmt_diff({"difference": -1.0, "ci_low": -3.0, "ci_high": 0.5, "within_ci": True}) == \
        "-1.0 [-3.0, +0.5] (within CI)"
    out = summarize(_items(), bin_mm=12.0, n_resamples=50, seed=0, level=95)
    df = localization_table({"full": {"hospital": out}})
    assert df.iloc[0]["MAE mm"].startswith(f"{out['localization']['model']['mae_mm']['value']:.1f}")
    assert list(df.method) == ["full", "middle bin (baseline)", "random bin (baseline)"]
    md = to_markdown(df, "caption")
    assert md.count("\n|") == 5  # header, rule, three rows
    tex = to_latex(df, "MAE in mm, 95 % CI", "loc")
    assert r"\toprule" in tex and r"95 \% CI" in tex and "{[}" in tex


def test_linear_probe_finds_a_label_the_features_carry_and_not_one_they_do_not():
    """Label 0 is written into feature 3, label 1 is noise, label 2 has no positive in the test split."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(120, 20))
    y = rng.integers(0, 2, size=(120, 3))
    x[:, 3] += 5.0 * y[:, 0]
    y[80:, 2] = 0
    y[5, 1] = -1  # unknown: left out
    table = probe_labels(x[:80], y[:80], x[80:], y[80:], ["carried", "noise", "absent"])
    auc = dict(zip(table.label, table.probe_auc))
    assert auc["carried"] > 0.95 and 0.3 < auc["noise"] < 0.7 and np.isnan(auc["absent"])
    assert table.set_index("label").loc["absent", "test_positives"] == 0
