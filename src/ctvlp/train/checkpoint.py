"""Checkpoints without pickle: tensors in safetensors, everything else in JSON, written atomically.

A checkpoint holds the trainable parameters, the optimizer moments, the scheduler position, the
CPU and CUDA RNG states of every process (``rng/<rank>/cpu``, ``rng/<rank>/cuda``) and the step,
so a job killed at any point resumes and ends with the same
parameters as an uninterrupted run. ``latest.json`` is written last: a half-written checkpoint
is never picked up. A checkpoint folder records the settings it was trained with (``config.json``), and
checkpoints of other settings are set aside, never resumed (:func:`set_aside_other_settings`): training and
the window-encoder pretraining share this one rule.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Mapping
from pathlib import Path

import torch
from safetensors.torch import load_file

from ctvlp.core.params import canonical
from ctvlp.core.state_dict import save_tensors

TRAINED_WITH = "config.json"  # in a checkpoint folder: the settings its checkpoints were trained with


def _atomic_json(path: Path, obj: dict) -> None:
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(obj, indent=1))
    os.replace(tmp, path)


def rng_states() -> dict[str, torch.Tensor]:
    """This process's generator states: CPU, and its own CUDA device when it uses one."""
    out = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        out["cuda"] = torch.cuda.get_rng_state()
    return out


def set_rng_states(tensors: dict[str, torch.Tensor], rank: int) -> None:
    """Restore ``rank``'s states (a checkpoint of an older layout holds one CPU state, ``rng/torch``)."""
    prefix = f"rng/{rank}/"
    mine = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
    if not mine and "rng/torch" in tensors:
        mine = {"cpu": tensors["rng/torch"]}
    if not mine:
        raise ValueError(f"checkpoint holds no RNG state for process {rank} (it was written by fewer processes)")
    torch.set_rng_state(mine.pop("cpu"))
    if "cuda" in mine and torch.cuda.is_available():
        torch.cuda.set_rng_state(mine["cuda"])


def save_checkpoint(directory: Path, step: int, model_state: dict[str, torch.Tensor],
                    optimizer: torch.optim.Optimizer, scheduler, extra: dict, keep: int = 2,
                    rng: list[dict[str, torch.Tensor]] | None = None) -> Path:
    """Write checkpoint ``step``; once ``latest.json`` points at it, all but the ``keep`` newest are deleted
    (a run of thousands of steps would otherwise fill the disk with optimizer moments)."""
    directory.mkdir(parents=True, exist_ok=True)
    opt = optimizer.state_dict()
    tensors = {f"model/{k}": v.cpu() for k, v in model_state.items()}
    for idx, state in opt["state"].items():
        for key, value in state.items():
            tensors[f"optim/{idx}/{key}"] = torch.as_tensor(value).cpu()
    for rank, states in enumerate(rng if rng is not None else [rng_states()]):
        tensors.update({f"rng/{rank}/{k}": v.cpu() for k, v in states.items()})
    name = f"ckpt-{step:07d}"
    save_tensors(tensors, directory / f"{name}.safetensors")
    meta = {"step": step, "param_groups": opt["param_groups"],
            "scheduler": None if scheduler is None else scheduler.state_dict(), **extra}
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
            optimizer: torch.optim.Optimizer, scheduler, rank: int = 0) -> int:
    """Load parameters, optimizer moments, scheduler and this process's RNG; return the step to continue from."""
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
    if scheduler is not None:  # None: the caller sets its rates itself (masked pretraining)
        scheduler.load_state_dict(meta["scheduler"])
    set_rng_states(tensors, rank)
    return int(meta["step"])


def set_aside_other_settings(directory: Path, settings: Mapping,
                             same: Callable[[Mapping, Mapping], bool] | None = None,
                             log: logging.Logger | None = None) -> Path | None:
    """Checkpoints trained with other settings are never resumed: ``directory`` moves to ``<name>.stale-N`` (kept,
    one log line) unless its ``config.json`` records ``settings`` (``same``: equal values whatever the key
    order), and the job starts fresh; a killed job of the same settings resumes. Afterwards ``config.json``
    records ``settings`` (written before the first checkpoint). Returns the folder set aside, if any."""
    same = same or (lambda recorded, wanted: canonical(recorded) == canonical(wanted))
    aside = None
    if directory.is_dir():
        try:
            kept = same(json.loads((directory / TRAINED_WITH).read_text()), settings)
        except (OSError, ValueError):
            kept = False  # checkpoints that do not say what they were trained with
        if not kept:
            n = 1
            while directory.with_name(f"{directory.name}.stale-{n}").exists():
                n += 1
            aside = directory.rename(directory.with_name(f"{directory.name}.stale-{n}"))
            (log or logging.getLogger("ctvlp.train")).warning(
                "%s: trained with other settings than this job's: kept aside in %s, starting fresh", directory,
                aside.name)
    directory.mkdir(parents=True, exist_ok=True)
    _atomic_json(directory / TRAINED_WITH, dict(settings))
    return aside
