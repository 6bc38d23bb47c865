"""File modes of what the workflow writes, and the one atomic safetensors writer that respects them.

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
