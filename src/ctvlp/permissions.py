"""File modes of what the workflow writes.

safetensors creates its files with mode 0600 whatever the process's umask, so features, checkpoints and model
weights would be the only outputs a lab's group cannot read (the workflow keeps results group-readable, see
the Snakefile). ``as_umask_allows`` gives such a file the mode ``open()`` would have given it.
"""

from __future__ import annotations

import os
from pathlib import Path


def as_umask_allows(path: str | Path) -> None:
    mask = os.umask(0)
    os.umask(mask)
    os.chmod(path, 0o666 & ~mask)
