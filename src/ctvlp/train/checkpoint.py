"""Checkpoints without pickle: tensors in safetensors, everything else in JSON, written atomically.

A checkpoint holds the trainable parameters, the optimizer moments, the scheduler position, the
torch RNG state and the step, so a job killed at any point resumes and ends with the same
parameters as an uninterrupted run. ``latest.json`` is written last: a half-written checkpoint
is never picked up.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from ctvlp.permissions import as_umask_allows


def _atomic_json(path: Path, obj: dict) -> None:
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(obj, indent=1))
    os.replace(tmp, path)


def save_checkpoint(directory: Path, step: int, model_state: dict[str, torch.Tensor],
                    optimizer: torch.optim.Optimizer, scheduler, extra: dict, keep: int = 2) -> Path:
    """Write checkpoint ``step``; once ``latest.json`` points at it, all but the ``keep`` newest are deleted
    (a run of thousands of steps would otherwise fill the disk with optimizer moments)."""
    directory.mkdir(parents=True, exist_ok=True)
    opt = optimizer.state_dict()
    tensors = {f"model/{k}": v.cpu() for k, v in model_state.items()}
    for idx, state in opt["state"].items():
        for key, value in state.items():
            tensors[f"optim/{idx}/{key}"] = torch.as_tensor(value).cpu()
    tensors["rng/torch"] = torch.get_rng_state()
    name = f"ckpt-{step:07d}"
    tmp = directory / f"{name}.safetensors.tmp{os.getpid()}"
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp))
    as_umask_allows(tmp)
    os.replace(tmp, directory / f"{name}.safetensors")
    meta = {"step": step, "param_groups": opt["param_groups"], "scheduler": scheduler.state_dict(), **extra}
    _atomic_json(directory / f"{name}.json", meta)
    _atomic_json(directory / "latest.json", {"name": name, "step": step})
    _prune(directory, keep)
    return directory / f"{name}.safetensors"


def _prune(directory: Path, keep: int) -> None:
    names = sorted(p.name[: -len(".json")] for p in directory.glob("ckpt-*.json"))
    for old in names[: max(len(names) - max(keep, 1), 0)]:
        for suffix in (".safetensors", ".json"):  # the tensors first: a lone .json is never a checkpoint
            (directory / f"{old}{suffix}").unlink(missing_ok=True)


def load_checkpoint(directory: Path) -> tuple[dict[str, torch.Tensor], dict] | None:
    """(tensors, metadata) of the latest complete checkpoint, or None."""
    pointer = directory / "latest.json"
    if not pointer.exists():
        return None
    name = json.loads(pointer.read_text())["name"]
    return load_file(str(directory / f"{name}.safetensors")), json.loads((directory / f"{name}.json").read_text())


def restore(tensors: dict[str, torch.Tensor], meta: dict, model: torch.nn.Module,
            optimizer: torch.optim.Optimizer, scheduler) -> int:
    """Load parameters, optimizer moments, scheduler and RNG; return the step to continue from."""
    model_state = {k[len("model/"):]: v for k, v in tensors.items() if k.startswith("model/")}
    missing = set(model_state) - set(model.state_dict())
    if missing:
        raise ValueError(f"checkpoint does not fit this model/config ({len(missing)} unknown tensors, "
                         f"e.g. {sorted(missing)[0]})")
    model.load_state_dict(model_state, strict=False)
    state: dict[int, dict] = {}
    for key, value in tensors.items():
        if key.startswith("optim/"):
            _, idx, name = key.split("/", 2)
            state.setdefault(int(idx), {})[name] = value
    optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
    scheduler.load_state_dict(meta["scheduler"])
    torch.set_rng_state(tensors["rng/torch"])
    return int(meta["step"])
