"""SigLIP (pairwise sigmoid) and CLIP (InfoNCE) losses with negatives from every process.

Each process scores its local scans against the texts of all processes (gathered with gradient).
Its loss is normalised by the local batch, so DDP's gradient average over processes equals the
gradient of the single-process loss on the concatenated batch (tested with two gloo processes).
"""

from __future__ import annotations

import math

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn


class LogitScale(nn.Module):
    """Learnable temperature t and bias b: z = exp(t) * cos + b (SigLIP init: t = log 10, b = -10)."""

    def __init__(self, init_scale: float = math.log(10.0), init_bias: float = -10.0):
        super().__init__()
        self.t = nn.Parameter(torch.tensor(float(init_scale)))
        self.b = nn.Parameter(torch.tensor(float(init_bias)))


class _GatherRows(torch.autograd.Function):
    """all_gather whose backward sums every process's gradient for the rows this process owns."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        sizes = [torch.zeros(1, dtype=torch.long, device=x.device) for _ in range(dist.get_world_size())]
        dist.all_gather(sizes, torch.tensor([len(x)], device=x.device))
        sizes = [int(s) for s in sizes]
        if len(set(sizes)) != 1:
            raise ValueError(f"contrastive loss needs equal local batches on every process, got {sizes}")
        parts = [torch.empty_like(x) for _ in sizes]
        dist.all_gather(parts, x.contiguous())
        ctx.rows = (dist.get_rank() * len(x), len(x))
        return torch.cat(parts)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous()
        dist.all_reduce(grad)
        start, n = ctx.rows
        return grad[start:start + n]


def gather_with_grad(x: torch.Tensor) -> tuple[torch.Tensor, int]:
    """All processes' rows (gradients flow back to their owners) and this process's row offset."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return x, 0
    return _GatherRows.apply(x), dist.get_rank() * len(x)


def siglip_loss(img: torch.Tensor, txt: torch.Tensor, scale: LogitScale) -> torch.Tensor:
    """-1/|B| sum_i sum_j log sigmoid(y_ij z_ij), y = +1 on matching pairs, -1 elsewhere."""
    img, txt = F.normalize(img, dim=-1), F.normalize(txt, dim=-1)
    all_txt, offset = gather_with_grad(txt)
    logits = scale.t.exp() * img @ all_txt.T + scale.b
    labels = -torch.ones_like(logits)
    labels[torch.arange(len(img)), offset + torch.arange(len(img))] = 1.0
    return -F.logsigmoid(labels * logits).sum() / len(img)


def clip_loss(img: torch.Tensor, txt: torch.Tensor, scale: LogitScale) -> torch.Tensor:
    """Symmetric InfoNCE over the global batch (the CLIP ablation); the bias is unused."""
    img, txt = F.normalize(img, dim=-1), F.normalize(txt, dim=-1)
    all_img, offset = gather_with_grad(img)
    all_txt, _ = gather_with_grad(txt)
    targets = offset + torch.arange(len(img), device=img.device)
    i2t = F.cross_entropy(scale.t.exp() * img @ all_txt.T, targets, reduction="sum")
    t2i = F.cross_entropy(scale.t.exp() * txt @ all_img.T, targets, reduction="sum")
    return (i2t + t2i) / (2 * len(img))
