"""The workflow's training, evaluation, tables, figures, report and the ``ctvlp`` command line, all read from
the one session-wide real Snakemake run of the test configuration (``test_run``, .test/config). The demo's
quality at its full size (targets, the claims' verdicts, localization accuracy) is tests/demo/'s."""

from __future__ import annotations

import json
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
from conftest import REPO, run_configfiles, run_snakemake

CTVLP = [sys.executable, "-m", "ctvlp.cli"]


@pytest.fixture(scope="module")
def ablations(run_config) -> dict[str, dict]:
    """The ablation rows of the run under test (the test config's here; the demo's when tests/demo collects these
    tests again)."""
    return load_ablations(REPO / run_config["train"]["ablations"])


def metrics(test_run: Path, run: str) -> dict:
    return json.loads((test_run / "results" / "runs" / run / "metrics.json").read_text())


def test_every_rule_of_the_demo_ran_in_the_test_run(test_run, tmp_path):
    """The test configuration is the demo's workflow in miniature: the demo's rules (snakemake --list-rules with
    config/config.yaml) are the test config's, and each of them ran in the session's run (its Snakemake logs)."""
    def rules(*configfiles: str) -> set[str]:
        proc = run_snakemake(tmp_path, "--list-rules", "--configfile", *configfiles)
        assert proc.returncode == 0, proc.stderr[-3000:]
        return {line.strip() for line in proc.stdout.splitlines() if re.fullmatch(r"\w+", line.strip())}

    demo = rules(str(REPO / "config/config.yaml"))
    assert demo == rules(*run_configfiles(test_run)[1:]) and len(demo) >= 15
    ran = {m for log in (test_run / ".snakemake" / "log").glob("*.log")
           for m in re.findall(r"^(?:local)?rule (\w+):$", log.read_text(), flags=re.M)}
    assert demo - {"all"} <= ran, sorted(demo - {"all"} - ran)


def test_every_ablation_row_trained_with_checkpoints_logs_and_dev_metrics(test_run, ablations):
    """Every trained row (a released row, train.source: released, has no training: tests/test_release_export.py)."""
    trained = [run for run, o in ablations.items() if o.get("train.source") != "released"]
    assert trained
    for run in trained:
        d = test_run / "results" / "runs" / run
        assert (d / "best.safetensors").is_file() and (d / "checkpoints" / "latest.json").is_file()
        log = pd.read_csv(d / "train_log.csv")
        assert list(log.step) == list(range(1, len(log) + 1))  # every step once
        assert len(pd.read_csv(d / "dev_metrics.csv")) >= 1
        assert (test_run / "logs" / "train" / f"{run}.log").is_file()
    no_localization = next(run for run, o in ablations.items() if o.get("train.weights.localization") == 0.0)
    no_loc = pd.read_csv(test_run / "results" / "runs" / no_localization / "train_log.csv")
    assert "localization" not in no_loc or no_loc["localization"].isna().all()


def test_pretraining_stage_and_the_claims_summary(test_run):
    """The self-supervised stage ran (every step logged, weights written and used by the features), the
    random-encoder run read its own feature set, the linear probe of both is computed, and the claims summary
    judges every claim. (That the loss fell and the probe beats chance needs the demo's 250 steps: tests/demo.)"""
    from ctvlp.evaluate.probe import probe_results

    res = test_run / "results"
    assert (res / "pretrain" / "window_encoder.safetensors").is_file()
    loss = pd.read_csv(res / "pretrain" / "loss.tsv", sep="\t")
    assert list(loss.step) == list(range(1, len(loss) + 1)) and np.isfinite(loss.loss).all()
    assert "pretrain/window_encoder.safetensors" in (test_run / "logs" / "window_features" / "features_0.log").read_text()
    assert "random init" in (test_run / "logs" / "window_features" / "features_random_0.log").read_text()
    seconds = pd.read_csv(test_run / "logs" / "benchmarks" / "pretrain_window_encoder.tsv", sep="\t").s.iloc[0]
    probes = {fs: probe_results(res, features=fs).probe_auc.mean() for fs in ("features", "features_random")}
    print("PRETRAIN", seconds, "s; linear-probe macro AUC, hospital test:", probes)
    assert all(0.0 <= p <= 1.0 for p in probes.values())
    claims = (res / "tables" / "claims.md").read_text()
    print(claims)
    from ctvlp.evaluate.claims import VERDICTS

    assert sum(claims.count(f"| {v} |") for v in VERDICTS) == 5 and "not reproduced" not in claims
    assert "random_encoder - full" in claims and "83.8" in claims


def test_tables_and_figures_exist_and_agree_with_the_metric_files(test_run, ablations):
    res = test_run / "results"
    for name in ("main_results", "ablations", "localization", "per_label_auc_hospital", "per_label_auc_ct_rate",
                 "per_label_auc_rad_chestct"):
        assert (res / "tables" / f"{name}.md").is_file() and (res / "tables" / f"{name}.tex").is_file()
    for name in ("per_label_auc_hospital", "per_label_auc_ct_rate", "per_label_auc_rad_chestct",
                 "recall_at_k_hospital_t2i_scans", "recall_at_k_ct_rate_t2i_scans", "localization_errors",
                 "training_curves", "qualitative"):
        assert (res / "figures" / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert (res / "figures" / f"{name}.pdf").read_bytes()[:5] == b"%PDF-"
    table = (res / "tables" / "ablations.md").read_text()
    for run in ablations:
        m = metrics(test_run, run)["hospital"]
        row = next(line for line in table.splitlines() if line.startswith(f"| {run} |"))
        assert fmt(m["localization"]["model"]["mae_mm"]) in row
        assert fmt(m["zero_shot"]["ensemble"]["macro_auc"], 3) in row
    assert re.search(r"\((within|outside) CI\)", table)
    main = (res / "tables" / "main_results.md").read_text()
    assert "reported" in main and "RadFinder (paper)" in main
    full_ct = metrics(test_run, "full")["ct_rate"]
    assert fmt(full_ct["zero_shot"]["ensemble"]["macro_auc"], 3) in main
    per_label = (res / "tables" / "per_label_auc_rad_chestct.md").read_text()
    assert "Calcification" in per_label and "Mosaic" not in per_label
    assert "NA: no positives" in (res / "tables" / "per_label_auc_ct_rate.md").read_text()  # absent demo labels
    # the paper's protocol: its own tables, named in every caption, our runs beside the published numbers
    for name in ("paper_results", "paper_retrieval", "paper_zero_shot", "paper_v2v", "paper_merlin",
                 "paper_localization"):
        text = (res / "tables" / f"{name}.md").read_text()
        assert "Protocol: paper (lmb-freiburg/radfinder @7c6ab92)" in text and (res / "tables" / f"{name}.tex").is_file()
    paper = metrics(test_run, "full")["paper"]
    assert paper["bootstrap"]["unit"] == "samples" and paper["ct_rate"]["pools"]["dup_all"] > \
        paper["ct_rate"]["pools"]["first_all"]
    row = next(line for line in (res / "tables" / "paper_results.md").read_text().splitlines()
               if line.startswith("| full |"))
    assert f"{paper['ct_rate']['retrieval']['dup_all']['R@10_ci']['value']:.1f}" in row
    assert "merlin" in paper and "localization" in paper["hospital"]


def test_html_report_collects_tables_and_figures(test_run):
    proc = run_snakemake(test_run, *run_configfiles(test_run), "--report", str(test_run / "results" / "report.html"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    html = (test_run / "results" / "report.html").read_text(errors="replace")
    assert "localization_errors.png" in html and "ablations.md" in html


# ---- the command line ---------------------------------------------------------------------------------
def held_out_dicom(test_run: Path) -> tuple[str, Path]:
    """A held-out hospital volume with a planted reference to a port catheter, and its DICOM folder."""
    vols = pd.read_parquet(test_run / "results" / "manifest" / "volumes.parquet")
    snippets = pd.read_parquet(test_run / "results" / "text" / "snippets.parquet")
    test_ids = set(vols[(vols.dataset == "hospital") & (vols.split == "test")].volume_id)
    held = snippets[snippets.volume_id.isin(test_ids)]
    row = held[held.snippet.str.contains("Port", case=False)].iloc[0] if held.snippet.str.contains(
        "Port", case=False).any() else held.iloc[0]
    index = pd.read_parquet(test_run / "results" / "ingest" / "dicom_index")  # partitioned dataset
    path = index[index.series_key.str[1:] == row.volume_id[1:]].path.iloc[0]
    return row, test_run / "demo_data" / "hospital" / "DICOM" / Path(path).parent


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*CTVLP, *args], capture_output=True, text=True, timeout=300)


def test_cli_embed_equals_the_workflow_embedding(test_run, tmp_path):
    row, folder = held_out_dicom(test_run)
    ckpt = test_run / "results" / "runs" / "full"
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


def test_cli_localize_answers_in_the_scan_and_draws_it(test_run, tmp_path):
    """The command's answer and figure; that it finds the planted sentence's depth needs the demo's trained
    model (tests/demo/test_demo_end_to_end.py::test_cli_localize_finds_the_planted_sentence_and_draws_it)."""
    row, folder = held_out_dicom(test_run)
    fig = tmp_path / "where.png"
    proc = cli("localize", "--checkpoint", str(test_run / "results/runs/full"), "--scan", str(folder),
               "--text", row.snippet, "--figure", str(fig), "--json")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert isinstance(result["bin"], int) and result["bin"] >= 0 and np.isfinite(result["z_mm"])
    assert result["source_slice"]["instance_number"] >= 1 and len(result["top3"]) == 3
    assert fig.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_classify_mine_and_clear_errors(test_run, tmp_path):
    row, folder = held_out_dicom(test_run)
    ckpt = str(test_run / "results/runs/full")
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


@pytest.mark.parametrize("command", ["embed", "classify", "localize", "mine", "import-weights"])
def test_every_subcommand_has_help(command):
    proc = cli(command, "--help")
    assert proc.returncode == 0 and "usage: ctvlp" in proc.stdout
