"""Which device a rule's work runs on, decided once from what the job was given.

A job that asked for GPUs and landed on a node without CUDA (a wrong partition, a container started
without ``--nv``) must fail at once: silently training a 4,096-pair batch on CPU would run for weeks.
``compute.allow_cpu: true`` (the demo, the tests) permits the CPU fallback explicitly.
"""

from __future__ import annotations

import os

import torch


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
        raise DeviceError(f"{rule}: {gpus} GPU(s) requested (compute.*_gpus) but CUDA is not available on this "
                          "node; set compute.allow_cpu: true to run on CPU instead")
    return torch.device("cpu")
