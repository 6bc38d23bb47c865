"""The volume cache: one float16 ``.npy`` per volume, written atomically, read memory-mapped.

Files go into 256 sub-folders named by two hex digits of the volume id (``volumes/3f/V3fa2....npy``):
100k volumes in one directory make every listing, backup and `ls` on a cluster file system slow.

Why this format: training and evaluation read whole volumes (or the window features made from
them) many times, and ``np.load(mmap_mode='r')`` of an uncompressed ``.npy`` costs a page-in and
no decode; float16 halves the bytes while keeping [0, 1]-scaled HU within 0.5 HU of float32
(see benchmarks/bench_preprocess.py for the measured read speed against decoding the sources).
``.npy`` holds no code: loading never unpickles (``allow_pickle=False``).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np


def cache_file(cache_dir: str | Path, volume_id: str) -> Path:
    """Where a volume's cache file lives: a sub-folder per two hex digits of its (salted, uniform) id."""
    return Path(cache_dir) / volume_id[1:3] / f"{volume_id}.npy"


def write_cached(path: str | Path, data: np.ndarray) -> None:
    """Write to a temporary name then rename: a killed job never leaves a half file under the real name."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    with open(tmp, "wb") as f:
        np.save(f, np.asarray(data, dtype=np.float16), allow_pickle=False)
    os.replace(tmp, path)


class CacheError(ValueError):
    """A cache file that cannot be read whole (cut by a full disk or a copy): rebuild its shard."""


def read_cached(path: str | Path, mmap: bool = True) -> np.ndarray:
    """The cached volume, memory-mapped; a truncated or malformed file raises CacheError naming it."""
    try:
        return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except (ValueError, EOFError, OSError) as err:
        if isinstance(err, FileNotFoundError):
            raise
        raise CacheError(f"{Path(path).name}: truncated or malformed cache file ({type(err).__name__})") from err
