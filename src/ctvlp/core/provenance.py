"""Provenance of a run: the software that made it, the environment of each kind of rule, the data it read.

``provenance.json`` (one per run, written by rule ``provenance``) answers "what exactly produced these numbers":

- ``software``: the workflow's git commit and whether the tree had uncommitted changes, or, without git (a
  deployed copy, an image), the deployed tag (``CTVLP_DEPLOYED_TAG``) or the package version;
- ``environments``: per kind of rule (data, gpu, report: one conda environment or image each) the Python,
  package versions, the environment's kind (venv, conda, container with its image digest), and torch, CUDA,
  cuDNN, NCCL, GPU model and driver (null where the job ran without a GPU or without torch);
- ``rules``: which kind ran which rule;
- ``data``: per source a fingerprint (file count, total bytes, SHA-256 over the sorted salted path keys and sizes)
  and the SHA-256 of its label and metadata files; ``weights``: SHA-256 of the imported weights.

Nothing identifying is written: no host names, no user names, no absolute paths (a folder's name only where it
is a content hash, such as Snakemake's conda environments); file paths under a data root are replaced by salted
keys (HMAC-SHA256), label and metadata files are named by their path relative to the source root, the hospital's
reports export as ``reports export``. This module imports no snakemake and no torch at import time.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import platform
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

# Label and metadata files per source, as glob patterns relative to the source's root (datasets.md).
LABEL_FILES = {
    "ct_rate": ["radiology_text_reports/*", "multi_abnormality_labels/*", "metadata/*"],
    "rad_chestct": ["Summary_*.csv", "*_Abnormality_and_Location_Labels.csv"],
    "merlin": ["reports_final.xlsx", "*.csv"],
    "inspect": ["full/*.tsv", "*.tsv"],
}
# The packages whose versions matter most, listed first in every environment record (all others follow).
KEY_PACKAGES = ("torch", "numpy", "scipy", "pandas", "scikit-learn", "transformers", "peft", "safetensors",
                "pydicom", "nibabel", "snakemake", "ctvlp")
CHUNK = 1 << 20


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


# ---- software ------------------------------------------------------------------------------------------------
def software_state(repo: str | Path) -> dict:
    """``{"commit", "dirty", "tag"}`` of the workflow's folder: git's commit and dirty flag (tracked files
    changed), else the deployed tag (``CTVLP_DEPLOYED_TAG``, set by a deployment or an image) and commit null."""
    tag = os.environ.get("CTVLP_DEPLOYED_TAG") or None
    try:
        commit = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True,
                                timeout=30, check=True).stdout.strip()
        status = subprocess.run(["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
                                capture_output=True, text=True, timeout=60, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None, "tag": tag or f"ctvlp {running_ctvlp_version()}"}
    return {"commit": commit, "dirty": bool(status.strip()), "tag": tag}


def running_ctvlp_version() -> str | None:
    """The version of the ctvlp code this process runs: its own ``__init__``'s (read, not imported: core sits
    below the package root). Not the installed distribution's: a rule can run the checkout's src/ while an image
    or environment also holds an installed ctvlp of another version."""
    found = re.search(r'^__version__ = "([^"]+)"', (Path(__file__).parents[1] / "__init__.py").read_text(), re.M)
    return found.group(1) if found else None


# ---- environment -----------------------------------------------------------------------------------------------
def packages() -> dict[str, str]:
    """Every installed distribution's version (ctvlp: the running code's), the key packages first, then the rest
    by name."""
    found = {}
    for dist in metadata.distributions():
        name = (dist.metadata["Name"] or "").lower()
        if name and name not in found:
            found[name] = dist.version
    found["ctvlp"] = running_ctvlp_version()  # the code that runs, installed or not (and of which version)
    first = {k: found[k] for k in KEY_PACKAGES if k in found}
    return {**first, **{k: found[k] for k in sorted(found) if k not in first}}


def environment_kind() -> dict:
    """How this Python was provided: a container (its image's name and digest), a conda environment (its
    folder's name: Snakemake names them by the hash of their YAML), a venv, or the system's Python."""
    image = os.environ.get("APPTAINER_CONTAINER") or os.environ.get("SINGULARITY_CONTAINER")
    if image:
        digest = None
        if Path(image).is_file():  # an image file (.sif): its SHA-256 is its digest
            digest = "sha256:" + sha256_file(image)
        return {"kind": "container", "image": Path(image).name, "digest": digest}
    if os.environ.get("CONDA_PREFIX") and Path(sys.prefix).resolve() == Path(os.environ["CONDA_PREFIX"]).resolve():
        return {"kind": "conda", "name": Path(sys.prefix).name}
    if sys.prefix != sys.base_prefix:
        return {"kind": "venv", "name": None}  # a venv's folder name may name its owner: not recorded
    return {"kind": "system", "name": None}


def accelerator() -> dict:
    """torch, CUDA, cuDNN, NCCL, GPU model and driver of this process; null where there is no GPU or no torch."""
    out = {"torch": None, "cuda": None, "cudnn": None, "nccl": None, "gpu": None, "gpu_count": 0, "driver": None}
    try:
        import torch
    except ImportError:
        return out
    out["torch"] = torch.__version__
    if not torch.cuda.is_available():
        return out
    out["cuda"] = torch.version.cuda
    out["cudnn"] = (str(torch.backends.cudnn.version()) if torch.backends.cudnn.is_available() else None)
    try:
        nccl = torch.cuda.nccl.version()
        out["nccl"] = ".".join(map(str, nccl)) if isinstance(nccl, tuple) else str(nccl)
    except Exception:  # a build without NCCL
        out["nccl"] = None
    out["gpu_count"] = torch.cuda.device_count()
    out["gpu"] = torch.cuda.get_device_name(0)
    out["driver"] = _driver_version()
    return out


def _driver_version() -> str | None:
    try:
        proc = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                              capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        proc = None
    if proc is not None and proc.returncode == 0 and proc.stdout.strip():
        return proc.stdout.splitlines()[0].strip()
    version = Path("/proc/driver/nvidia/version")  # "NVRM version: NVIDIA UNIX x86_64 Kernel Module  550.54.15 ..."
    if version.is_file():
        words = version.read_text().split()
        return next((w for w in words if w.count(".") >= 1 and w.replace(".", "").isdigit()), None)
    return None


def environment_record(with_accelerator: bool = True) -> dict:
    """The environment of the process calling it (a rule's job): Python, OS kind, packages, accelerator."""
    record = {"python": platform.python_version(), "implementation": platform.python_implementation(),
              "system": f"{platform.system()} {platform.machine()}", "environment": environment_kind()}
    record.update(accelerator() if with_accelerator else {})
    record["packages"] = packages()
    return record


# ---- data --------------------------------------------------------------------------------------------------------
def salted_key(salt: bytes, relative: str) -> str:
    return hmac.new(salt, relative.encode(), hashlib.sha256).hexdigest()


def data_fingerprint(root: str | Path, salt: bytes) -> dict:
    """File count, total bytes and SHA-256 over the sorted (salted path key, size) pairs of every file under
    ``root`` (a single file: that file). Paths never leave this function: only their salted keys enter the hash,
    so the fingerprint says whether two sites' (or two days') data are the same without naming a file."""
    root = Path(root)
    entries = []
    if root.is_file():
        entries.append((salted_key(salt, root.name), root.stat().st_size))
    else:
        stack = [root]
        while stack:
            folder = stack.pop()
            with os.scandir(folder) as it:
                for entry in it:
                    if entry.is_dir(follow_symlinks=True):
                        stack.append(Path(entry.path))
                    elif entry.is_file(follow_symlinks=True):
                        rel = Path(entry.path).relative_to(root).as_posix()
                        entries.append((salted_key(salt, rel), entry.stat(follow_symlinks=True).st_size))
    entries.sort()
    digest = hashlib.sha256()
    for key, size in entries:
        digest.update(f"{key}\t{size}\n".encode())
    return {"files": len(entries), "bytes": int(sum(size for _, size in entries)), "sha256": digest.hexdigest()}


def label_files(name: str, entry: dict) -> dict[str, Path]:
    """The label and metadata files of one source: {name to record: path}."""
    files: dict[str, Path] = {}
    if entry.get("reports_csv"):
        files["reports export"] = Path(entry["reports_csv"])
    root = Path(entry["root"]) if entry.get("root") else None
    if root is not None and root.is_dir():
        for pattern in LABEL_FILES.get(name, []):
            for path in sorted(root.glob(pattern)):
                if path.is_file():
                    files.setdefault(path.relative_to(root).as_posix(), path)
    if entry.get("rate_labels") and Path(entry["rate_labels"]).is_dir():
        rate = Path(entry["rate_labels"])
        for path in sorted(rate.rglob("*")):
            if path.is_file():
                files.setdefault(f"rate_labels/{path.relative_to(rate).as_posix()}", path)
    return files


def source_record(name: str, entry: dict, salt: bytes) -> dict:
    """One data source: a fingerprint per configured folder or file (dicom_root, root, reports_csv,
    rate_labels) and the SHA-256 of its label and metadata files."""
    fingerprints = {key: data_fingerprint(entry[key], salt) for key in ("root", "dicom_root", "reports_csv",
                                                                          "rate_labels")
                    if entry.get(key) and Path(entry[key]).exists()}
    hashes = {label: sha256_file(path) for label, path in label_files(name, entry).items()}
    return {"fingerprint": fingerprints, "label_files": hashes}


def data_record(sources: dict[str, dict], salt: bytes) -> dict:
    return {"fingerprint": "sha256 over sorted lines '<HMAC-SHA256(salt, path relative to the folder)>\\t<bytes>'",
            "sources": {name: source_record(name, entry or {}, salt) for name, entry in sorted(sources.items())}}


def weights_record(folders: list[str | Path]) -> dict:
    """SHA-256 of every file of each imported weights folder (``ctvlp import-weights``: the converted tensors and
    the manifest, which itself lists the SHA-256 of the released files they came from), by file name."""
    out = {}
    for folder in folders:
        folder = Path(folder)
        if folder.is_file():
            folder = folder.parent
        files = {p.name: sha256_file(p) for p in sorted(folder.iterdir()) if p.is_file()} if folder.is_dir() else {}
        manifest = folder / "manifest.json"
        sources = json.loads(manifest.read_text()).get("sources", {}) if manifest.is_file() else {}
        out[folder.name] = {"files": files, "released_files": sources}
    return out


# ---- the run's record -------------------------------------------------------------------------------------------
def run_provenance(run: str, software: dict, environments: dict[str, dict], rules: dict[str, str], data: dict,
                   weights: dict, extra_files: dict[str, str | Path] | None = None) -> dict:
    """The provenance of one run: everything above, and the SHA-256 of further files that fed it (the
    pretrained window encoder, the run's final checkpoint record)."""
    return {"run": run, "software": software, "environments": environments, "rules": rules, "data": data,
            "weights": weights,
            "files": {name: sha256_file(path) for name, path in sorted((extra_files or {}).items())
                      if Path(path).is_file()}}


def identifying_strings(record: dict, forbidden: list[str]) -> list[str]:
    """The forbidden strings (host name, user name, absolute folders) found anywhere in ``record``."""
    text = json.dumps(record)
    return [s for s in forbidden if s and s in text]
