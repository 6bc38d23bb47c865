"""Masked autoencoding of the window encoder (MAE, He et al. 2022): the decoder, the random visible subset
and the loss. The loop that trains them is ``ctvlp.train.pretrain`` (why MAE, and the sampling, are
described there); the decoder is thrown away after pretraining.

Targets are the voxels of each masked patch normalised by the patch's own mean and spread
(``norm_pix_eps`` keeps noise-only patches, whose spread is the scanner noise, from dominating the loss).
The decoder is a few SPECTRE blocks with the same 3D RoPE over the full token grid.
"""

from __future__ import annotations

import torch
from torch import nn

from ctvlp.models.rope import AxialRope3D, grid_index, normalized_coords
from ctvlp.models.vit_blocks import LN_EPS, Block, init_like_spectre
from ctvlp.models.window_encoder import ROPE_BASE, WindowEncoder


def patchify(windows: torch.Tensor, patch: tuple[int, int, int]) -> torch.Tensor:
    """(B, 1, X, Y, Z) -> (B, N, px*py*pz) in the patch embedding's token order ((H, W, D) raster, D fastest)."""
    b, _, x, y, z = windows.shape
    px, py, pz = patch
    v = windows.reshape(b, x // px, px, y // py, py, z // pz, pz).permute(0, 1, 3, 5, 2, 4, 6)
    return v.reshape(b, (x // px) * (y // py) * (z // pz), px * py * pz)


class MAEDecoder(nn.Module):
    """Encoder tokens -> voxels of every patch: projection, mask token at the masked positions, SPECTRE
    blocks with 3D RoPE over the full grid, linear prediction of each patch's voxels."""

    def __init__(self, enc_dim: int, dim: int, depth: int, heads: int, patch_voxels: int):
        super().__init__()
        self.embed = nn.Linear(enc_dim, dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.rope = AxialRope3D(dim // heads, ROPE_BASE)
        self.blocks = nn.ModuleList(Block(dim, heads) for _ in range(depth))
        self.norm = nn.LayerNorm(dim, eps=LN_EPS)
        self.pred = nn.Linear(dim, patch_voxels)
        init_like_spectre(self)
        nn.init.normal_(self.mask_token, std=0.02)

    def forward(self, encoded: torch.Tensor, keep: torch.Tensor, n_tokens: int, coords: torch.Tensor) -> torch.Tensor:
        """encoded (B, 1 + k, enc_dim) [CLS; visible]; keep (B, k) visible indices; coords (N, 3) -> (B, N, voxels)."""
        x = self.embed(encoded)
        b, dim = len(x), x.shape[-1]
        full = self.mask_token.expand(b, n_tokens, dim).to(x.dtype).clone()
        full.scatter_(1, keep[..., None].expand(-1, -1, dim), x[:, 1:])
        x = torch.cat([x[:, :1], full], dim=1)
        rope = self.rope(coords)
        for block in self.blocks:
            x = block(x, rope)
        return self.pred(self.norm(x)[:, 1:])


def random_keep(batch: int, n_tokens: int, mask_ratio: float, generator: torch.Generator) -> torch.Tensor:
    """(B, k) sorted indices of the visible tokens, k = round(N (1 - ratio)), one random subset per window."""
    k = max(1, int(round(n_tokens * (1.0 - mask_ratio))))
    noise = torch.rand(batch, n_tokens, generator=generator)
    return noise.argsort(dim=1)[:, :k].sort(dim=1).values


def mae_loss(encoder: WindowEncoder, decoder: MAEDecoder, windows: torch.Tensor, keep: torch.Tensor,
             norm_pix_eps: float) -> torch.Tensor:
    """Mean squared error on the masked patches, targets normalised per patch."""
    spec = encoder.spec
    grid = spec.grid
    coords = normalized_coords(grid_index(grid, windows.device), torch.tensor(grid, device=windows.device))
    tokens = encoder.patch_embed(windows)
    keep = keep.to(windows.device)
    dim = tokens.shape[-1]
    visible = tokens.gather(1, keep[..., None].expand(-1, -1, dim))
    encoded = encoder.encode_tokens(visible, coords[keep])
    pred = decoder(encoded, keep, tokens.shape[1], coords)
    target = patchify(windows, spec.patch)
    mean, var = target.mean(-1, keepdim=True), target.var(-1, keepdim=True)
    target = (target - mean) / (var + norm_pix_eps).sqrt()
    masked = torch.ones(tokens.shape[:2], dtype=torch.bool, device=windows.device)
    masked.scatter_(1, keep, False)
    err = ((pred.float() - target.float()) ** 2).mean(-1)  # float32 loss also under bf16 autocast
    return (err * masked).sum() / masked.sum()
