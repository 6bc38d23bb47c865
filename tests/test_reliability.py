"""Reliability through the real workflow: a SIGKILLed training job resumes from its last checkpoint and ends
with the parameters of an uninterrupted run; two runs from clean folders give byte-identical data products."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import yaml
from safetensors.torch import load_file

from conftest import REPO, SNAKEMAKE, TEST_CONFIG, run_snakemake, write_config
from ctvlp.features.cache import cache_file

SHORT = "train.epochs\ttrain.checkpoint_every\tdescription\n"


def _short_runs_config(test_run: Path, tmp_path: Path) -> Path:
    """The test run's results (features, text) with two identical short runs added (one step per epoch)."""
    tsv = tmp_path / "ablations.tsv"
    tsv.write_text("run\t" + SHORT + "".join(f"{r}\t6\t1\tthe same short run\n" for r in ("straight", "crash")))
    cfg = yaml.safe_load((test_run / "override.yaml").read_text())
    cfg["train"] = {"ablations": str(tsv)}
    return write_config(tmp_path / "short.yaml", cfg)


def _latest_step(run_dir: Path) -> int:
    pointer = run_dir / "checkpoints" / "latest.json"
    try:
        return json.loads(pointer.read_text())["step"]
    except (OSError, ValueError):
        return 0


def test_sigkilled_training_resumes_and_ends_like_an_uninterrupted_run(test_run, tmp_path):
    cfg = _short_runs_config(test_run, tmp_path)
    args = ["--cores", "2", "--configfile", str(REPO / "config/config.yaml"), str(TEST_CONFIG), str(cfg)]
    runs = test_run / "results" / "runs"
    for run in ("straight", "crash"):  # a kept test run (CTVLP_TEST_RUN) may hold them from last time
        shutil.rmtree(runs / run, ignore_errors=True)
    done = run_snakemake(test_run, str(runs / "straight" / "final.json"), *args)
    assert done.returncode == 0, done.stderr[-3000:]

    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    cmd = [str(SNAKEMAKE), "-s", str(REPO / "Snakefile"), "-d", str(test_run), str(runs / "crash" / "final.json"), *args]
    job = subprocess.Popen(cmd, cwd=test_run, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           start_new_session=True)
    deadline = time.time() + 600
    while _latest_step(runs / "crash") < 3 and time.time() < deadline and job.poll() is None:
        time.sleep(0.2)
    os.killpg(job.pid, signal.SIGKILL)  # the whole job: snakemake and the training process
    job.wait()
    killed_at = _latest_step(runs / "crash")
    total = json.loads((runs / "straight" / "final.json").read_text())["steps"]
    assert 3 <= killed_at < total and not (runs / "crash" / "final.json").exists()

    assert run_snakemake(test_run, "--unlock", *args).returncode == 0
    again = run_snakemake(test_run, str(runs / "crash" / "final.json"), *args)
    assert again.returncode == 0, again.stderr[-3000:]
    result = json.loads((runs / "crash" / "final.json").read_text())
    print(f"RELIABILITY resume: killed after step {killed_at} of {total}, resumed from step "
          f"{result['resumed_from_step']}: {result['resumed_from_step']} steps not redone")
    assert result["resumed_from_step"] >= killed_at  # from the last checkpoint, not from scratch
    assert "resumed from the checkpoint of step" in (test_run / "logs" / "train" / "crash.log").read_text()
    assert list(pd.read_csv(runs / "crash" / "train_log.csv").step) == list(range(1, total + 1))
    a = load_file(str(runs / "straight" / "checkpoints" / f"ckpt-{total:07d}.safetensors"))
    b = load_file(str(runs / "crash" / "checkpoints" / f"ckpt-{total:07d}.safetensors"))
    for key in (k for k in a if k.startswith("model/")):
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0, msg=key)
    assert result["test"] == json.loads((runs / "straight" / "final.json").read_text())["test"]


def _digests(results: Path) -> dict[str, str]:
    patterns = ("manifest/*.parquet", "cache/volumes/*/*.npy", "text/*.parquet", "text/*.md", "qc/*",
                "features/volumes/*.safetensors", "ingest/*.parquet")
    return {str(p.relative_to(results)): hashlib.sha256(p.read_bytes()).hexdigest()
            for pattern in patterns for p in sorted(results.glob(pattern))}


def test_two_clean_runs_give_byte_identical_data_products(test_run, tmp_path):
    """A second run in a fresh folder from the same raw export (the test run's cohort, fault corpus included,
    read only: that the generator itself repeats its bytes is test_demo_cohort's) writes the same bytes, from the
    DICOM index to the window features and the text tables."""
    work = tmp_path / "again"
    work.mkdir()
    cfg = write_config(work / "override.yaml", {"results": str(work / "results"), "logs": str(work / "logs"),
                                                "demo": {"root": str(test_run / "demo_data")}})
    targets = [str(work / "results" / t) for t in ("manifest/volumes.parquet", "qc/summary.md",
                                                   "text/snippets.parquet", "text/rate_labels.parquet",
                                                   "features/shard_0.parquet", "features/shard_1.parquet")]
    proc = run_snakemake(work, *targets, "--cores", "2", "--configfile", str(REPO / "config/config.yaml"),
                         str(TEST_CONFIG), str(cfg))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "rule demo_cohort:" not in proc.stdout + proc.stderr  # the shared cohort is read, never rewritten
    first, second = _digests(test_run / "results"), _digests(work / "results")
    volumes = pd.read_parquet(test_run / "results" / "manifest" / "volumes.parquet")
    # every volume's cache and feature file (the demo's 160 patients: > 150 files) and the tables
    assert len(first) > 2 * len(volumes) > 50 and first.keys() == second.keys()
    mismatches = [name for name in first if first[name] != second[name]]
    print(f"RELIABILITY determinism: {len(first)} files compared, {len(mismatches)} mismatches")
    assert mismatches == []


def test_killed_preprocessing_redoes_only_that_shard_and_never_reads_half_files(test_run, tmp_path):
    """Preprocessing of the test run's cohort (read only) in a fresh folder, SIGKILLed inside its second shard."""
    cfg = write_config(tmp_path / "override.yaml", {
        "results": str(tmp_path / "results"), "logs": str(tmp_path / "logs"),
        "demo": {"root": str(test_run / "demo_data")}})
    res = tmp_path / "results"
    shards = [res / "cache" / f"shard_{i}.parquet" for i in (0, 1)]
    args = [*(str(s) for s in shards), "--cores", "1", "--configfile", str(REPO / "config/config.yaml"),
            str(TEST_CONFIG), str(cfg)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    job = subprocess.Popen([str(SNAKEMAKE), "-s", str(REPO / "Snakefile"), "-d", str(tmp_path), *args], cwd=tmp_path,
                           env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)

    def second_shard_started() -> int | None:
        done = [i for i, s in enumerate(shards) if s.exists()]
        if len(done) != 1 or not (res / "manifest" / "manifest.parquet").exists():
            return None
        other = 1 - done[0]
        manifest = pd.read_parquet(res / "manifest" / "manifest.parquet")
        ids = manifest[manifest.shard == other].volume_id
        return other if any(cache_file(res / "cache" / "volumes", v).exists() for v in ids) else None

    deadline, killed = time.time() + 600, None
    while killed is None and time.time() < deadline and job.poll() is None:
        killed = second_shard_started()
        time.sleep(0.05)
    os.killpg(job.pid, signal.SIGKILL)
    job.wait()
    assert killed is not None, "the workflow finished before the second shard could be killed"
    kept = 1 - killed
    before = shards[kept].stat().st_mtime_ns
    assert not shards[killed].exists()

    assert run_snakemake(tmp_path, "--unlock", *args).returncode == 0
    again = run_snakemake(tmp_path, *args, "--rerun-incomplete")
    assert again.returncode == 0, again.stderr[-3000:]
    log = again.stdout + again.stderr
    assert f"shard={killed}" in log and f"shard={kept}" not in log  # only the killed shard was redone
    assert shards[kept].stat().st_mtime_ns == before
    for row in pd.read_parquet(shards[killed]).itertuples():
        if row.status == "ok":  # every cached volume is whole (np.load would fail on a half-written .npy)
            assert np.load(cache_file(res / "cache" / "volumes", row.volume_id)).shape == tuple(row.shape)
