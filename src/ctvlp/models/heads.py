"""SPECTRE's SigLIP projection head: a three-layer MLP then a weight-normalised linear layer.

Why the weight-normalised last layer with g fixed at 1: that is how SPECTRE trained the heads whose
weights are released; the stored ``weight_g``/``weight_v`` pair is kept as parameters (the older
``nn.utils.weight_norm`` format) so the files load by name.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class WeightNormLinear(nn.Module):
    """W = g * v / ||v|| per output row, no bias; ``weight_g`` frozen (SPECTRE's norm_last_layer)."""

    def __init__(self, in_dim: int, out_dim: int):
        super().__init__()
        self.weight_v = nn.Parameter(torch.empty(out_dim, in_dim))
        nn.init.trunc_normal_(self.weight_v, std=0.02)
        self.weight_g = nn.Parameter(torch.ones(out_dim, 1), requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.weight_g * self.weight_v / self.weight_v.norm(dim=1, keepdim=True)
        return F.linear(x, weight)


class SigLIPHead(nn.Module):
    """Linear(in, hidden) - GELU - Linear(hidden, hidden) - GELU - Linear(hidden, bottleneck) -> WN-Linear(out)."""

    def __init__(self, in_dim: int, hidden_dim: int, bottleneck_dim: int, out_dim: int):
        super().__init__()
        self.layers = nn.Sequential(nn.Linear(in_dim, hidden_dim), nn.GELU(), nn.Linear(hidden_dim, hidden_dim),
                                    nn.GELU(), nn.Linear(hidden_dim, bottleneck_dim))
        for m in self.layers:
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02, a=-2, b=2)
                nn.init.zeros_(m.bias)
        self.last_layer = WeightNormLinear(bottleneck_dim, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.last_layer(self.layers(x))
