"""Ablations: one row per run in a TSV, each column a dotted config key overriding the base config."""

from __future__ import annotations

import copy
import csv
from pathlib import Path

import yaml


def load_ablations(path: str | Path) -> dict[str, dict[str, object]]:
    """{run: {dotted.key: value}}; values are YAML scalars ("0.0", "siglip", "true"); empty cells inherit."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader((line for line in f if not line.startswith("#")), delimiter="\t"))
    runs = {}
    for row in rows:
        run = row.pop("run")
        row.pop("description", None)
        runs[run] = {k: yaml.safe_load(v) for k, v in row.items() if v not in (None, "")}
    return runs


def apply_overrides(config: dict, overrides: dict[str, object]) -> dict:
    """A deep copy of config with each dotted key set; an unknown key is an error naming it."""
    out = copy.deepcopy(config)
    for dotted, value in overrides.items():
        node = out
        *parents, leaf = dotted.split(".")
        for key in parents:
            if not isinstance(node.get(key), dict):
                raise KeyError(f"ablation column '{dotted}': no config section '{key}'")
            node = node[key]
        if leaf not in node:
            raise KeyError(f"ablation column '{dotted}': unknown config key '{leaf}'")
        node[leaf] = value
    return out


def schedule_priority(config: dict, overrides: dict[str, object]) -> int:
    """Snakemake priority of one run's training job: the longest jobs first, so that the short jobs after
    training (embedding, evaluation) fill the cores at the end instead of one long run training alone.
    Training the text tower (LoRA or full) costs far more per step than training over cached frozen text
    embeddings (in the demo, measured: the 2-epoch LoRA run 273 s, the 40-epoch frozen run 166 s), so those
    runs start first (2); every training job starts before any job that waits on training (1 > 0)."""
    text = apply_overrides(config, overrides)["model"]["text_encoder"].get("finetune", "frozen")
    return 2 if text != "frozen" else 1
