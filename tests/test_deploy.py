"""Deployment seams of the gpu rules: torchrun's workers import ctvlp where it is not installed (the
`--sdm conda` environment). (One node per GPU job: tests/slurm/check_slurm_run.py; the gpu image:
tests/slurm/apptainer_part.sh; the whole paper path: tests/test_paper_journey.py.)"""

from __future__ import annotations

import os
import subprocess

import pytest

from bare_env import bare_python, clean_env
from conftest import REPO
from ctvlp.train.launch import worker_env


def test_worker_env_puts_the_imported_ctvlp_first_and_keeps_the_rest(tmp_path):
    env = worker_env({"PYTHONPATH": os.pathsep.join(["/elsewhere", str(REPO / "src")]), "HOME": "/h"}, 3)
    assert env["OMP_NUM_THREADS"] == "3" and env["HOME"] == "/h"
    assert env["PYTHONPATH"].split(os.pathsep) == [str(REPO / "src"), "/elsewhere"]  # once, first
    assert worker_env({}, 1)["PYTHONPATH"] == str(REPO / "src")


LAUNCH = """
import sys, yaml
sys.path.insert(0, {src!r})  # what Snakemake's preamble does for a rule script; no child process inherits it
from ctvlp.train.launch import launch, run_config
launch(run_config(yaml.safe_load(open({config!r})), {{}}), {run!r}, {{}}, gpus=2, threads=2)
"""


@pytest.mark.slow
def test_torchrun_workers_import_ctvlp_where_it_is_not_installed(tmp_path):
    """The rule's launch with 2 processes from a Python without ctvlp (as --sdm conda runs it): before the fix,
    both workers exited with "No module named 'ctvlp'"; now both run ctvlp.train.run, which here stops on the
    missing inputs (the whole training from such a Python: tests/test_paper_journey.py)."""
    python = bare_python(tmp_path / "venv")
    script = LAUNCH.format(src=str(REPO / "src"), config=str(REPO / "config/config.yaml"), run=str(tmp_path / "run"))
    out = subprocess.run([str(python), "-c", script], capture_output=True, text=True, env=clean_env(), timeout=300)
    log = out.stdout + out.stderr
    assert out.returncode != 0 and "No module named 'ctvlp'" not in log, log[-3000:]
    for rank in (0, 1):  # each worker reached the training entry point and stopped at the inputs it was not given
        assert f'[rank{rank}]:   File "{REPO}/src/ctvlp/train/run.py"' in log and f"[rank{rank}]: KeyError" in log, \
            log[-3000:]
