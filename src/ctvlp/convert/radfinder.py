"""RadFinder's trained model: one safetensors state dict whose keys carry the module prefix (``model.``), split
into the parts of ``model.weights_dir``."""

from __future__ import annotations

from pathlib import Path

import torch

from ctvlp.core.state_dict import WeightFileError

RADFINDER = {  # module prefixes of RadFinder's trained model (safetensors, keys prefixed ``model.``)
    "model.backbone_image.": "window_encoder", "model.feature_comb_image.": "combiner",
    "model.projection_image.": "image_head", "model.projection_image_copy.": "image_copy_head",
    "model.projection_text.": "text_head", "model.projection_text_copy.": "text_copy_head",
    "model.backbone_text.": "text", "model.criterion.": "scale",
}


def split_radfinder(state: dict[str, torch.Tensor], source: Path) -> dict[str, dict[str, torch.Tensor]]:
    """RadFinder's one state dict -> one per part; a key of no known module is an error naming it."""
    parts: dict[str, dict[str, torch.Tensor]] = {}
    unknown = []
    for key, value in state.items():
        prefix = next((p for p in RADFINDER if key.startswith(p)), None)
        if prefix is None:
            unknown.append(key)
            continue
        parts.setdefault(RADFINDER[prefix], {})[key[len(prefix):]] = value
    if unknown:
        raise WeightFileError(f"{source}: {len(unknown)} tensors of no known RadFinder module (e.g. {unknown[:3]})")
    return parts
