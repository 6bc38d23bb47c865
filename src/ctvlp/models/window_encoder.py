"""The window encoder: SPECTRE's 3D ViT (conv patch embedding, CLS, 3D axial RoPE, LayerScale blocks),
run on non-overlapping windows of the cached volume.

Per window it returns the CLS token, the mean patch token and the depth tokens (patch tokens averaged
in-plane, one per patch row along z: 12 mm each in the paper preset). One class serves the demo (small
dims, seeded random init) and the paper preset (ViT-L with the released weights, imported once by
``ctvlp import-weights`` into ``model.weights_dir``). Frozen by default, so features are extracted
once (rule ``window_features``); with ``model.window_encoder.trainable`` it trains end to end instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ctvlp.core.state_dict import load_strict, read_state
from ctvlp.models.rope import grid_index, normalized_coords
from ctvlp.models.vit_blocks import ClsTransformer
from ctvlp.models.weights import load_part

ROPE_BASE = 1000.0  # SPECTRE backbone
PRETRAINED_FILE = "pretrain/window_encoder.safetensors"  # under results/, written by rule pretrain_window_encoder


@dataclass(frozen=True)
class WindowEncoderSpec:
    window: tuple[int, int, int]
    patch: tuple[int, int, int]
    dim: int
    depth: int
    heads: int
    weights_dir: str | None = None
    trainable: bool = False
    mlp_ratio: float = 4.0
    pretrained: str | None = None  # the workflow's own self-supervised weights (pretrain.enabled)

    @property
    def grid(self) -> tuple[int, int, int]:
        return tuple(w // p for w, p in zip(self.window, self.patch))

    @classmethod
    def from_config(cls, config: dict) -> "WindowEncoderSpec":
        w = config["model"]["window_encoder"]
        pretrained = (str(Path(config["results"]) / PRETRAINED_FILE)
                      if (config.get("pretrain") or {}).get("enabled") else None)
        return cls(tuple(config["preprocess"]["window_voxels"]), tuple(w["patch_voxels"]), w["dim"], w["depth"],
                   w["heads"], config["model"].get("weights_dir"), bool(w.get("trainable", False)),
                   pretrained=pretrained)


class PatchEmbed3D(nn.Module):
    def __init__(self, patch: tuple[int, int, int], dim: int):
        super().__init__()
        self.proj = nn.Conv3d(1, dim, kernel_size=patch, stride=patch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 1, X, Y, Z) -> (B, gx*gy*gz, dim) in (H, W, D) raster order, D fastest."""
        return self.proj(x).flatten(2).transpose(1, 2)


class WindowEncoder(ClsTransformer):
    """Keys as SPECTRE's backbone files: cls_token, patch_embed.proj, rope.periods, blocks.i.*, norm."""

    def __init__(self, spec: WindowEncoderSpec):
        super().__init__(spec.dim, spec.depth, spec.heads, spec.mlp_ratio, ROPE_BASE)
        self.spec = spec
        self.patch_embed = PatchEmbed3D(spec.patch, spec.dim)
        self.init_like_spectre()

    def forward_features(self, windows: torch.Tensor) -> torch.Tensor:
        """windows (B, 1, X, Y, Z) -> final-norm tokens (B, 1 + N, dim): CLS, then patches (D fastest)."""
        tokens = self.patch_embed(windows)
        grid = tuple(s // p for s, p in zip(windows.shape[2:], self.spec.patch))
        coords = normalized_coords(grid_index(grid, windows.device), torch.tensor(grid, device=windows.device))
        return self.encode_tokens(tokens, coords)  # one grid for every window: no RoPE augmentation

    def encode_tokens(self, tokens: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
        """Embedded patch tokens (B, n, dim) at normalised coordinates ((n, 3) shared or (B, n, 3)) ->
        final-norm tokens (B, 1 + n, dim): the blocks may run on a subset of the patches."""
        return self.encode(tokens, self.rope(coords))

    def forward(self, windows: torch.Tensor) -> dict[str, torch.Tensor]:
        """windows (B, 1, X, Y, Z) -> cls (B, D), mean (B, D), depth (B, Z/pz, D) (in-plane mean)."""
        x = self.forward_features(windows)
        patches = x[:, 1:]
        gx, gy, gz = self.spec.grid
        depth = patches.reshape(len(x), gx, gy, gz, -1).mean(dim=(1, 2))
        return {"cls": x[:, 0], "mean": patches.mean(dim=1), "depth": depth}


def fold_patch_kernel(weight: torch.Tensor) -> torch.Tensor:
    """RadFinder's fold of a depth-2k patch kernel to depth k: w'[..., j] = w[..., 2j] + w[..., 2j+1].
    On windows of half the depth the token grid (and so RoPE) stays the same (16x16x8 -> 16x16x4)."""
    return weight[..., 0::2] + weight[..., 1::2]


def build_window_encoder(spec: WindowEncoderSpec, seed: int = 0) -> WindowEncoder:
    """Weights from ``spec.pretrained`` (the workflow's self-supervised stage), else ``spec.weights_dir``
    (safetensors written by ``ctvlp import-weights``), else a seeded random init."""
    torch.manual_seed(seed)
    model = WindowEncoder(spec)
    if spec.pretrained:
        load_strict(model, read_state(spec.pretrained), spec.pretrained)
    elif spec.weights_dir:
        load_part(model, spec.weights_dir, "window_encoder")
    return model.eval().requires_grad_(False)


def cut_windows(volume: torch.Tensor, window: tuple[int, int, int]) -> tuple[torch.Tensor, tuple[int, int, int]]:
    """(X, Y, Z) whose sides are window multiples -> (n, 1, wx, wy, wz) windows in (ix, iy, iz) order."""
    wx, wy, wz = window
    nx, ny, nz = (s // w for s, w in zip(volume.shape, window))
    blocks = volume.reshape(nx, wx, ny, wy, nz, wz).permute(0, 2, 4, 1, 3, 5)
    return blocks.reshape(nx * ny * nz, 1, wx, wy, wz), (nx, ny, nz)


def window_grid_features(model: WindowEncoder, volume: torch.Tensor, batch: int = 16) -> dict[str, torch.Tensor]:
    """Features of every window of one cached volume, shaped on the window grid (differentiable:
    the end-to-end option backpropagates through it). On a GPU the encoder runs under bf16 autocast
    (RoPE stays float32); the features come back as float32."""
    windows, (nx, ny, nz) = cut_windows(volume, model.spec.window)
    on_gpu = windows.device.type == "cuda"
    with torch.autocast(windows.device.type, dtype=torch.bfloat16, enabled=on_gpu):
        parts = [model(windows[i:i + batch]) for i in range(0, len(windows), batch)]
    out = {k: torch.cat([p[k] for p in parts]).float() for k in parts[0]}
    return {"cls": out["cls"].reshape(nx, ny, nz, -1), "mean": out["mean"].reshape(nx, ny, nz, -1),
            "depth": out["depth"].reshape(nx, ny, nz, model.spec.grid[2], -1)}


@torch.no_grad()
def encode_volume(model: WindowEncoder, volume: torch.Tensor, batch: int = 16) -> dict[str, torch.Tensor]:
    """Frozen features of one cached volume (feature extraction and inference)."""
    return window_grid_features(model, volume, batch)
