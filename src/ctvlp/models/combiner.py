"""The scan combiner: SPECTRE's feature ViT over the window grid, and RadFinder's depth path through it.

Scan path: per window [CLS; mean] (2 x D) -> ``patch_proj`` -> CLS + LayerScale blocks with RoPE
(base 100) over the window grid, coordinates normalised by each scan's own grid, padded windows masked
as keys -> final norm; scan feature = [CLS_out; masked mean of window tokens] (2 x dim).
Depth path: depth tokens (D) -> ``axis_patch_proj`` (initialised from the mean-token half of
``patch_proj``) -> the same blocks with a CLS over the (Hp, Wp, 8 x Dp) grid, the depth coordinate
divided by the window-grid Dp (RadFinder's "physical" coordinates) -> masked in-plane mean per depth
bin; depth feature per bin = [CLS_out; bin token] (2 x dim).

Why per-token coordinates and key masks: scans of different grids share a batch as padded token lists;
a scan's output must not change when padding is added (the tests check it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ctvlp.core.state_dict import load_strict
from ctvlp.models.rope import normalized_coords
from ctvlp.models.vit_blocks import ClsTransformer

ROPE_BASE = 100.0  # SPECTRE feature combiner
# Keys a combiner file may lack: RadFinder's depth projection (SPECTRE's file has none: derived on load) and this
# workflow's feature statistics (identity for pretrained weights).
OPTIONAL_KEYS = ("axis_patch_proj.", "scan_", "depth_")


@dataclass(frozen=True)
class CombinerSpec:
    in_dim: int          # window-encoder dim D; the scan path reads 2 x D
    dim: int
    depth: int
    heads: int
    rescale_coords: float | None = None  # RoPE coordinate rescaling in training only (paper 2.0)
    mlp_ratio: float = 4.0

    @classmethod
    def from_config(cls, config: dict) -> "CombinerSpec":
        s = config["model"]["scan_encoder"]
        return cls(config["model"]["window_encoder"]["dim"], s["dim"], s["depth"], s["heads"], s.get("rescale_coords"))


class FeatureCombiner(ClsTransformer):
    """Keys as SPECTRE's combiner file (patch_proj, cls_token, rope.periods, blocks.i.*, norm) plus
    RadFinder's ``axis_patch_proj`` and the feature-standardisation buffers (identity unless set)."""

    def __init__(self, spec: CombinerSpec):
        super().__init__(spec.dim, spec.depth, spec.heads, spec.mlp_ratio, ROPE_BASE)
        self.spec = spec
        self.patch_proj = nn.Linear(2 * spec.in_dim, spec.dim)
        self.init_like_spectre()
        self.axis_patch_proj = nn.Linear(spec.in_dim, spec.dim)
        self.init_axis_patch_proj()
        # Frozen features of a random encoder share a large common component; standardising each channel
        # with training-set statistics (kept with the checkpoint) exposes what differs. Off (identity) for
        # pretrained weights, which were trained on raw features.
        self.register_buffer("scan_mu", torch.zeros(2 * spec.in_dim))
        self.register_buffer("scan_sd", torch.ones(2 * spec.in_dim))
        self.register_buffer("depth_mu", torch.zeros(spec.in_dim))
        self.register_buffer("depth_sd", torch.ones(spec.in_dim))

    @torch.no_grad()
    def init_axis_patch_proj(self) -> None:
        """RadFinder: depth tokens resemble the mean-token half of the [CLS; mean] input."""
        self.axis_patch_proj.weight.copy_(self.patch_proj.weight[:, self.spec.in_dim:])
        self.axis_patch_proj.bias.copy_(self.patch_proj.bias)

    def load_weights(self, state: dict[str, torch.Tensor], source) -> None:
        """A SPECTRE or RadFinder combiner file, strictly; SPECTRE's lacks the depth projection, which is then
        derived from ``patch_proj`` as RadFinder does (a RadFinder file brings its trained one)."""
        load_strict(self, state, source, optional=OPTIONAL_KEYS)
        if "axis_patch_proj.weight" not in state:
            self.init_axis_patch_proj()

    def set_feature_stats(self, scan: tuple[torch.Tensor, torch.Tensor], depth: tuple[torch.Tensor, torch.Tensor]) -> None:
        for name, (mean, std) in (("scan", scan), ("depth", depth)):
            getattr(self, f"{name}_mu").copy_(mean)
            getattr(self, f"{name}_sd").copy_(std.clamp(min=1e-4))

    def _rope(self, index: torch.Tensor, divisor: torch.Tensor,
              log_scale: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """index (B, N, 3), divisor (B, 3) -> per-sample (sin, cos); one rescale factor per sample in training.

        ``log_scale`` (B,): the trainer's per-sample draws of ln s in [-ln r, ln r], keyed by (seed, step, sample)
        so that cutting the batch into other micro-batches or processes draws the same factors; without it the
        factors come from the global RNG."""
        coords = normalized_coords(index, divisor[:, None, :])
        if self.training and self.spec.rescale_coords:
            r = math.log(self.spec.rescale_coords)
            if log_scale is None:
                log_scale = torch.empty(len(coords), device=coords.device).uniform_(-r, r)
            coords = coords * log_scale.to(coords.device, coords.dtype).exp()[:, None, None]
        return self.rope(coords)

    def forward_projected(self, x: torch.Tensor, index: torch.Tensor, divisor: torch.Tensor,
                          mask: torch.Tensor | None = None, log_scale: torch.Tensor | None = None) -> torch.Tensor:
        """x (B, N, dim) already projected -> final-norm tokens (B, 1 + N, dim); padded tokens never attended."""
        return self.encode(x, self._rope(index, divisor, log_scale), mask)

    def forward(self, x: torch.Tensor, index: torch.Tensor, divisor: torch.Tensor,
                mask: torch.Tensor | None = None, log_scale: torch.Tensor | None = None) -> torch.Tensor:
        """Window features (B, N, 2D) -> tokens (B, 1 + N, dim) (SPECTRE's ``forward_features``)."""
        return self.forward_projected(self.patch_proj(x), index, divisor, mask, log_scale)

    def scan(self, tokens: torch.Tensor, index: torch.Tensor, grid: torch.Tensor, mask: torch.Tensor,
             log_scale: torch.Tensor | None = None) -> torch.Tensor:
        """[CLS; masked mean] (B, 2 dim) of the window tokens (B, N, 2D) at grid indices (B, N, 3)."""
        out = self((tokens - self.scan_mu) / self.scan_sd, index, grid, mask, log_scale)
        w = mask[..., None].to(out.dtype)
        mean = (out[:, 1:] * w).sum(dim=1) / w.sum(dim=1).clamp(min=1)
        return torch.cat([out[:, 0], mean], dim=-1)

    def depth(self, tokens: torch.Tensor, index: torch.Tensor, grid: torch.Tensor, mask: torch.Tensor,
              n_bins: int, log_scale: torch.Tensor | None = None) -> torch.Tensor:
        """Depth tokens (B, M, D) at (x, y, global depth) indices -> per bin [CLS; in-plane mean] (B, n_bins, 2 dim).
        The depth coordinate is divided by the window-grid depth (``grid`` holds the window grid)."""
        x = self.axis_patch_proj((tokens - self.depth_mu) / self.depth_sd)
        out = self.forward_projected(x, index, grid, mask, log_scale)
        onehot = F.one_hot(index[..., 2].clamp(max=n_bins - 1), n_bins).to(out.dtype) * mask[..., None].to(out.dtype)
        per_bin = torch.einsum("bmk,bmd->bkd", onehot, out[:, 1:]) / onehot.sum(dim=1).clamp(min=1)[..., None]
        return torch.cat([out[:, :1].expand(-1, n_bins, -1), per_bin], dim=-1)
