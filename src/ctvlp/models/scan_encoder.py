"""Scan and slice encoder: one transformer over a 3D grid of tokens, with learned per-axis positions.

Over the window grid (CLS + mean token of each window) it yields the scan embedding; over the
finer grid of depth tokens (x, y window index, global depth index) the same transformer yields
tokens that are averaged in-plane into one embedding per depth bin. Padding masks let volumes of
different grid sizes share a batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class ScanEncoderSpec:
    in_dim: int
    dim: int
    depth: int
    heads: int
    max_grid: tuple[int, int, int]

    @classmethod
    def from_config(cls, config: dict) -> "ScanEncoderSpec":
        s = config["model"]["scan_encoder"]
        return cls(config["model"]["window_encoder"]["dim"], s["dim"], s["depth"], s["heads"], tuple(s["max_grid"]))


class GridTransformer(nn.Module):
    def __init__(self, spec: ScanEncoderSpec):
        super().__init__()
        self.scan_in = nn.Linear(2 * spec.in_dim, spec.dim)
        self.depth_in = nn.Linear(spec.in_dim, spec.dim)
        self.pos = nn.ModuleList(nn.Embedding(n, spec.dim) for n in spec.max_grid)
        self.scan_token = nn.Parameter(torch.zeros(1, 1, spec.dim))
        for emb in self.pos:  # small, as ViT positions: N(0, 1) would drown the content at init
            nn.init.normal_(emb.weight, std=0.02)
        layer = nn.TransformerEncoderLayer(spec.dim, spec.heads, 4 * spec.dim, dropout=0.0, batch_first=True,
                                           norm_first=True, activation="gelu")
        self.body = nn.TransformerEncoder(layer, spec.depth, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(spec.dim)
        self.max_grid = spec.max_grid
        # Frozen features of a random or generic encoder share a large common component; standardising
        # each channel with training-set statistics (kept with the checkpoint) exposes what differs.
        self.register_buffer("scan_mu", torch.zeros(2 * spec.in_dim))
        self.register_buffer("scan_sd", torch.ones(2 * spec.in_dim))
        self.register_buffer("depth_mu", torch.zeros(spec.in_dim))
        self.register_buffer("depth_sd", torch.ones(spec.in_dim))

    def set_feature_stats(self, scan: tuple[torch.Tensor, torch.Tensor], depth: tuple[torch.Tensor, torch.Tensor]) -> None:
        """(mean, std) per channel of the scan tokens (2D) and the depth tokens (D) of the training split."""
        for name, (mean, std) in (("scan", scan), ("depth", depth)):
            getattr(self, f"{name}_mu").copy_(mean)
            getattr(self, f"{name}_sd").copy_(std.clamp(min=1e-4))

    def _positions(self, coords: torch.Tensor) -> torch.Tensor:
        coords = torch.minimum(coords, torch.tensor(self.max_grid, device=coords.device) - 1)
        return sum(emb(coords[..., i]) for i, emb in enumerate(self.pos))

    def scan(self, tokens: torch.Tensor, coords: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """tokens (B, N, 2D), coords (B, N, 3), mask (B, N) True = real -> (B, dim)."""
        x = self.scan_in((tokens - self.scan_mu) / self.scan_sd) + self._positions(coords)
        x = torch.cat([self.scan_token.expand(len(x), -1, -1), x], dim=1)
        pad = torch.cat([torch.zeros_like(mask[:, :1]), ~mask], dim=1)
        return self.norm(self.body(x, src_key_padding_mask=pad)[:, 0])

    def depth(self, tokens: torch.Tensor, coords: torch.Tensor, mask: torch.Tensor, n_bins: int) -> torch.Tensor:
        """Depth tokens (B, M, D) at coords (x, y, bin) -> (B, n_bins, dim), averaged in-plane per bin."""
        x = self.norm(self.body(self.depth_in((tokens - self.depth_mu) / self.depth_sd) + self._positions(coords), src_key_padding_mask=~mask))
        onehot = nn.functional.one_hot(coords[..., 2].clamp(max=n_bins - 1), n_bins).to(x.dtype)
        onehot = onehot * mask[..., None].to(x.dtype)
        return torch.einsum("bmk,bmd->bkd", onehot, x) / onehot.sum(dim=1).clamp(min=1)[..., None]


def projection_head(in_dim: int, out_dim: int) -> nn.Module:
    """The MLP projection into the shared space (SigLIP heads)."""
    return nn.Sequential(nn.Linear(in_dim, in_dim), nn.GELU(), nn.Linear(in_dim, out_dim))
