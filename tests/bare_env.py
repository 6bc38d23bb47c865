"""A Python where ctvlp is not installed, as `snakemake --sdm conda` deploys the gpu rules (envs/gpu.yaml holds
third-party packages only): a venv whose one .pth file adds this venv's site-packages as a plain folder. Folders
added by a .pth are not scanned for .pth files themselves, so the editable install's own .pth (which puts src/ on
the path) is never read: torch, snakemake and the rest import, ctvlp does not."""

from __future__ import annotations

import subprocess
import sys
import sysconfig
from pathlib import Path


def bare_python(folder: Path) -> Path:
    """Create (once) the venv in ``folder``; returns its python. Raises if ctvlp imports there."""
    python = folder / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(folder)], check=True)
        site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                              capture_output=True, text=True, check=True).stdout.strip()
        Path(site, "ctvlp-deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    probe = subprocess.run([str(python), "-c", "import torch, snakemake\ntry:\n import ctvlp\nexcept ImportError:\n"
                            " print('no ctvlp')"], capture_output=True, text=True, env=clean_env())
    if probe.stdout.strip() != "no ctvlp":
        raise RuntimeError(f"the bare venv {folder} is not bare: {probe.stdout}{probe.stderr}")
    return python


def clean_env() -> dict[str, str]:
    """This process's environment without PYTHONPATH (which Snakemake strips from its jobs)."""
    import os

    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONUSERBASE")}
