"""Checks after the Slurm test: every job went through sbatch, and the outputs equal the local run's.

    python tests/slurm/check_slurm_run.py SLURM_DIR LOCAL_DIR SNAKEMAKE_LOG SLURMCTLD_LOG
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pandas as pd
import torch
from safetensors.torch import load_file

TABLES = ("manifest/volumes.parquet", "manifest/manifest.parquet", "qc/qc.parquet", "text/labels.parquet",
          "text/snippets.parquet", "text/prompts.parquet", "features/shard_0.parquet")


def submitted_jobs(log: str) -> tuple[int, list[str]]:
    """(jobs Snakemake scheduled, SLURM job ids it reported)."""
    scheduled = len(re.findall(r"^\s*(?:local)?rule \w+:", log, flags=re.MULTILINE))
    ids = re.findall(r"SLURM jobid (\d+)", log)
    return scheduled, ids


def main(slurm: Path, local: Path, log_path: Path, ctld_log: Path) -> None:
    log = log_path.read_text()
    scheduled, ids = submitted_jobs(log)
    local_rules = re.findall(r"^\s*localrule (\w+):", log, flags=re.MULTILINE)
    assert scheduled >= 8, f"only {scheduled} jobs scheduled"
    assert not local_rules, f"ran outside Slurm: {local_rules}"
    assert len(ids) == scheduled, f"{scheduled} jobs but {len(ids)} SLURM job ids"
    ctld = ctld_log.read_text(errors="replace")
    for job in ids:  # each id was a batch submission that ran and exited 0 on the node
        assert re.search(rf"_slurm_rpc_submit_batch_job: JobId={job}\b", ctld), f"JobId={job} not submitted by sbatch"
        assert re.search(rf"_job_complete: JobId={job} WEXITSTATUS 0", ctld), f"JobId={job} did not complete"
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
    # the Slurm job logs (.snakemake/slurm_logs) hold each job's stdout/stderr: no planted identifier in them either
    from ctvlp.privacy import find_identifiers, output_folders

    canaries = json.loads((slurm / "demo_data/ground_truth/phi_canaries.json").read_text())["strings"]
    folders = output_folders(slurm)
    assert any(f.name == "slurm_logs" for f in folders), f"no Slurm job logs under {slurm}/.snakemake"
    hits = find_identifiers(folders, canaries)
    assert hits == [], f"identifiers in the Slurm run's outputs or job logs: {hits[:5]}"
    print(f"{scheduled} jobs, all through sbatch (SLURM job ids {ids[0]}..{ids[-1]}); "
          f"{len(TABLES)} tables and the trained parameters equal the local run's")


if __name__ == "__main__":
    main(*(Path(a) for a in sys.argv[1:5]))
