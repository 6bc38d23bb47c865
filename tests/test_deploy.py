"""Deployment as users of the Snakemake workflow catalog deploy workflows: `snakedeploy deploy-workflow` into a
fresh folder, then a dry run there (the workflow used as a module, its config copied for editing)."""

from __future__ import annotations

import os
import subprocess
import tarfile
from pathlib import Path

import yaml

from conftest import REPO

BIN = REPO / ".venv" / "bin"


def tracked_copy(dest: Path) -> Path:
    """The repository as a clone has it (tracked and new files; no .venv, results, caches)."""
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO, capture_output=True,
                           text=True, check=True).stdout.split()
    dest.mkdir(parents=True)
    archive = dest.parent / "src.tar"
    with tarfile.open(archive, "w") as tar:
        for name in files:
            if (REPO / name).is_file() and not name.startswith(".venv"):
                tar.add(REPO / name, arcname=name)
    with tarfile.open(archive) as tar:
        tar.extractall(dest, filter="data")
    return dest


def test_snakedeploy_into_a_fresh_folder_then_a_dry_run(tmp_path):
    source = tracked_copy(tmp_path / "ctvlp")
    dest = tmp_path / "my-project"
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([str(BIN / "snakedeploy"), "deploy-workflow", str(source), str(dest), "--branch", "main"],
                          capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (dest / "config" / "config.yaml").read_text() == (REPO / "config" / "config.yaml").read_text()
    assert (dest / "config" / "README.md").is_file() and (dest / "profiles" / "slurm" / "config.yaml").is_file()
    snakefile = (dest / "workflow" / "Snakefile").read_text()
    assert "module ctvlp:" in snakefile and "use rule * from ctvlp" in snakefile
    # From GitHub the declaration reads github("<owner>/ctvlp", path="Snakefile", tag=...), which Snakemake
    # fetches; snakedeploy writes a local source as a bare relative path, so point it at the copy.
    snakefile = snakefile.replace('"Snakefile"', f'"{source / "Snakefile"}"')
    (dest / "workflow" / "Snakefile").write_text(snakefile)
    # the deployment's own copy of the config is what the run reads (here: a run list of one)
    config = yaml.safe_load((dest / "config" / "config.yaml").read_text())
    (dest / "config" / "ablations.tsv").write_text("run\ttrain.weights.localization\tdescription\nmine\t1.0\tx\n")
    assert config["train"]["ablations"] == "config/ablations.tsv"
    proc = subprocess.run([str(BIN / "snakemake"), "-n", "--cores", "1"], capture_output=True, text=True,
                          timeout=600, cwd=dest, env=env)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    assert "demo_cohort" in proc.stdout and "results/runs/mine/final.json" in proc.stdout
