"""The paper's protocols (RadFinder @7c6ab92) against hand-computed cases."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import balanced_accuracy_score, f1_score, precision_score, roc_auc_score

from ctvlp.evaluate.bootstrap import bootstrap_ci, sample_weights, weighted_mean
from ctvlp.core.metrics import (average_precision_at_k, chexzero_metrics, grouped_ranks, mean7_prompt_embedding,
                                    middle_bins, paper_recall_summary, pool_recall_repeats, random_bin_draws,
                                    random_bin_expectation, retrieval_ranks, spectre_average_precision_at_k,
                                    zero_shot_probabilities)
from ctvlp.evaluate.paper import PaperSettings, ctrate_pools, localization, zero_shot
from ctvlp.evaluate.zero_shot import mean7_embeddings, mean7_prompts, mean7_templates, pool_text_variants
from ctvlp.core.label_set import CTRATE_LABELS


def _angles(*degrees):
    rad = np.deg2rad(np.array(degrees, dtype=float))
    return np.stack([np.cos(rad), np.sin(rad)], axis=1)


def test_dup_pool_with_duplicated_reports():
    """Scan A has two reconstructions with the identical report, scan B one."""
    groups = np.array(["A", "A", "B"])
    text = _angles(0, 0, 90)  # the duplicated report embeds identically
    perfect = _angles(0, 0, 90)  # both reconstructions of A embed like their report
    # ours: the other reconstruction with the same report is a hit, in both directions
    assert grouped_ranks(text, perfect, groups, groups).tolist() == [1, 1, 1]
    assert grouped_ranks(perfect, text, groups, groups).tolist() == [1, 1, 1]
    # the paper's dup_all: only the exact pair is a hit; the tied twin counts against the model
    assert retrieval_ranks(text, perfect).tolist() == [2, 2, 1]
    # reconstructions the model tells apart: A1 is closer to the report than A2
    distinct = _angles(0, 20, 90)
    assert retrieval_ranks(text, distinct).tolist() == [1, 2, 1]  # the A2 query finds A1 first: a miss
    assert paper_recall_summary(np.array([1, 2, 1]), ks=(1, 5)) == {
        "R@1": pytest.approx(200 / 3), "R@5": 100.0, "MedR": 1.0, "MeanR": pytest.approx(4 / 3), "n": 3}
    # image-to-text on the extra pool: the duplicated report is the same item twice, both are hits
    assert grouped_ranks(distinct, text, groups, groups).tolist() == [1, 1, 1]


def test_paper_recall_summary_medr_and_meanr_as_radfinder():
    s = paper_recall_summary(np.array([1, 2, 3, 10]), ks=(1, 10))
    # 0-based ranks 0, 1, 2, 9: median 1.5 -> floor + 1 = 2; mean 3 + 1 = 4
    assert s["MedR"] == 2.0 and s["MeanR"] == 4.0 and s["R@1"] == 25.0 and s["R@10"] == 100.0


def test_ctrate_first_all_is_the_first_volume_per_report_in_path_order():
    meta = [{"volume_id": v, "scan_id": s, "has_text": True} for v, s in
            (("V9", "S1"), ("V2", "S1"), ("V5", "S2"), ("V7", "S3"))]
    sources = {"V9": "valid_fixed/valid_1/valid_1_a/valid_1_a_1.nii.gz",
               "V2": "valid_fixed/valid_1/valid_1_a/valid_1_a_2.nii.gz",
               "V5": "valid_fixed/valid_10/valid_10_a/valid_10_a_1.nii.gz",
               "V7": "valid_fixed/valid_2/valid_2_a/valid_2_a_1.nii.gz"}
    pools = ctrate_pools(meta, sources)
    assert pools["dup_all"].tolist() == [0, 1, 2, 3]  # string order puts valid_10 before valid_2, as sorted()
    assert pools["first_all"].tolist() == [0, 2, 3]  # valid_1_a_1 (not the hash-first V2) represents S1


def test_pool_retrieval_drops_the_leftover():
    """Five items, pools of 4: one item is left out per repeat. Item 4's text points at image 0, so a pool
    holding item 4 scores 3 of 4 (75 %); a repeat that leaves item 4 out scores 100 %."""
    image = np.eye(5)
    text = np.eye(5)
    text[4] = image[0]
    reps = pool_recall_repeats(image, text, pool_sizes=(4, 8), ks=(1,), repeats=20, seed=42)
    rng = np.random.default_rng(42)
    expected = []
    for _ in range(20):
        order = np.arange(5)
        rng.shuffle(order)
        expected.append(100.0 if order[-1] == 4 else 75.0)
    assert reps["pool4_R@1"].tolist() == expected and {75.0, 100.0} == set(expected)
    assert len(reps["pool8_R@1"]) == 0  # a pool larger than the set gives no value (no partial pool)


def test_map_at_5_with_partial_relevance():
    # query q0 and four other abnormal volumes, ordered by similarity to q0: v2, v1, v3, v4
    image = _angles(0, 20, 10, 30, 40)
    labels = np.array([[1, 0, 0], [1, 1, 0], [0, 1, 0], [1, 0, 1], [1, 0, 0]])
    ap5 = average_precision_at_k(image, labels, 5)
    # RadFinder: relevant = shares a positive: v2 no, v1 yes (1/2), v3 yes (2/3), v4 yes (3/4); divided by k = 5
    assert ap5[0] == pytest.approx((1 / 2 + 2 / 3 + 3 / 4) / 5)
    assert average_precision_at_k(image, labels, 2)[0] == pytest.approx((1 / 2) / 2)
    # SPECTRE: relevant = identical labels (only v4, at rank 4): 1/4 over min(1, 5)
    sp = spectre_average_precision_at_k(image, labels, 5)
    assert sp[0] == pytest.approx(1 / 4)
    assert np.isnan(sp[2])  # v2's label vector occurs once: no relevant item, skipped


def test_mean7_normalises_each_template_before_averaging():
    per_template = np.array([[[3.0, 4.0]], [[0.0, 2.0]]])  # T=2 templates, one label
    expected = np.array([0.3, 0.9]) / np.linalg.norm([0.3, 0.9])
    assert np.allclose(mean7_prompt_embedding(per_template)[0], expected)
    raw_mean = np.array([1.5, 3.0]) / np.linalg.norm([1.5, 3.0])
    assert not np.allclose(expected, raw_mean)  # averaging unnormalised embeddings would differ


def test_mean7_prompts_are_verbatim_and_embedded_per_template():
    templates = mean7_templates()
    assert templates[0] == ("{a}.", "No {a}.") and templates[4] == ("{a}.", "Not {a}.") and len(templates) == 7
    prompts = mean7_prompts()
    assert prompts[1]["positive"][13] == ["Findings are compatible with Mosaic attenuation pattern."]
    assert prompts[6]["negative"][0] == ["Medical material is not present."]
    rng = np.random.default_rng(0)
    table = {}

    def encode(p):  # any deterministic text embedding with unequal norms
        emb = lambda t: table.setdefault(t, rng.normal(size=4) * rng.uniform(0.5, 3))  # noqa: E731
        return (np.stack([emb(g[0]) for g in p["positive"]]), np.stack([emb(g[0]) for g in p["negative"]]))

    pos, neg = mean7_embeddings(encode)
    manual = np.stack([np.stack([table[g[0]] / np.linalg.norm(table[g[0]]) for g in p["positive"]])
                       for p in prompts]).mean(axis=0)
    assert pos.shape == (18, 4) and np.allclose(pos, manual / np.linalg.norm(manual, axis=1, keepdims=True))
    assert np.allclose(np.linalg.norm(neg, axis=1), 1)


def test_zero_shot_probability_is_the_softmax_of_the_two_cosines():
    img, pos, neg = _angles(0, 30), _angles(10), _angles(80)
    p = zero_shot_probabilities(img, pos, neg, scale=1.0)
    c_pos, c_neg = np.cos(np.deg2rad([10, 20])), np.cos(np.deg2rad([80, 50]))
    assert np.allclose(p[:, 0], np.exp(c_pos) / (np.exp(c_pos) + np.exp(c_neg)))


def test_chexzero_metrics_as_radfinder():
    y = np.array([0, 0, 1, 1, 0, 1, 0, 1])
    s = np.array([0.1, 0.6, 0.7, 0.4, 0.2, 0.9, 0.3, 0.8])
    m = chexzero_metrics(y, s)
    assert m["auc"] == pytest.approx(roc_auc_score(y, s))
    # Youden: threshold 0.7 gives tpr 3/4, fpr 0 (J 0.75), better than 0.4 (tpr 1, fpr 1/4: J 0.75, later index)
    assert m["threshold"] == pytest.approx(0.7) and m["sensitivity"] == 0.75 and m["specificity"] == 1.0
    pred = (s >= 0.7).astype(int)
    assert m["f1_weighted"] == pytest.approx(f1_score(y, pred, average="weighted"))
    assert m["precision"] == pytest.approx(precision_score(y, pred))
    assert m["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(y, pred))
    assert chexzero_metrics(np.zeros(4, int), s[:4]) is None


def test_random_baseline_expectation_by_hand_and_against_seeded_draws():
    e = random_bin_expectation(np.array([0]), np.array([5]), 12.0)  # errors 0..4, each 1/5
    assert (e["exact"], e["within_1_bin"], e["within_2_bins"]) == pytest.approx((20.0, 40.0, 60.0))
    assert e["mae_mm"] == pytest.approx(24.0) and e["median_mm"] == pytest.approx(24.0)
    e = random_bin_expectation(np.array([0, 2]), np.array([3, 5]), 12.0)
    assert e["exact"] == pytest.approx((1 / 3 + 1 / 5) / 2 * 100)
    assert e["within_1_bin"] == pytest.approx((2 / 3 + 3 / 5) / 2 * 100) and e["within_2_bins"] == pytest.approx(100)
    assert e["mae_mm"] == pytest.approx(1.1 * 12) and e["median_mm"] == pytest.approx(12.0)
    # RadFinder's draws: RandomState(42).randint(lo, hi + 1) per snippet
    rs = np.random.RandomState(42)
    assert random_bin_draws(np.array([10, 3, 7]), 42).tolist() == [rs.randint(0, 10), rs.randint(0, 3),
                                                                   rs.randint(0, 7)]
    assert middle_bins(np.array([10, 9, 1])).tolist() == [4, 4, 0]
    # many snippets: the seeded draws agree with the expectation (and neither is 0 % within 1 bin)
    rng = np.random.default_rng(1)
    n = rng.integers(10, 40, 20000)
    t = (rng.random(20000) * n).astype(int)
    settings = PaperSettings(resamples=10, seed=42)
    out = localization(random_bin_draws(n, 7), t, n, 12.0, settings)
    assert abs(out["model"]["within_1_bin"] - out["random_expected"]["within_1_bin"]) < 1.0
    assert abs(out["model"]["mae_mm"] - out["random_expected"]["mae_mm"]) < 1.0
    assert out["random_draws"]["within_1_bin"] > 5 and out["random_expected"]["within_2_bins"] > 10


def test_sample_bootstrap_uses_radfinders_draws_and_na_when_a_resample_loses_a_class():
    w = sample_weights(6, 4, 42)
    idx = np.random.default_rng(42).integers(0, 6, size=(4, 6))
    assert np.array_equal(w, np.stack([np.bincount(r, minlength=6) for r in idx]))
    # one positive among ten: most resamples keep it, some lose it -> the interval is NA, never [0, 0]
    y = np.array([1] + [0] * 9)
    s = np.linspace(1, 0, 10)
    pos = np.stack([y, 1 - y], axis=1)
    out = zero_shot(np.eye(10)[:, :3] + 1, np.ones((2, 3)), np.ones((2, 3)), pos, ["rare", "common"],
                    PaperSettings(resamples=200, seed=42))
    assert out["per_class"]["rare"]["auc"] == pytest.approx(0.5)
    assert all(np.isnan(v) for v in out["per_class"]["rare"]["auc_ci"])
    from ctvlp.core.metrics import weighted_auc
    ci = bootstrap_ci(lambda w: weighted_auc(y, s, w), sample_weights(10, 200, 42))
    assert ci["value"] == 1.0 and np.isnan(ci["ci_low"]) and np.isnan(ci["ci_high"]) and "ci_na" in ci
    mean = bootstrap_ci(weighted_mean(s), sample_weights(10, 200, 42))
    assert mean["ci_low"] < 0.5 < mean["ci_high"]


def test_pool_text_variants_are_radfinders_format():
    v = pool_text_variants("Liver normal. See impressions", "Cyst.")
    assert v == {"findings": "Findings: Liver normal. See \n", "impressions": "Impressions: Cyst.\n",
                 "full": "Findings: Liver normal. See \nImpressions: Cyst.\n"}
    assert pool_text_variants("", "") == {"findings": " ", "impressions": " ", "full": " "}


def test_label_names_are_radfinders_verbatim():
    assert CTRATE_LABELS[0] == "Medical material" and CTRATE_LABELS[13] == "Mosaic attenuation pattern"
    assert len(CTRATE_LABELS) == 18


def _synthetic_sets(rng):
    """Embeddings as the embed step writes them, for every evaluation set (small, random but fixed)."""
    def block(n, labelled=True, dup=False):
        scans = [f"C{i // 2}" if dup else f"C{i}" for i in range(n)]
        base = rng.normal(size=(n, 8))
        emb = {"scan": base + 0.3 * rng.normal(size=(n, 8)), "report": base, "scan_copy": base,
               "pos_mean7": rng.normal(size=(18, 8)), "neg_mean7": rng.normal(size=(18, 8)),
               "snippet": rng.normal(size=(n, 8)), "snippet_owner": np.arange(n), "snippet_bin": np.full(n, 2),
               "n_bins": np.full(n, 6), "depth": [rng.normal(size=(6, 8)) for _ in range(n)],
               "pos_ensemble": rng.normal(size=(18, 8)), "neg_ensemble": rng.normal(size=(18, 8)),
               "prompt_sets": ["ensemble"]}
        labels = rng.integers(0, 2, (n, 18)) if labelled else -np.ones((n, 18), int)
        meta = [{"volume_id": f"V{i:02d}", "scan_id": scans[i], "patient_id": f"P{i // 2}", "has_text": True,
                 "labels": labels[i]} for i in range(n)]
        return emb, meta
    sets = {"ct_rate": block(12, dup=True), "rad_chestct": block(8), "merlin": block(10, labelled=False),
            "hospital": block(10)}
    sets["merlin"][0].update(report_findings=sets["merlin"][0]["report"], report_impressions=sets["merlin"][0]["scan"])
    sources = {f"V{i:02d}": f"valid_fixed/valid_{i // 2}/valid_{i // 2}_a/valid_{i // 2}_a_{i % 2 + 1}.nii.gz"
               for i in range(12)}
    return sets, sources


def test_paper_tables_have_the_papers_columns_in_order_and_name_the_protocol(tmp_path):
    from ctvlp.evaluate.protocol import evaluate_sets
    from ctvlp.evaluate.tables import main_table, write_paper_tables

    sets, sources = _synthetic_sets(np.random.default_rng(0))
    settings = PaperSettings(resamples=30, seed=42, pool_sizes=(4,), pool_ks=(1, 8), pool_repeats=5)
    metrics = evaluate_sets(sets, 12.0, 20, 42, 95.0, sources=sources, paper=settings)
    paper = metrics["paper"]
    assert paper["ct_rate"]["pools"] == {"dup_all": 12, "first_all": 6}
    assert paper["ct_rate"]["zero_shot"]["image_head"] == "image copy head"
    assert paper["rad_chestct"]["zero_shot"]["classes"] == 16
    assert paper["merlin"]["pool_retrieval"]["findings"]["pool4_R@1"]["value"] is not None
    loc = paper["hospital"]["localization"]
    assert loc["middle"]["mae_mm"] == pytest.approx(0.0)  # (6 - 1) // 2 = 2 = the target bin
    assert loc["random_expected"]["exact"] == pytest.approx(100 / 6)
    written = write_paper_tables({"full": metrics}, tmp_path)
    assert {p.name for p in written} >= {"paper_results.md", "paper_results.tex", "paper_merlin.md"}
    md = (tmp_path / "paper_results.md").read_text()
    header = md.splitlines()[2]
    assert header == ("| model | source | CT-RATE t2i R@10 (dup_all) | V2V MAP@5 | CT-RATE AUC (mean7) | "
                      "Rad-ChestCT AUC (16) | Merlin R@1 findings (pool 4) | Merlin R@1 impressions (pool 4) | "
                      "hospital loc. MAE mm |")
    assert "Protocol: paper (lmb-freiburg/radfinder @7c6ab92)" in md and "| reported |" in md and "31.5" in md
    assert "over samples, 30 resamples, seed 42" in md
    for name in ("paper_retrieval", "paper_zero_shot", "paper_v2v", "paper_localization"):
        assert "Protocol: paper" in (tmp_path / f"{name}.md").read_text()
    dup = paper["ct_rate"]["retrieval"]["dup_all"]
    assert f"{dup['R@10_ci']['value']:.1f}" in md
    df = main_table({"full": metrics}, "ensemble", "paper")
    assert df.iloc[0]["protocol"].startswith("paper:") and "(n=12)" in df.iloc[0]["CT-RATE R@10 (pool)"]
    # no copy head and no mean7 prompts in a run's embeddings: said, never invented
    del sets["ct_rate"][0]["scan_copy"], sets["ct_rate"][0]["pos_mean7"]
    again = evaluate_sets(sets, 12.0, 20, 42, 95.0, sources=sources, paper=settings)["paper"]["ct_rate"]
    assert again["zero_shot"]["mean_auc"] is None and "mean7" in again["zero_shot"]["na"]
    assert again["zero_shot"]["image_head"].startswith("main image head")
