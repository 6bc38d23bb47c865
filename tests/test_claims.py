"""The claims summary reads the comparison file's paired differences and gives each claim its verdict: decided,
contradicted, undecided at this size (the CI holds 0), or not testable here."""

from __future__ import annotations

import json

import numpy as np

from ctvlp.evaluate.bootstrap import bootstrap_ci, paired_difference, patient_weights, weighted_mean
from ctvlp.evaluate.claims import (CONTRADICTED, DECIDED, UNDECIDED, UNTESTED, check_claims, claims_markdown,
                                   direction, no_worse)


def diff(a, b, w):
    return paired_difference(weighted_mean(np.asarray(a, float)), weighted_mean(np.asarray(b, float)), w)


def test_verdicts_follow_the_paired_cis(tmp_path):
    rng = np.random.default_rng(0)
    w = patient_weights(np.arange(60), 200, 0)
    full_err = rng.uniform(0, 20, 60)
    comparisons = {"reference": "full", "runs": {
        "random_encoder": {"loc_mae_mm": diff(full_err + 15, full_err, w),          # clearly worse
                           "t2i_scans_mean_rank": diff(rng.uniform(20, 30, 60), rng.uniform(5, 10, 60), w),
                           "macro_auc_ensemble": diff(np.full(60, 0.6), np.full(60, 0.8), w)},
        "no_localization": {"loc_mae_mm": diff(full_err + rng.normal(0, 5, 60), full_err, w),  # a wash
                            "t2i_scans_mean_rank": diff(full_err + rng.normal(0, 1, 60), full_err, w),
                            "macro_auc_ensemble": diff(np.full(60, 0.8), np.full(60, 0.8), w)}}}
    claims = check_claims(comparisons, "ensemble", pool=60)
    assert [c.verdict for c in claims] == [DECIDED, UNDECIDED, DECIDED, DECIDED, DECIDED]
    assert "random_encoder - full" in claims[0].evidence
    assert check_claims(comparisons, "ensemble")[2].verdict == UNTESTED  # no pool: no rank margin
    assert [c.verdict for c in check_claims({"reference": "full", "runs": {}}, "ensemble")] == [UNTESTED] * 5

    results = tmp_path / "results"
    (results / "eval").mkdir(parents=True)
    (results / "runs" / "full").mkdir(parents=True)
    (results / "eval" / "comparisons.json").write_text(json.dumps(comparisons))
    metrics = {"hospital": {"zero_shot": {"ensemble": {"macro_auc": bootstrap_ci(weighted_mean(np.full(60, 0.81)), w)}},
                            "retrieval": {"t2i_scans": {"pool": 60, "R@10": bootstrap_ci(weighted_mean(full_err), w),
                                                        "mean_rank": bootstrap_ci(weighted_mean(full_err), w)}},
                            "localization": {"bin_mm": 12.0, "model": {"mae_mm": bootstrap_ci(weighted_mean(full_err), w)},
                                             "middle_bin": {"mae_mm": bootstrap_ci(weighted_mean(full_err + 30), w)}}}}
    (results / "runs" / "full" / "metrics.json").write_text(json.dumps(metrics))
    text = claims_markdown(results / "eval" / "comparisons.json", results / "runs" / "full" / "metrics.json")
    assert "| zero-shot macro AUC x100, hospital | 81.0 [81.0, 81.0] | - |" in text
    assert "zero-shot macro AUC x100, ct_rate | n/a | 83.8" in text  # the paper's number beside a missing set
    assert "36.3 (12 mm bins)" in text and text.count("| decided |") == 4 and text.count("| undecided at this size |") == 1


def test_a_ci_holding_zero_is_undecided_never_a_failure():
    """Lower-is-better (MAE): other - reference > 0 favours the reference."""
    ci = lambda lo, hi: {"difference": (lo + hi) / 2, "ci_low": lo, "ci_high": hi}  # noqa: E731
    assert direction(ci(1.0, 3.0), "positive") == DECIDED
    assert direction(ci(-3.0, -1.0), "positive") == CONTRADICTED
    assert direction(ci(-1.0, 3.0), "positive") == UNDECIDED
    assert direction(ci(-0.2, -0.1), "negative") == DECIDED  # AUC: the other run lower
    assert direction(None, "positive") == UNTESTED
    # non-inferiority of the reference within a margin of 0.05 (AUC: other - reference > 0 favours the other)
    assert no_worse(ci(-0.04, 0.03), "negative", 0.05) == DECIDED
    assert no_worse(ci(-0.04, 0.08), "negative", 0.05) == UNDECIDED
    assert no_worse(ci(0.01, 0.08), "negative", 0.05) == CONTRADICTED
