"""A trained run's folder (results/runs/<run>): its configuration, readable without the model stack."""

from __future__ import annotations

import json
from pathlib import Path


class CheckpointError(ValueError):
    """A run folder that cannot be loaded (missing files, weights from another configuration)."""


def load_run_config(run_dir: str | Path) -> dict:
    path = Path(run_dir) / "config.json"
    if not path.is_file():
        raise CheckpointError(f"{run_dir}: no config.json (is this a results/runs/<run> folder?)")
    return json.loads(path.read_text())
