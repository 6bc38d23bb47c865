"""The demo workflow's training, evaluation, tables, figures, report and the ``ctvlp`` command line at the
demo's size: the quality targets, the claims' verdicts, localization of the planted sentence.

Moved here from tests/test_end_to_end.py (issue 28): the same checks, on the outputs of ``make demo``
(tests/demo/conftest.py). The main suite checks the same mechanics on the small test run."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from safetensors.numpy import load_file

from ctvlp.core.metrics import zero_shot_probabilities
from ctvlp.evaluate.tables import fmt
from ctvlp.train.ablations import load_ablations

pytestmark = pytest.mark.demo

REPO = Path(__file__).resolve().parents[2]
RUNS = tuple(load_ablations(REPO / "config/ablations.tsv"))
CTVLP = [sys.executable, "-m", "ctvlp.cli"]


def run_snakemake(workdir: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    cmd = [str(Path(sys.executable).parent / "snakemake"), "-s", str(REPO / "Snakefile"), "-d", str(workdir), *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=1800, env=env, cwd=workdir)


def metrics(demo_run: Path, run: str) -> dict:
    return json.loads((demo_run / "results" / "runs" / run / "metrics.json").read_text())


def test_every_ablation_row_trained_with_checkpoints_logs_and_dev_metrics(demo_run):
    for run in RUNS:
        d = demo_run / "results" / "runs" / run
        assert (d / "best.safetensors").is_file() and (d / "checkpoints" / "latest.json").is_file()
        log = pd.read_csv(d / "train_log.csv")
        assert list(log.step) == list(range(1, len(log) + 1))  # every step once
        assert len(pd.read_csv(d / "dev_metrics.csv")) >= 1
        assert (demo_run / "logs" / "train" / f"{run}.log").is_file()
    no_loc = pd.read_csv(demo_run / "results" / "runs" / "no_localization" / "train_log.csv")
    assert "localization" not in no_loc or no_loc["localization"].isna().all()


def test_demo_targets_loosely(demo_run):
    """The issue's demo targets that the demo meets: localization <= 0.5 x the middle-bin baseline and clearly
    better than without the localization loss, dev retrieval mean rank <= 25 % of the pool, held-out retrieval
    better than chance; training times are printed (speed lives in benchmarks); the issue-17 targets (zero-shot AUC,
    retrieval, localization ratio) are printed beside their goals and asserted only as better than chance."""
    assert {"full", "no_localization", "no_prompts", "clip_loss"} <= set(RUNS)
    full, no_loc = metrics(demo_run, "full")["hospital"], metrics(demo_run, "no_localization")["hospital"]
    loc = full["localization"]
    print({run: {k: v for k, v in metrics(demo_run, run)["hospital"]["localization"]["model"].items()
                 if k != "errors_mm"} for run in RUNS})
    assert loc["model"]["mae_mm"]["value"] <= 0.5 * loc["middle_bin"]["mae_mm"]["value"]
    no_loc_mae = no_loc["localization"]["model"]["mae_mm"]
    assert no_loc_mae["value"] > loc["model"]["mae_mm"]["value"] and no_loc_mae["ci_low"] > loc["model"]["mae_mm"]["value"]
    dev = pd.read_csv(demo_run / "results/runs/full/dev_metrics.csv")
    best = json.loads((demo_run / "results/runs/full/best.json").read_text())
    assert best["mean_rank"] == dev.mean_rank.min() <= 0.25 * dev.n.iloc[0]
    for ds in ("hospital", "ct_rate"):
        r = metrics(demo_run, "full")[ds]["retrieval"]["t2i_scans"]
        assert r["mean_rank"]["value"] < (r["pool"] + 1) / 2  # better than chance
    for run in set(RUNS) - {"lora_text"}:
        seconds = pd.read_csv(demo_run / "logs" / "benchmarks" / f"train_{run}.tsv", sep="\t").s.iloc[0]
        print(run, "trained in", seconds, "s")
    # Evaluation sets large enough to mean something, and the issue-17 targets printed beside their goals.
    m = metrics(demo_run, "full")
    assert m["ct_rate"]["n_scans"] >= 40 and m["rad_chestct"]["n_scans"] >= 40
    ps = "ensemble"
    zs = {ds: m[ds]["zero_shot"][ps]["macro_auc"]["value"] for ds in ("hospital", "ct_rate", "rad_chestct")}
    t2i = m["hospital"]["retrieval"]["t2i_scans"]
    print("TARGETS zero-shot macro AUC", zs, "(goal >= 0.80 hospital, >= 0.75 CT-RATE);",
          "hospital t2i mean rank / pool", t2i["mean_rank"]["value"] / t2i["pool"], "(goal <= 0.20);",
          "loc MAE / middle-bin", loc["model"]["mae_mm"]["value"] / loc["middle_bin"]["mae_mm"]["value"], "(goal <= 0.5)")
    assert zs["hospital"] > 0.5 and t2i["mean_rank"]["value"] < 0.5 * (t2i["pool"] + 1)  # loose: better than chance


def test_pretraining_stage_and_the_claims_summary(demo_run):
    """The self-supervised stage ran (loss fell, weights written and used by the features), the random-encoder
    run read its own feature set, the linear probe of both is printed, and the claims summary judges every claim."""
    from ctvlp.evaluate.probe import probe_results

    res = demo_run / "results"
    assert (res / "pretrain" / "window_encoder.safetensors").is_file()
    loss = pd.read_csv(res / "pretrain" / "loss.tsv", sep="\t")
    assert list(loss.step) == list(range(1, len(loss) + 1))
    assert loss.loss.tail(20).mean() < loss.loss.head(20).mean()
    assert "pretrain/window_encoder.safetensors" in (demo_run / "logs" / "window_features" / "features_0.log").read_text()
    assert "random init" in (demo_run / "logs" / "window_features" / "features_random_0.log").read_text()
    seconds = pd.read_csv(demo_run / "logs" / "benchmarks" / "pretrain_window_encoder.tsv", sep="\t").s.iloc[0]
    probes = {fs: probe_results(res, features=fs).probe_auc.mean() for fs in ("features", "features_random")}
    print("PRETRAIN", seconds, "s (goal <= 240 s on 2 cores); linear-probe macro AUC, hospital test:", probes,
          "(goal >= 0.85 pretrained)")
    assert probes["features"] > 0.5
    claims = (res / "tables" / "claims.md").read_text()
    print(claims)
    assert claims.count("| reproduced |") + claims.count("| not reproduced |") + claims.count("| not testable here |") == 4
    assert "random_encoder - full" in claims and "83.8" in claims


def test_tables_and_figures_exist_and_agree_with_the_metric_files(demo_run):
    res = demo_run / "results"
    for name in ("main_results", "ablations", "localization", "per_label_auc_hospital", "per_label_auc_ct_rate",
                 "per_label_auc_rad_chestct"):
        assert (res / "tables" / f"{name}.md").is_file() and (res / "tables" / f"{name}.tex").is_file()
    for name in ("per_label_auc_hospital", "per_label_auc_ct_rate", "per_label_auc_rad_chestct",
                 "recall_at_k_hospital_t2i_scans", "recall_at_k_ct_rate_t2i_scans", "localization_errors",
                 "training_curves", "qualitative"):
        assert (res / "figures" / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert (res / "figures" / f"{name}.pdf").read_bytes()[:5] == b"%PDF-"
    ablations = (res / "tables" / "ablations.md").read_text()
    for run in RUNS:
        m = metrics(demo_run, run)["hospital"]
        row = next(line for line in ablations.splitlines() if line.startswith(f"| {run} |"))
        assert fmt(m["localization"]["model"]["mae_mm"]) in row
        assert fmt(m["zero_shot"]["ensemble"]["macro_auc"], 3) in row
    assert re.search(r"\((within|outside) CI\)", ablations)
    main = (res / "tables" / "main_results.md").read_text()
    assert "reported" in main and "RadFinder (paper)" in main
    full_ct = metrics(demo_run, "full")["ct_rate"]
    assert fmt(full_ct["zero_shot"]["ensemble"]["macro_auc"], 3) in main
    per_label = (res / "tables" / "per_label_auc_rad_chestct.md").read_text()
    assert "Calcification" in per_label and "Mosaic" not in per_label
    assert "NA: no positives" in (res / "tables" / "per_label_auc_ct_rate.md").read_text()  # absent demo labels
    # the paper's protocol: its own tables, named in every caption, our runs beside the published numbers
    for name in ("paper_results", "paper_retrieval", "paper_zero_shot", "paper_v2v", "paper_merlin",
                 "paper_localization"):
        text = (res / "tables" / f"{name}.md").read_text()
        assert "Protocol: paper (lmb-freiburg/radfinder @7c6ab92)" in text and (res / "tables" / f"{name}.tex").is_file()
    paper = metrics(demo_run, "full")["paper"]
    assert paper["bootstrap"]["unit"] == "samples" and paper["ct_rate"]["pools"]["dup_all"] > \
        paper["ct_rate"]["pools"]["first_all"]
    row = next(line for line in (res / "tables" / "paper_results.md").read_text().splitlines()
               if line.startswith("| full |"))
    assert f"{paper['ct_rate']['retrieval']['dup_all']['R@10_ci']['value']:.1f}" in row
    assert "merlin" in paper and "localization" in paper["hospital"]


def test_html_report_collects_tables_and_figures(demo_run, tmp_path):
    """The report of the demo run (make demo ran with config/config.yaml in its folder), rebuilt into tmp_path."""
    proc = run_snakemake(demo_run, "--configfile", str(REPO / "config/config.yaml"),
                         "--report", str(tmp_path / "report.html"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    html = (tmp_path / "report.html").read_text(errors="replace")
    assert "localization_errors.png" in html and "ablations.md" in html


def held_out_dicom(demo_run: Path) -> tuple[str, Path]:
    """A held-out hospital volume with a planted reference to a port catheter, and its DICOM folder."""
    vols = pd.read_parquet(demo_run / "results" / "manifest" / "volumes.parquet")
    snippets = pd.read_parquet(demo_run / "results" / "text" / "snippets.parquet")
    test_ids = set(vols[(vols.dataset == "hospital") & (vols.split == "test")].volume_id)
    held = snippets[snippets.volume_id.isin(test_ids)]
    row = held[held.snippet.str.contains("Port", case=False)].iloc[0] if held.snippet.str.contains(
        "Port", case=False).any() else held.iloc[0]
    index = pd.read_parquet(demo_run / "results" / "ingest" / "dicom_index")  # partitioned dataset
    path = index[index.series_key.str[1:] == row.volume_id[1:]].path.iloc[0]
    return row, demo_run / "demo_data" / "hospital" / "DICOM" / Path(path).parent


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*CTVLP, *args], capture_output=True, text=True, timeout=300)


def test_cli_embed_equals_the_workflow_embedding(demo_run, tmp_path):
    row, folder = held_out_dicom(demo_run)
    ckpt = demo_run / "results" / "runs" / "full"
    out = tmp_path / "emb.safetensors"
    proc = cli("embed", "--checkpoint", str(ckpt), "--scan", str(folder), "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    mine = load_file(str(out))
    emb = np.load(ckpt / "embeddings.npz")
    meta = pd.read_parquet(ckpt / "embeddings.parquet")
    hosp = meta[meta.set == "hospital"].reset_index(drop=True)
    i = int(hosp.index[hosp.volume_id == row.volume_id][0])
    np.testing.assert_allclose(mine["scan"], emb["hospital/scan"][i], atol=2e-4)
    assert mine["depth"].shape[0] == int(emb["hospital/n_bins"][i])


def test_cli_localize_finds_the_planted_sentence_and_draws_it(demo_run, tmp_path):
    row, folder = held_out_dicom(demo_run)
    fig = tmp_path / "where.png"
    proc = cli("localize", "--checkpoint", str(demo_run / "results/runs/full"), "--scan", str(folder),
               "--text", row.snippet, "--figure", str(fig), "--json")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert abs(result["bin"] - int(row.depth_bin)) <= 2, (row.snippet, result["bin"], row.depth_bin)
    assert abs(result["z_mm"] - float(row.z_mm)) <= 2.5 * 12
    assert result["source_slice"]["instance_number"] >= 1 and len(result["top3"]) == 3
    assert fig.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_classify_mine_and_clear_errors(demo_run, tmp_path):
    row, folder = held_out_dicom(demo_run)
    ckpt = str(demo_run / "results/runs/full")
    proc = cli("classify", "--checkpoint", ckpt, "--scan", str(folder), "--json")
    assert proc.returncode == 0, proc.stderr
    probs = json.loads(proc.stdout)
    assert len(probs) == 18 and all(0.0 <= p <= 1.0 for p in probs.values())
    emb = np.load(Path(ckpt) / "embeddings.npz")  # the evaluation's own numbers for the same scan
    meta = pd.read_parquet(Path(ckpt) / "embeddings.parquet")
    hosp = meta[meta.set == "hospital"].reset_index(drop=True)
    i = int(hosp.index[hosp.volume_id == row.volume_id][0])
    scale = json.loads((Path(ckpt) / "config.json").read_text())["train"]["prompt_scale"]
    expected = zero_shot_probabilities(emb["hospital/scan_prompt"][i:i + 1], emb["hospital/pos_ensemble"],
                                       emb["hospital/neg_ensemble"], scale)[0]
    np.testing.assert_allclose(list(probs.values()), expected, atol=1e-3)
    report = tmp_path / "report.txt"
    report.write_text("Rundherd im rechten Unterlappen (Se 3/Bi 45). Nodule, series 2, image 17.", encoding="utf-8")
    proc = cli("mine", "--report", str(report), "--json")
    refs = json.loads(proc.stdout)
    assert [(r["series"], r["image"]) for r in refs] == [(3, 45), (2, 17)]
    not_a_scan = tmp_path / "scan.txt"
    not_a_scan.write_text("hello")
    for args, needle in ((("classify", "--checkpoint", ckpt, "--scan", str(not_a_scan)), "not a DICOM folder"),
                         (("classify", "--checkpoint", str(tmp_path), "--scan", str(folder)), "no config.json"),
                         (("localize", "--checkpoint", ckpt, "--scan", str(folder), "--text", "word " * 400),
                          "longer than")):
        proc = cli(*args)
        assert proc.returncode == 2 and needle in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, \
            proc.stderr[-2000:]
    assert cli("localize", "--help").returncode == 0
