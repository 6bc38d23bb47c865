"""The window encoder: a 3D ViT (MONAI blocks) run on non-overlapping windows of the cached volume.

Per window it returns the CLS token, the mean patch token and depth tokens (patch tokens averaged
in-plane, one per patch row along z: 12 mm each in the paper preset). Frozen by default, so
features are extracted once (rule ``window_features``) and training reads features, not voxels.
Weights load from a local safetensors file; without one the demo uses a seeded random init.
With ``model.window_encoder.trainable`` the encoder is part of the trained model instead (end to end):
training then reads the cached voxels and the run's checkpoint carries the encoder's weights.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from monai.networks.blocks import PatchEmbeddingBlock, TransformerBlock
from safetensors.torch import load_file
from torch import nn


@dataclass(frozen=True)
class WindowEncoderSpec:
    window: tuple[int, int, int]
    patch: tuple[int, int, int]
    dim: int
    depth: int
    heads: int
    weights: str | None = None
    trainable: bool = False

    @property
    def grid(self) -> tuple[int, int, int]:
        return tuple(w // p for w, p in zip(self.window, self.patch))

    @classmethod
    def from_config(cls, config: dict) -> "WindowEncoderSpec":
        w = config["model"]["window_encoder"]
        return cls(tuple(config["preprocess"]["window_voxels"]), tuple(w["patch_voxels"]), w["dim"], w["depth"],
                   w["heads"], w["weights"], bool(w.get("trainable", False)))


class WindowEncoder(nn.Module):
    def __init__(self, spec: WindowEncoderSpec):
        super().__init__()
        self.spec = spec
        self.embed = PatchEmbeddingBlock(in_channels=1, img_size=spec.window, patch_size=spec.patch,
                                         hidden_size=spec.dim, num_heads=spec.heads, proj_type="conv",
                                         pos_embed_type="learnable", spatial_dims=3)
        self.cls = nn.Parameter(torch.zeros(1, 1, spec.dim))
        self.blocks = nn.ModuleList(TransformerBlock(spec.dim, 4 * spec.dim, spec.heads, qkv_bias=True)
                                    for _ in range(spec.depth))
        self.norm = nn.LayerNorm(spec.dim)

    def forward(self, windows: torch.Tensor) -> dict[str, torch.Tensor]:
        """windows (B, 1, X, Y, Z) -> cls (B, D), mean (B, D), depth (B, Z/pz, D)."""
        tokens = self.embed(windows)
        x = torch.cat([self.cls.expand(len(tokens), -1, -1), tokens], dim=1)
        for block in self.blocks:
            x = block(x)
        x = self.norm(x)
        patches = x[:, 1:]
        gx, gy, gz = self.spec.grid
        depth = patches.reshape(len(x), gx, gy, gz, -1).mean(dim=(1, 2))
        return {"cls": x[:, 0], "mean": patches.mean(dim=1), "depth": depth}


def build_window_encoder(spec: WindowEncoderSpec, seed: int = 0) -> WindowEncoder:
    """Weights from ``spec.weights`` (safetensors, no pickle) or a seeded random init."""
    torch.manual_seed(seed)
    model = WindowEncoder(spec)
    if spec.weights:
        path = Path(spec.weights)
        if not path.is_file():
            raise FileNotFoundError(f"window encoder weights '{path}' do not exist (model.window_encoder.weights)")
        missing, unexpected = model.load_state_dict(load_file(str(path)), strict=False)
        if missing or unexpected:
            raise ValueError(f"{path}: weights do not fit the configured encoder (missing {len(missing)}, "
                             f"unexpected {len(unexpected)} tensors)")
    return model.eval().requires_grad_(False)


def cut_windows(volume: torch.Tensor, window: tuple[int, int, int]) -> tuple[torch.Tensor, tuple[int, int, int]]:
    """(X, Y, Z) whose sides are window multiples -> (n, 1, wx, wy, wz) windows in (ix, iy, iz) order."""
    wx, wy, wz = window
    nx, ny, nz = (s // w for s, w in zip(volume.shape, window))
    blocks = volume.reshape(nx, wx, ny, wy, nz, wz).permute(0, 2, 4, 1, 3, 5)
    return blocks.reshape(nx * ny * nz, 1, wx, wy, wz), (nx, ny, nz)


def window_grid_features(model: WindowEncoder, volume: torch.Tensor, batch: int = 16) -> dict[str, torch.Tensor]:
    """Features of every window of one cached volume, shaped on the window grid (differentiable:
    the end-to-end option backpropagates through it)."""
    windows, (nx, ny, nz) = cut_windows(volume, model.spec.window)
    parts = [model(windows[i:i + batch]) for i in range(0, len(windows), batch)]
    out = {k: torch.cat([p[k] for p in parts]) for k in parts[0]}
    return {"cls": out["cls"].reshape(nx, ny, nz, -1), "mean": out["mean"].reshape(nx, ny, nz, -1),
            "depth": out["depth"].reshape(nx, ny, nz, model.spec.grid[2], -1)}


@torch.no_grad()
def encode_volume(model: WindowEncoder, volume: torch.Tensor, batch: int = 16) -> dict[str, torch.Tensor]:
    """Frozen features of one cached volume (feature extraction and inference)."""
    return window_grid_features(model, volume, batch)
