"""The real Slurm test (tests/slurm/run_slurm_test.sh): root on Debian only, skipped with the reason otherwise."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import REPO


def why_not() -> str | None:
    if os.environ.get("CTVLP_SKIP_SLURM"):
        return "CTVLP_SKIP_SLURM is set"
    if os.geteuid() != 0:
        return "the Slurm test installs and starts slurmctld/slurmd/munged: it needs root"
    if not Path("/etc/debian_version").exists() or not shutil.which("apt-get"):
        return "the Slurm test installs Slurm from Debian packages: this is not Debian"
    return None


@pytest.mark.skipif(why_not() is not None, reason=why_not() or "")
def test_snakemake_profile_slurm_on_a_real_slurm(tmp_path):
    proc = subprocess.run(["bash", str(REPO / "tests" / "slurm" / "run_slurm_test.sh"), str(tmp_path)],
                          capture_output=True, text=True, timeout=5400)
    print(proc.stdout[-3000:])
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    assert "all through sbatch" in proc.stdout
