"""Which ctvlp a child process imports. A rule script finds the workflow's src/ through the search path that
Snakemake's preamble appends, after site-packages and invisible to its own children (torchrun's workers). Putting
the folder first on ``PYTHONPATH`` makes every process run the same code: the checkout's, also inside an image
whose site-packages holds the ctvlp of the checkout it was built from."""

from __future__ import annotations

import os
from collections.abc import Mapping


def pythonpath_with_first(folder: str, env: Mapping[str, str]) -> str:
    """``env``'s PYTHONPATH with ``folder`` first, once, and the other entries kept in their order."""
    rest = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p and p != folder]
    return os.pathsep.join([folder, *rest])
