"""State-dict I/O, the leaf every package that stores tensors uses: the one atomic safetensors writer (with the
file modes the workflow's outputs need), the one safe reader (``.pt`` with ``weights_only=True``, or safetensors:
no pickled code ever runs) and the strict loader that names what does not fit.

File modes:
safetensors creates its files with mode 0600 (and ``tempfile.mkdtemp`` its folders with 0700) whatever the
process's umask, so features, checkpoints and model weights would be the only outputs a lab's group cannot read
(the workflow keeps results group-readable, see the Snakefile). ``as_umask_allows`` gives such a file or folder
the mode ``open()``/``mkdir()`` would have given it.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import nn


def as_umask_allows(path: str | Path) -> None:
    mask = os.umask(0)
    os.umask(mask)
    os.chmod(path, (0o777 if Path(path).is_dir() else 0o666) & ~mask)


def save_tensors(tensors: dict[str, torch.Tensor], path: str | Path) -> None:
    """Write a safetensors file atomically (a reader never sees half a file: temporary name, then rename) with
    the mode the umask allows; tensors are made contiguous CPU tensors first."""
    path = Path(path)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(tmp))
    as_umask_allows(tmp)
    os.replace(tmp, path)


class WeightFileError(ValueError):
    """A weight file that cannot be used, with the file named and what does not fit."""


def read_state(path: str | Path) -> dict[str, torch.Tensor]:
    """Tensors of a ``.pt`` state dict (tensors only, no code) or a safetensors file."""
    path = Path(path)
    if not path.is_file():
        raise WeightFileError(f"{path}: no such file")
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except (SafetensorError, OSError, ValueError) as err:
            raise WeightFileError(f"{path}: not a readable safetensors file ({err})") from None
    try:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - every failure is one line naming the file
        text = str(err).strip().splitlines()
        if "weights_only" in str(err) or "Unsupported global" in str(err):
            raise WeightFileError(f"{path}: the pickle needs code beyond plain tensors (refused: only "
                                  "weights_only=True files are read)") from None
        reason = text[0].split(". ")[0] if text else type(err).__name__
        raise WeightFileError(f"{path}: not a readable torch file, truncated or corrupt ({reason})") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightFileError(f"{path}: not a state dict of tensors")
    return dict(state)


def load_strict(module: nn.Module, state: dict[str, torch.Tensor], source: str | Path,
                optional: tuple[str, ...] = ()) -> None:
    """Every tensor of ``module`` present with its shape, nothing left over (``optional`` may be absent)."""
    own = module.state_dict()
    missing = sorted(k for k in own if k not in state and not k.startswith(optional))
    extra = sorted(k for k in state if k not in own)
    wrong = sorted(f"{k} {tuple(state[k].shape)} != {tuple(own[k].shape)}" for k in own
                   if k in state and tuple(state[k].shape) != tuple(own[k].shape))
    if missing or extra or wrong:
        parts = [f"{len(missing)} missing (e.g. {missing[:3]})" if missing else "",
                 f"{len(extra)} left over (e.g. {extra[:3]})" if extra else "",
                 f"{len(wrong)} of another shape (e.g. {wrong[:2]})" if wrong else ""]
        raise WeightFileError(f"{source}: weights do not fit the configured architecture: "
                              + "; ".join(p for p in parts if p))
    module.load_state_dict(state, strict=False)
