"""SPECTRE's released components as the workflow's own modules: ``load_component(kind, path, arch)``.

``path`` is a SPECTRE/RadFinder ``.pt`` state dict (read with ``torch.load(weights_only=True)``: no
pickled code runs) or a safetensors file; ``arch`` the architecture arguments SPECTRE's builders take
(the dicts of the oracle README). The modules returned are the very classes training and evaluation
use (window encoder, combiner, SigLIP head, text tower), in eval mode.
"""

from __future__ import annotations

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


def load_component(kind: str, path: str | Path, arch: dict) -> nn.Module:
    """The workflow's module for ``kind`` (backbone | combiner | siglip_head | text) with the file's weights."""
    state = read_state(path)
    if kind == "backbone":
        model = WindowEncoder(backbone_spec(arch))
        load_strict(model, convert_backbone(state, model.spec.patch[2], path), path)
    elif kind == "combiner":
        model = FeatureCombiner(combiner_spec(arch))
        load_strict(model, state, path, optional=("axis_patch_proj.", "scan_", "depth_"))
        if "axis_patch_proj.weight" not in state:
            model.init_axis_patch_proj()
    elif kind == "siglip_head":
        model = SigLIPHead(int(arch["input_dim"]), int(arch["hidden_dim"]), int(arch["bottleneck_dim"]),
                           int(arch["output_dim"]))
        load_strict(model, state, path)
    elif kind == "text":
        from ctvlp.models.text_encoder import text_tower_from_loralib

        model = text_tower_from_loralib(state, arch, path)
    else:
        raise ValueError(f"unknown component kind '{kind}' (backbone | combiner | siglip_head | text)")
    return model.eval()
