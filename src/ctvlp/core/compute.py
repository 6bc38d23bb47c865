"""Which device a rule's work runs on, decided once from what the job was given.

A job that asked for GPUs and landed on a node without CUDA (a wrong partition, a container started
without ``--nv``, a driver older than the CUDA torch was built for) must fail at once: silently training
a 4,096-pair batch on CPU would run for weeks. ``compute.allow_cpu: true`` (the demo, the tests) permits
the CPU fallback explicitly; the error never suggests it, because the job that sees it asked for GPUs.
The message names what was found instead: the NVIDIA driver (or none), the CUDA this torch was built for
and the driver that CUDA needs, which is the usual cause on clusters (the GPU lock's CUDA 13 wheels need
driver >= 580).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import torch

# Oldest Linux driver per CUDA major version (NVIDIA's CUDA compatibility table; 12.x through minor-version
# compatibility from 525.60.13, 13.x from 580).
DRIVER_FLOOR = {11: 450, 12: 525, 13: 580}
_PROC_VERSION = Path("/proc/driver/nvidia/version")


class DeviceError(RuntimeError):
    """GPUs were requested but none can be used."""


def resolve_device(gpus: int, allow_cpu: bool, rule: str = "this rule") -> torch.device:
    """The torch device for a job allocated ``gpus`` GPUs (its ``resources.gpu``): ``cuda:LOCAL_RANK`` when
    CUDA works, CPU when no GPU was requested; requested but unavailable raises DeviceError unless
    ``allow_cpu``. Under torchrun each process takes the GPU of its ``LOCAL_RANK``."""
    if gpus > 0 and torch.cuda.is_available():
        local = int(os.environ.get("LOCAL_RANK", "0"))
        if local >= torch.cuda.device_count():
            raise DeviceError(f"{rule}: process {local} needs GPU {local} but only {torch.cuda.device_count()} "
                              "are visible (CUDA_VISIBLE_DEVICES)")
        return torch.device("cuda", local)
    if gpus > 0 and not allow_cpu:
        raise DeviceError(missing_cuda_message(rule, gpus, nvidia_driver(), torch.version.cuda, torch.__version__))
    return torch.device("cpu")


def nvidia_driver() -> str | None:
    """The NVIDIA kernel driver's version on this node ("550.54.15"), or None when there is none: read from
    /proc (no process started), else from ``nvidia-smi``."""
    try:
        found = re.search(r"Kernel Module\s+(?:for \S+\s+)?(\d+\.\d+(?:\.\d+)?)", _PROC_VERSION.read_text())
        if found:
            return found.group(1)
    except OSError:
        pass
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return None
    try:
        out = subprocess.run([smi, "--query-gpu=driver_version", "--format=csv,noheader"], capture_output=True,
                             text=True, timeout=20, check=False).stdout.split()
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out[0] if out else None


def driver_floor(torch_cuda: str | None) -> int | None:
    """The oldest driver major version that runs a torch built for CUDA ``torch_cuda`` ("13.0"); None if unknown."""
    if not torch_cuda:
        return None
    return DRIVER_FLOOR.get(int(torch_cuda.split(".")[0]))


def missing_cuda_message(rule: str, gpus: int, driver: str | None, torch_cuda: str | None, torch_version: str) -> str:
    """Why a job that asked for GPUs sees no CUDA, from what was found: the driver, torch's CUDA and its floor."""
    head = f"{rule}: {gpus} GPU(s) requested (compute.*_gpus) but CUDA is not available on this node: "
    if torch_cuda is None:
        return head + (f"torch {torch_version} is a CPU-only build (NVIDIA driver: {driver or 'none found'}); "
                       "run the GPU rules in the GPU environment (envs/gpu.yaml, requirements-gpu.lock or the gpu "
                       "container, docs/cluster.md)")
    floor = driver_floor(torch_cuda)
    need = f"driver >= {floor}" if floor else "a driver that supports it"
    if driver is None:
        return head + (f"no NVIDIA driver found (no /proc/driver/nvidia/version, no nvidia-smi); torch "
                       f"{torch_version} is built for CUDA {torch_cuda} and needs {need}. Is this a GPU node "
                       "(partition), and was the container started with --nv?")
    major = int(driver.split(".")[0])
    if floor and major < floor:
        return head + (f"NVIDIA driver {driver} found, but torch {torch_version} is built for CUDA {torch_cuda}, "
                       f"which needs {need}. Update the driver, or use the CUDA 12 lock for drivers >= "
                       f"{DRIVER_FLOOR[12]} (make envs GPU_LOCK=requirements-gpu-cu12.lock; docs/cluster.md)")
    return head + (f"NVIDIA driver {driver} found and torch {torch_version} is built for CUDA {torch_cuda} "
                   f"({need}), yet no GPU is visible: check CUDA_VISIBLE_DEVICES and that the job was given its GPUs")
