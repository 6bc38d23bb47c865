"""Shared fixtures: one real Snakemake run of the demo workflow per test session.

Snakemake costs seconds to start, so the end-to-end run happens once (session scope) and many
tests read its outputs; each test that needs a different config runs its own dry run.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = Path(sys.executable).parent / "snakemake"


def run_snakemake(workdir: Path, *args: str, timeout: int = 3000) -> subprocess.CompletedProcess:
    """Run the repository's Snakefile in ``workdir`` (results, logs and demo data land there)."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    cmd = [str(SNAKEMAKE), "-s", str(REPO / "Snakefile"), "-d", str(workdir), *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, cwd=workdir)


def write_config(path: Path, overrides: dict) -> Path:
    path.write_text(yaml.safe_dump(overrides))
    return path


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory) -> Path:
    """The whole demo workflow, run once for real; returns its working directory.

    Developers may set CTVLP_TEST_DEMO_RUN to a folder to keep (and reuse) the run between sessions; it is
    brought up to date by the same Snakemake call, so a stale folder is rebuilt, never trusted blindly.
    """
    keep = os.environ.get("CTVLP_TEST_DEMO_RUN")
    work = Path(keep) if keep else tmp_path_factory.mktemp("demo_run")
    work.mkdir(parents=True, exist_ok=True)
    cfg = write_config(work / "override.yaml", {"results": str(work / "results"),
                                                "logs": str(work / "logs"),
                                                "demo": {"root": str(work / "demo_data")}})
    proc = run_snakemake(work, "--cores", "2", "--configfile", str(REPO / "config/config.yaml"), str(cfg))
    if proc.returncode != 0:
        pytest.fail(f"demo workflow failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-8000:]}")
    return work


@pytest.fixture(scope="session")
def demo_root(demo_run) -> Path:
    return demo_run / "demo_data"
