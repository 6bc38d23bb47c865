"""Deployment seams of the gpu rules: torchrun's workers import ctvlp where it is not installed (the
`--sdm conda` environment). (One node per GPU job: tests/slurm/check_slurm_run.py; the gpu image:
tests/slurm/apptainer_part.sh; the whole paper path: tests/test_paper_journey.py.)"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys

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


@pytest.mark.slow
def test_rule_scripts_run_the_checkouts_ctvlp_where_another_is_installed(tmp_path):
    """An image built from an older checkout holds an installed ctvlp that a rule script found before the
    checkout's src/ (Snakemake appends its search path after site-packages): the rule ran the old code. Here a
    real wheel of another version, built from a copy of src/, is installed in a Python's own site-packages (as in
    an image) and the workflow's rule `environment_data` runs from that Python: it must run, and record, the
    checkout's ctvlp."""
    import sysconfig

    from ctvlp.core.provenance import running_ctvlp_version

    stale = tmp_path / "stale"
    shutil.copytree(REPO / "src", stale / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, stale / name)
    init = stale / "src" / "ctvlp" / "__init__.py"
    init.write_text(init.read_text().replace(f'__version__ = "{running_ctvlp_version()}"', '__version__ = "0.0.1"'))
    toml = stale / "pyproject.toml"
    toml.write_text(re.sub(r'(?m)^version = ".*"$', 'version = "0.0.1"', toml.read_text()))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w",
                    str(tmp_path / "wheels"), str(stale)], check=True, capture_output=True)
    python = bare_python(tmp_path / "venv")
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    assert site != sysconfig.get_paths()["purelib"]
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", site,
                    *map(str, (tmp_path / "wheels").glob("ctvlp-0.0.1-*.whl"))], check=True, capture_output=True)
    probe = subprocess.run([str(python), "-c", "import ctvlp; print(ctvlp.__version__)"], capture_output=True,
                           text=True, env=clean_env())
    assert probe.stdout.strip() == "0.0.1", probe.stderr  # that Python alone imports the installed one
    work = tmp_path / "work"
    work.mkdir()
    out = subprocess.run([str(python), "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(work), "--cores",
                          "1", "results/provenance/environment_data.json", "--configfile", str(REPO / "config/config.yaml")],
                         capture_output=True, text=True, env={**clean_env(), "HF_HUB_OFFLINE": "1"}, cwd=work,
                         timeout=600)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    record = json.loads((work / "results/provenance/environment_data.json").read_text())
    assert record["packages"]["ctvlp"] == running_ctvlp_version() != "0.0.1"
