"""The missing-CUDA error names what it found (driver, torch's CUDA and the driver floor) and never
suggests ``compute.allow_cpu``: the job that sees it asked for GPUs (a GPU preset on a cluster)."""

from __future__ import annotations

import pytest
import torch

from ctvlp.core import compute
from ctvlp.core.compute import DeviceError, driver_floor, missing_cuda_message, nvidia_driver, resolve_device


@pytest.mark.parametrize("driver, cuda, expected", [
    ("550.54.15", "13.0", ["NVIDIA driver 550.54.15 found", "CUDA 13.0", "driver >= 580", "drivers >= 525", "GPU_LOCK=requirements-gpu-cu12.lock"]),
    (None, "13.0", ["no NVIDIA driver found", "driver >= 580", "--nv"]),
    ("580.65.06", "13.0", ["NVIDIA driver 580.65.06 found", "CUDA_VISIBLE_DEVICES"]),
    ("535.104.05", "12.8", ["535.104.05", "CUDA_VISIBLE_DEVICES"]),
    ("550.54.15", None, ["CPU-only build", "NVIDIA driver: 550.54.15", "envs/gpu.yaml"]),
])
def test_message_names_the_driver_and_the_floor(driver, cuda, expected):
    message = missing_cuda_message("rule train", 4, driver, cuda, "2.13.0")
    assert message.startswith("rule train: 4 GPU(s) requested")
    for part in expected:
        assert part in message, (part, message)
    assert "allow_cpu" not in message


def test_floor_per_cuda_major():
    assert driver_floor("13.0") == 580 and driver_floor("12.6") == 525 and driver_floor(None) is None


def test_driver_read_from_proc_or_absent(tmp_path, monkeypatch):
    proc = tmp_path / "version"
    proc.write_text("NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  570.86.15  Release Build  "
                    "(dvs-builder@U16-I1-N07-12-3)  Fri Jan 24 2025\nGCC version:  gcc version 12.3.0\n")
    monkeypatch.setattr(compute, "_PROC_VERSION", proc)
    assert nvidia_driver() == "570.86.15"
    proc.write_text("NVRM version: NVIDIA UNIX x86_64 Kernel Module  535.104.05  Sat Aug 19 01:15:15 UTC 2023\n")
    assert nvidia_driver() == "535.104.05"
    monkeypatch.setattr(compute, "_PROC_VERSION", tmp_path / "absent")
    monkeypatch.setenv("PATH", str(tmp_path))  # no nvidia-smi either
    assert nvidia_driver() is None


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_resolve_device_raises_the_message_here():
    with pytest.raises(DeviceError) as err:
        resolve_device(2, allow_cpu=False, rule="rule embed")
    assert "rule embed: 2 GPU(s) requested" in str(err.value) and "allow_cpu" not in str(err.value)
    assert torch.__version__ in str(err.value)
