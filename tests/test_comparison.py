"""Reproduced vs published (issue 23, item 5): every published number beside this run's, with its pool checked."""

from __future__ import annotations

import pytest
import yaml

from conftest import REPO, merged
from ctvlp.evaluate.comparison import (BEST_PRIOR, comparison_rows, comparison_table, pool_check,
                                       published_by_model, published_numbers)
from ctvlp.evaluate.tables import reported_results, to_latex, to_markdown
from ctvlp.io.radchestct import split_of

# The pools of the paper's protocol (design notes: protocols.md, datasets.md)
PAPER_POOLS = {"ctrate_t2i_r10": 3039, "ctrate_zero_shot_auc": 1564, "radchest_zero_shot_auc": 3630,
               "merlin_pool128_r1": 128}


def test_every_published_number_has_one_source_protocol_and_pool():
    numbers = published_numbers()
    assert len({n["id"] for n in numbers}) == len(numbers)
    for n in numbers:
        assert n["source"] in ("abstract", "table", "figure"), n["id"]
        assert n["protocol"] and n["metric"] and isinstance(n["pool"], dict), n["id"]
        assert n["ours"]["value"], n["id"]
    assert {n["id"]: n["pool"]["size"] for n in numbers if n["id"] in PAPER_POOLS} == PAPER_POOLS


def test_the_same_number_has_the_same_pool_everywhere():
    """The peers' RadFinder row (main table, claims) carries the published values and the R@10's one pool."""
    radfinder = next(p for p in reported_results()["peers"] if p["model"] == "RadFinder (paper)")
    published = published_by_model()["RadFinder (paper)"]
    pools = {n["id"]: n["pool"]["size"] for n in published_numbers()}
    assert radfinder["ctrate_r10"] == published["ctrate_t2i_r10"]
    assert radfinder["ctrate_pool"] == pools["ctrate_t2i_r10"] == 3039  # dup_all, not the 1,564-scan pool
    assert radfinder["ctrate_auc"] == published["ctrate_zero_shot_auc"]
    assert radfinder["radchest_auc"] == published["radchest_zero_shot_auc"]
    assert radfinder["loc_mae_mm"] == published["hospital_localization_mae"]
    for peer in reported_results()["peers"]:  # the peers' own R@10 are on 1,564 scans (their papers)
        if peer.get("ctrate_r10") is not None and peer["model"] != "RadFinder (paper)":
            assert peer["ctrate_pool"] == 1564, peer


def _metrics(r10=(40.0, 30.0, 50.0), n_dup=3039, auc=None, per_class=None) -> dict:
    zs = {"n": 1564, "mean_auc": auc, "per_class": per_class or {}}
    return {"paper": {"bootstrap": {"ci": 95.0, "resamples": 100, "seed": 42},
                      "ct_rate": {"retrieval": {"dup_all": {"n": n_dup, "R@10_ci": dict(zip(
                          ("value", "ci_low", "ci_high"), r10))}}, "zero_shot": zs}}}


def test_difference_inside_ci_and_pool_check():
    rows = {(r["number"], r["model (published)"]): r for r in comparison_rows(_metrics(), "full")}
    r10 = rows[("CT-RATE text-to-image R@10 (%)", "RadFinder (paper)")]
    assert (r10["published"], r10["this run [95 % CI]"], r10["difference"]) == ("31.5", "40.0 [30.0, 50.0]", "+8.5")
    assert r10["published inside CI"] == "yes" and r10["pool check"] == "same pool"
    prior = rows[("CT-RATE text-to-image R@10 (%)", BEST_PRIOR)]
    assert prior["published"] == "22.2" and prior["difference"] == "+17.8" and prior["published inside CI"] == "no"
    radchest = rows[("Rad-ChestCT zero-shot macro AUC, 16 classes (%)", "RadFinder (paper)")]
    assert radchest["this run [95 % CI]"].startswith("NA") and radchest["pool check"].startswith("MISMATCH")
    small = {r["number"]: r for r in comparison_rows(_metrics(n_dup=12), "demo")
             if r["model (published)"] == "RadFinder (paper)"}
    assert small["CT-RATE text-to-image R@10 (%)"]["pool check"] == "MISMATCH: 12 vs 3,039"  # printed, not hidden
    assert pool_check(None, None) == "paper's pool not stated"


def test_scale_and_per_label_rows():
    """AUCs are stored as fractions and published in percent; a number with per-label values adds label rows."""
    numbers = [n for n in published_numbers() if n["id"] == "ctrate_zero_shot_auc"]
    numbers[0] = {**numbers[0], "per_label": {"Cardiomegaly": 90.0, "Emphysema": 70.0}}
    per_class = {"Cardiomegaly": {"auc": 0.85, "auc_ci": [0.80, 0.92]}, "Emphysema": {"auc": 0.60, "auc_ci": [0.5, 0.65]}}
    rows = comparison_rows(_metrics(auc={"value": 0.84, "ci_low": 0.80, "ci_high": 0.88}, per_class=per_class),
                           "full", numbers)
    by = {(r["number"], r["model (published)"]): r for r in rows}
    macro = by[("CT-RATE zero-shot macro AUC, 18 abnormalities (%)", "RadFinder (paper)")]
    assert macro["this run [95 % CI]"] == "84.0 [80.0, 88.0]" and macro["difference"] == "+0.2"
    cardio = by[("CT-RATE zero-shot macro AUC, 18 abnormalities (%) [Cardiomegaly]", "RadFinder (paper)")]
    assert cardio["published"] == "90.0" and cardio["published inside CI"] == "yes"
    emph = by[("CT-RATE zero-shot macro AUC, 18 abnormalities (%) [Emphysema]", "RadFinder (paper)")]
    assert emph["difference"] == "-10.0" and emph["published inside CI"] == "no"
    assert not any(r["model (published)"] == BEST_PRIOR and "[" in r["number"] for r in rows)  # no prior per label


def test_table_renders_in_markdown_and_latex():
    table = comparison_table({"full": _metrics(), "no_prompts": _metrics()}, ["full", "missing"])
    assert set(table["run"]) == {"full"}
    md, tex = to_markdown(table, "caption"), to_latex(table, "caption", "paper_comparison")
    assert "MISMATCH" in md and "3,039 volumes" in md and r"\toprule" in tex and "95 \\% CI" in tex


def test_the_paper_preset_scores_every_rad_chestct_scan():
    """The authors evaluate Rad-ChestCT with --split all: every scan of the 3,630, not the official test part."""
    paper = merged(yaml.safe_load((REPO / "config/config.yaml").read_text()),
                   yaml.safe_load((REPO / "config/paper.yaml").read_text()))
    mode = paper["splits"]["radchestct"]
    assert {split_of(s, mode) for s in ("imgtrain", "imgvalid", "imgtest")} == {"test"}


@pytest.mark.workflow
def test_the_run_writes_the_comparison(test_run):
    md = (test_run / "results" / "tables" / "paper_comparison.md").read_text()
    tex = (test_run / "results" / "tables" / "paper_comparison.tex").read_text()
    assert "31.5" in md and "MISMATCH" in md and "RadFinder (paper)" in md and "tab:paper_comparison" in tex
    assert md.count("| full |") >= len(published_numbers())  # the reference run, every published number
