"""SPECTRE's released components as the workflow's own modules: ``load_component(kind, path, arch)``.

``path`` is a SPECTRE/RadFinder ``.pt`` state dict (read with ``torch.load(weights_only=True)``: no
pickled code runs) or a safetensors file; ``arch`` the architecture arguments SPECTRE's builders take
(the dicts of the oracle README). The modules returned are the very classes training and evaluation
use (window encoder, combiner, SigLIP head, text tower), in eval mode.

The conversions of SPECTRE's release format live here, beside the modules they fill, because
``load_component`` (a public entry point) needs them: the patch-kernel fold of the backbone and loralib's
names of the text tower's LoRA. What only the importer needs (RadFinder's one-file model, the check of the
LoRA file's base weights, writing ``model.weights_dir``) is in ``ctvlp.convert``, which imports this module;
nothing in ``ctvlp.models`` imports ``ctvlp.convert``.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch
from torch import nn

from ctvlp.core.state_dict import WeightFileError, load_strict, read_state
from ctvlp.models.combiner import CombinerSpec, FeatureCombiner
from ctvlp.models.heads import SigLIPHead
from ctvlp.models.window_encoder import WindowEncoder, WindowEncoderSpec, fold_patch_kernel


def backbone_spec(arch: dict, **extra) -> WindowEncoderSpec:
    dim, heads = int(arch["embed_dim"]), int(arch["num_heads"])
    return WindowEncoderSpec(tuple(arch["img_size"]), tuple(arch["patch_size"]), dim, int(arch["depth"]), heads,
                             mlp_ratio=float(arch.get("mlp_ratio", 4)), **extra)


def combiner_spec(arch: dict, rescale_coords: float | None = None) -> CombinerSpec:
    if int(arch["patch_dim"]) % 2:
        raise ValueError(f"combiner patch_dim {arch['patch_dim']} is not 2 x a window-encoder dim ([CLS; mean])")
    return CombinerSpec(int(arch["patch_dim"]) // 2, int(arch["embed_dim"]), int(arch["depth"]), int(arch["num_heads"]),
                        rescale_coords, float(arch.get("mlp_ratio", 4)))


def convert_backbone(state: dict[str, torch.Tensor], patch_depth: int, source: str | Path) -> dict[str, torch.Tensor]:
    """Fold the patch kernel when the configured patch depth is half the file's (16x16x8 -> 16x16x4)."""
    state = dict(state)
    kernel = state.get("patch_embed.proj.weight")
    if kernel is not None and kernel.ndim == 5 and kernel.shape[-1] == 2 * patch_depth:
        state["patch_embed.proj.weight"] = fold_patch_kernel(kernel)
    elif kernel is not None and kernel.ndim == 5 and kernel.shape[-1] != patch_depth:
        raise WeightFileError(f"{source}: patch kernel depth {kernel.shape[-1]} fits neither patch depth "
                              f"{patch_depth} nor its fold from {2 * patch_depth}")
    return state


LORALIB_KEY = re.compile(r"^(?P<module>.+)\.(?P<part>lora_A|lora_B)$")


def loralib_to_peft(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """loralib names (``X.weight``, ``X.lora_A`` (r, in), ``X.lora_B`` (out, r)) -> peft's
    (``base_model.model.X.base_layer.weight``, ``...lora_A.default.weight``, ``...lora_B.default.weight``)."""
    adapted = {m.group("module") for k in state if (m := LORALIB_KEY.match(k))}
    out = {}
    for key, value in state.items():
        if m := LORALIB_KEY.match(key):
            out[f"base_model.model.{m.group('module')}.{m.group('part')}.default.weight"] = value
        elif key.rsplit(".", 1)[0] in adapted:
            module, leaf = key.rsplit(".", 1)
            out[f"base_model.model.{module}.base_layer.{leaf}"] = value
        else:
            out[f"base_model.model.{key}"] = value
    return out


def text_tower_from_loralib(state: dict[str, torch.Tensor], arch: dict, source: str | Path) -> nn.Module:
    """A ``Qwen3Model`` of ``arch['config']`` with peft LoRA (``arch['lora']``) holding a loralib state dict."""
    from transformers import Qwen3Config, Qwen3Model  # here: the image components load without the text stack

    from ctvlp.models.text_encoder import TextTower, add_lora

    lora = arch["lora"]
    model = add_lora(Qwen3Model(Qwen3Config(**arch["config"])), int(lora["r"]), float(lora["alpha"]), 0.0,
                     list(lora["targets"]))
    load_strict(model, loralib_to_peft(state), source)
    return TextTower(model, "last_token")


def load_component(kind: str, path: str | Path, arch: dict) -> nn.Module:
    """The workflow's module for ``kind`` (backbone | combiner | siglip_head | text) with the file's weights."""
    state = read_state(path)
    if kind == "backbone":
        model = WindowEncoder(backbone_spec(arch))
        load_strict(model, convert_backbone(state, model.spec.patch[2], path), path)
    elif kind == "combiner":
        model = FeatureCombiner(combiner_spec(arch))
        model.load_weights(state, path)
    elif kind == "siglip_head":
        model = SigLIPHead(int(arch["input_dim"]), int(arch["hidden_dim"]), int(arch["bottleneck_dim"]),
                           int(arch["output_dim"]))
        load_strict(model, state, path)
    elif kind == "text":
        model = text_tower_from_loralib(state, arch, path)
    else:
        raise ValueError(f"unknown component kind '{kind}' (backbone | combiner | siglip_head | text)")
    return model.eval()
