"""3D axial rotary position embedding, as SPECTRE defines it (no mixing across axes, no learned weights).

Why RoPE rather than a learned table: SPECTRE's encoders were pretrained with it, so their released
weights only make sense with the same angles; and a scan's window grid varies from scan to scan,
which RoPE handles through coordinates normalised by each scan's own grid (no table to outgrow).

Coordinates are given per token (``normalized_coords``), not derived from one shared grid, so that
a batch of scans with different grids (padded to one length) gets each scan's own angles.
"""

from __future__ import annotations

import math

import torch
from torch import nn


class AxialRope3D(nn.Module):
    """``periods`` = base^(2k / (head_dim/3)), k = 0..head_dim/6-1: the persistent buffer of SPECTRE's files."""

    def __init__(self, head_dim: int, base: float):
        super().__init__()
        if head_dim % 6:
            raise ValueError(f"3D RoPE needs a head dimension divisible by 6, got {head_dim} (dim / heads)")
        self.head_dim = head_dim
        k = torch.arange(head_dim // 6, dtype=torch.float32)
        self.register_buffer("periods", base ** (2 * k / (head_dim // 3)), persistent=True)

    def forward(self, coords: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """coords (..., N, 3) in SPECTRE's [-1, 1] convention -> (sin, cos), each (..., N, head_dim), float32."""
        angles = 2 * math.pi * coords.float()[..., None] / self.periods.float()  # (..., N, 3, head_dim/6)
        angles = angles.flatten(-2)
        angles = torch.cat([angles, angles], dim=-1)  # axis 0, axis 1, axis 2 angles, tiled twice
        return torch.sin(angles), torch.cos(angles)


def normalized_coords(index: torch.Tensor, divisor: torch.Tensor) -> torch.Tensor:
    """Token index (..., 3) on a grid -> 2 (i + 1/2) / n - 1 per axis, n = ``divisor`` (each axis separately).

    ``divisor`` is the scan's own grid (broadcast against ``index``). RadFinder's depth path divides the
    depth index (which runs to 8 x Dp) by the window-grid Dp ("physical" coordinates): pass that divisor."""
    return 2.0 * (index.float() + 0.5) / divisor.float() - 1.0


def grid_index(shape: tuple[int, int, int], device=None) -> torch.Tensor:
    """(H*W*D, 3) integer indices in SPECTRE's token order: (H, W, D) raster, D fastest."""
    axes = [torch.arange(n, device=device) for n in shape]
    return torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1).reshape(-1, 3)


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat([-x2, x1], dim=-1)


def apply_rope(x: torch.Tensor, sin: torch.Tensor, cos: torch.Tensor) -> torch.Tensor:
    """Rotate the last ``sin.shape[-2]`` tokens of x (B, heads, N, hd) in float32; prefix tokens (CLS) untouched.
    sin/cos: (N_spatial, hd) shared, or (B, N_spatial, hd) per sample."""
    if sin.ndim == 2:
        sin, cos = sin[None, None], cos[None, None]
    else:
        sin, cos = sin[:, None], cos[:, None]
    prefix = x.shape[-2] - sin.shape[-2]
    head, tail = x[..., :prefix, :], x[..., prefix:, :].float()
    tail = tail * cos + rotate_half(tail) * sin
    return torch.cat([head, tail.to(x.dtype)], dim=-2)
