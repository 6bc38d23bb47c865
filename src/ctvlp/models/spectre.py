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

from ctvlp.models.combiner import CombinerSpec, FeatureCombiner
from ctvlp.models.heads import SigLIPHead
from ctvlp.models.window_encoder import WindowEncoder, WindowEncoderSpec, fold_patch_kernel


class WeightFileError(ValueError):
    """A weight file that cannot be used, with the file named and what does not fit."""


def read_state(path: str | Path) -> dict[str, torch.Tensor]:
    """Tensors of a ``.pt`` state dict (tensors only, no code) or a safetensors file."""
    path = Path(path)
    if not path.is_file():
        raise WeightFileError(f"{path}: no such file")
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except (SafetensorError, OSError, ValueError) as err:
            raise WeightFileError(f"{path}: not a readable safetensors file ({err})") from None
    try:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - every failure is one line naming the file
        text = str(err).strip().splitlines()
        if "weights_only" in str(err) or "Unsupported global" in str(err):
            raise WeightFileError(f"{path}: the pickle needs code beyond plain tensors (refused: only "
                                  "weights_only=True files are read)") from None
        reason = text[0].split(". ")[0] if text else type(err).__name__
        raise WeightFileError(f"{path}: not a readable torch file, truncated or corrupt ({reason})") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightFileError(f"{path}: not a state dict of tensors")
    return dict(state)


def load_strict(module: nn.Module, state: dict[str, torch.Tensor], source: str | Path,
                optional: tuple[str, ...] = ()) -> None:
    """Every tensor of ``module`` present with its shape, nothing left over (``optional`` may be absent)."""
    own = module.state_dict()
    missing = sorted(k for k in own if k not in state and not k.startswith(optional))
    extra = sorted(k for k in state if k not in own)
    wrong = sorted(f"{k} {tuple(state[k].shape)} != {tuple(own[k].shape)}" for k in own
                   if k in state and tuple(state[k].shape) != tuple(own[k].shape))
    if missing or extra or wrong:
        parts = [f"{len(missing)} missing (e.g. {missing[:3]})" if missing else "",
                 f"{len(extra)} left over (e.g. {extra[:3]})" if extra else "",
                 f"{len(wrong)} of another shape (e.g. {wrong[:2]})" if wrong else ""]
        raise WeightFileError(f"{source}: weights do not fit the configured architecture: "
                              + "; ".join(p for p in parts if p))
    module.load_state_dict(state, strict=False)


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
