"""Part I/O of the pretrained model folder (``model.weights_dir``): one safetensors file per part, loaded strictly.

Only reading lives here (the model package builds from the folder); converting foreign checkpoints and writing
the folder is ``ctvlp.convert`` (``ctvlp import-weights``), which the model package never imports.
"""

from __future__ import annotations

from pathlib import Path

from torch import nn

from ctvlp.core.state_dict import WeightFileError, load_strict, read_state

PARTS = ("window_encoder", "combiner", "image_head", "text_head", "text", "image_copy_head", "text_copy_head", "scale")


def part_file(weights_dir: str | Path, part: str) -> Path:
    return Path(weights_dir) / f"{part}.safetensors"


def load_part(module: nn.Module, weights_dir: str | Path, part: str) -> None:
    """Load one imported part into ``module``, strictly (the combiner as ``FeatureCombiner.load_weights``)."""
    path = part_file(weights_dir, part)
    if not path.is_file():
        raise WeightFileError(f"{path}: missing from model.weights_dir (run `ctvlp import-weights`)")
    state = read_state(path)
    if part == "combiner":
        module.load_weights(state, path)
    else:
        load_strict(module, state, path)
