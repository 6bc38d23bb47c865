"""RadFinder's trained model for ``ctvlp import-weights --radfinder``: the authors' Hugging Face release folder
(``config.json`` + ``model.safetensors`` or shards + index) or one safetensors file of the same keys (prefixed
``model.``), split into the parts of ``model.weights_dir``. The layout itself (prefixes, shards, merged LoRA) is
``ctvlp.models.radfinder_release``, which ``load_release`` shares."""

from __future__ import annotations

from pathlib import Path

import torch

from ctvlp.core.state_dict import read_state
from ctvlp.models.radfinder_release import (merged_text_state, read_release_config, read_release_state,
                                            split_release)


def split_radfinder(state: dict[str, torch.Tensor], source: Path) -> dict[str, dict[str, torch.Tensor]]:
    """RadFinder's one state dict -> one per part; a key of no known module is an error naming it."""
    return split_release(state, source)


def read_radfinder(source: Path) -> tuple[dict[str, dict[str, torch.Tensor]], dict | None]:
    """(parts, the release's config.json or None for a single file). A release folder's text tower is LoRA-merged
    (saved from eval mode): its adapters are dropped and the weights kept as they are."""
    source = Path(source)
    if source.is_dir():
        config = read_release_config(source)
        parts = split_release(read_release_state(source), source)
        if "text" in parts:
            parts["text"] = merged_text_state(parts["text"])
        return parts, config
    return split_release(read_state(source), source), None
