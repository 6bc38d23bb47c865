"""Checks after the Slurm test: what Slurm was asked for, and that the outputs equal the local run's.

    python tests/slurm/check_slurm_run.py SLURM_DIR LOCAL_DIR SNAKEMAKE_LOG INSTALLED_PROFILE

Requests: every `sbatch` line the plugin ran (from Snakemake's --verbose log) and Slurm's own record of the job
(sacct) are compared with what the installed profile and the config ask for: GPU rules in the GPU partition and
account with --gpus=<model>:<compute.*_gpus>, --cpus-per-gpu and --nodes=1 (Slurm records one node), never
--cpus-per-task; CPU rules in the CPU partition with --cpus-per-task = their threads; memory and time limits as
the profile's expressions give them for the first attempt. Outputs: tables, trained parameters and metrics equal the local run's; no salt in any
file the run wrote; every output readable by the group although the run started under umask 077.
"""

from __future__ import annotations

import json
import re
import shlex
import stat
import subprocess
import sys
from pathlib import Path

import pandas as pd
import torch
import yaml
import yte
from safetensors.torch import load_file

TABLES = ("manifest/volumes.parquet", "manifest/manifest.parquet", "qc/qc.parquet", "text/labels.parquet",
          "text/snippets.parquet", "text/prompts.parquet", "features/shard_0.parquet")
GPU_RULES = {"window_features": "features_gpus", "preprocess_features": "features_gpus",
             "pretrain_window_encoder": "features_gpus", "train": "train_gpus", "embed": "embed_gpus",
             "environment_gpu": "embed_gpus"}  # provenance of the gpu environment, on a GPU node
LOCAL_RULES = {"qc_summary", "tables", "figures", "all"}
SALT = "ctvlp-demo-salt"


def profile_requests(profile: Path) -> dict:
    """The installed profile rendered as Snakemake renders it (YTE), with its resource expressions."""
    return yte.process_yaml(profile.read_text())


def evaluate(expr, attempt: int = 1):
    return eval(str(expr), {}, {"attempt": attempt}) if isinstance(expr, str) else expr  # noqa: S307


def expected(rule: str, prof: dict, config: dict) -> dict:
    res = {**prof.get("default-resources", {}), **prof.get("set-resources", {}).get(rule, {})}
    out = {"-p": evaluate(res["slurm_partition"]), "-A": evaluate(res["slurm_account"]),
           "--mem": str(evaluate(res["mem_mb"])), "-t": str(evaluate(res["runtime"]))}
    if rule in GPU_RULES:
        out["--gpus"] = f"{evaluate(res['gpu_model'])}:{config['compute'][GPU_RULES[rule]]}"
        out["--cpus-per-gpu"] = str(res["cpus_per_gpu"])
        out["--nodes"] = "1"  # the rule's `nodes: 1`: Slurm's --gpus is per job, torchrun --standalone one node
    else:
        threads = prof.get("set-threads", {}).get(rule)
        if threads is not None:
            out["--cpus-per-task"] = str(threads)
    return out


def sbatch_calls(log: str) -> list[tuple[str, dict[str, str]]]:
    """(rule or group name, {flag: value}) for every sbatch line the slurm plugin ran."""
    calls = []
    for line in re.findall(r"sbatch call: (sbatch .*)", log):
        args = shlex.split(line)
        flags: dict[str, str] = {}
        i = 1
        while i < len(args):
            arg = args[i]
            if "=" in arg and arg.startswith("--"):
                key, value = arg.split("=", 1)
                flags[key] = value
            elif arg.startswith("-") and i + 1 < len(args) and not args[i + 1].startswith("-"):
                flags[arg] = args[i + 1]
                i += 1
            else:
                flags[arg] = ""
            i += 1
        name = re.search(r"/(?:rule|group)_(\w+)/", flags["--output"]).group(1)
        calls.append((name, flags))
    return calls


def sacct_records(ids: list[str]) -> dict[str, dict[str, str]]:
    fields = ["JobID", "Partition", "Account", "AllocTRES", "ReqMem", "Timelimit", "State", "ExitCode", "NNodes"]
    out = subprocess.run(["sacct", "-X", "-n", "-P", "-j", ",".join(ids), "-o", ",".join(fields)],
                         capture_output=True, text=True, check=True).stdout
    return {row.split("|")[0]: dict(zip(fields, row.split("|"))) for row in out.splitlines() if row}


def check_requests(log: str, prof: dict, config: dict) -> list[str]:
    calls = sbatch_calls(log)
    ids = re.findall(r"has been submitted with SLURM jobid (\d+) \(log: .*?/(?:rule|group)_(\w+)/", log)
    assert len(ids) == len(calls), f"{len(calls)} sbatch calls but {len(ids)} SLURM job ids"
    # a group job is named after its group and rules (evaluation_evaluate): call it by its group
    calls = [("evaluation" if name.startswith("evaluation") else name, flags) for name, flags in calls]
    ids = [(job, "evaluation" if name.startswith("evaluation") else name) for job, name in ids]
    seen = {name for name, _ in calls}
    for needed in ("dicom_index", "preprocess", "window_features", "train", "embed", "evaluation"):
        assert needed in seen, f"no sbatch call for {needed}: {sorted(seen)}"
    assert not seen & LOCAL_RULES, f"local rules went to Slurm: {seen & LOCAL_RULES}"
    ran_local = set(re.findall(r"^\s*localrule (\w+):", log, flags=re.MULTILINE))
    assert ran_local <= LOCAL_RULES and "qc_summary" in ran_local, f"ran outside Slurm: {ran_local}"
    for name, flags in calls:
        if name == "evaluation":  # the group of evaluate + compare jobs: one CPU job
            assert flags["-p"] == "cpu" and "--gpus" not in flags, flags
            continue
        want = expected(name, prof, config)
        for key, value in want.items():
            assert flags.get(key) == value, f"{name}: sbatch {key} {flags.get(key)!r}, profile asks {value!r}"
        if name in GPU_RULES:
            assert "--cpus-per-task" not in flags, f"{name}: --cpus-per-task next to --cpus-per-gpu"
        else:
            assert "--gpus" not in flags and "--cpus-per-gpu" not in flags, f"{name}: GPU request {flags}"
    records = sacct_records([job for job, _ in ids])
    for job, name in ids:
        rec = records[job]
        assert rec["State"] == "COMPLETED" and rec["ExitCode"] == "0:0", f"{name} job {job}: {rec}"
        assert rec["Partition"] == ("gpu" if name in GPU_RULES else "cpu"), f"{name} job {job}: {rec}"
        assert rec["Account"] == ("lab-gpu" if name in GPU_RULES else "lab-cpu"), f"{name} job {job}: {rec}"
        gpus = re.search(r"gres/gpu=(\d+)", rec["AllocTRES"])
        if name in GPU_RULES:
            n = config["compute"][GPU_RULES[name]]
            assert gpus and int(gpus.group(1)) == n, f"{name} job {job}: {rec['AllocTRES']}, wanted {n} GPUs"
            cpus = int(re.search(r"cpu=(\d+)", rec["AllocTRES"]).group(1))
            assert cpus == n * int(expected(name, prof, config)["--cpus-per-gpu"]), rec
            assert rec["NNodes"] == "1", f"{name} job {job} ran on {rec['NNodes']} nodes"
        else:
            assert not gpus, f"{name} job {job} holds GPUs: {rec['AllocTRES']}"
    train = next(flags for name, flags in calls if name == "train")
    return [f"{len(calls)} sbatch calls, each as the profile asks (train: {' '.join(f'{k} {train[k]}' for k in ('-p', '-A', '--gpus', '--nodes', '--cpus-per-gpu', '--mem', '-t'))}); "
            f"Slurm recorded partitions, accounts, GPUs and CPUs alike; local: {sorted(ran_local)}"]


def check_outputs(slurm: Path, local: Path, config: dict) -> list[str]:
    for name in TABLES:
        a, b = pd.read_parquet(slurm / "results" / name), pd.read_parquet(local / "results" / name)
        pd.testing.assert_frame_equal(a, b, check_exact=False, rtol=1e-6, obj=name)
    fa = json.loads((slurm / "results/runs/full/final.json").read_text())
    fb = json.loads((local / "results/runs/full/final.json").read_text())
    assert fa["steps"] == fb["steps"], (fa["steps"], fb["steps"])
    ckpt = lambda d: sorted((d / "results/runs/full/checkpoints").glob("ckpt-*.safetensors"))[-1]  # noqa: E731
    ta, tb = load_file(str(ckpt(slurm))), load_file(str(ckpt(local)))
    assert ta.keys() == tb.keys()
    for k in ta:
        if k.startswith("model/"):
            torch.testing.assert_close(ta[k], tb[k], rtol=1e-3, atol=1e-4, msg=k)
    gpus = int(config["compute"]["train_gpus"])
    if gpus > 1:  # the train rule's torchrun launch: one process per GPU of the job, locally and through Slurm
        for run in (slurm, local):
            train_log = (run / "logs/train/full.log").read_text()
            assert f"torch.distributed.run --standalone --nproc_per_node={gpus}" in train_log, train_log[-2000:]
            assert f"= {gpus} process(es)" in train_log, train_log[-2000:]
    ma = json.loads((slurm / "results/runs/full/metrics.json").read_text())
    mb = json.loads((local / "results/runs/full/metrics.json").read_text())
    assert ma.keys() == mb.keys()
    written = [p for d in ("results", "logs") for p in (slurm / d).rglob("*") if p.is_file()]
    salted = [str(p) for p in written if SALT.encode() in p.read_bytes()]
    assert not salted, f"the salt was written to {salted}"
    for config_file in (slurm / "results/runs/full").glob("*config.json"):
        assert "privacy" not in json.loads(config_file.read_text()), config_file
    private = [str(p) for p in written + [slurm / "results"] if not p.stat().st_mode & stat.S_IRGRP]
    assert not private, f"not readable by the group: {private[:5]}"
    # the Slurm job logs (.snakemake/slurm_logs) hold each job's stdout/stderr: no planted identifier in them either
    from ctvlp.privacy.phi_scan import find_identifiers, output_folders

    canaries = json.loads((Path(config["demo"]["root"]) / "ground_truth/phi_canaries.json").read_text())["strings"]
    folders = output_folders(slurm)
    assert any(f.name == "slurm_logs" for f in folders), f"no Slurm job logs under {slurm}/.snakemake"
    hits = find_identifiers(folders, canaries)
    assert hits == [], f"identifiers in the Slurm run's outputs or job logs: {hits[:5]}"
    return [f"{len(TABLES)} tables, the trained parameters ({gpus} torchrun processes) and the metrics equal the local "
            f"run's; no salt in {len(written)} written files; all group-readable"]


def main(slurm: Path, local: Path, log_path: Path, profile: Path) -> None:
    log = log_path.read_text()
    config = yaml.safe_load((slurm.parent / "slurm.yaml").read_text())
    lines = check_requests(log, profile_requests(profile), config) + check_outputs(slurm, local, config)
    print("\n".join(lines))
    print("all through sbatch")


if __name__ == "__main__":
    main(*(Path(a) for a in sys.argv[1:5]))
