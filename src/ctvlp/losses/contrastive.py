"""SigLIP (pairwise sigmoid) and CLIP (InfoNCE) losses over one global batch.

The losses see the whole contrastive batch at once: with gradient caching (``ctvlp.train.gradcache``)
every process holds the detached embeddings of all processes' samples, so the loss of B pairs is the
loss of B pairs whatever the number of GPUs or micro-batches (negatives from every process).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class LogitScale(nn.Module):
    """Learnable temperature t and bias b: z = exp(t) * cos + b (SigLIP init: t = log 10, b = -10)."""

    def __init__(self, init_scale: float = math.log(10.0), init_bias: float = -10.0):
        super().__init__()
        self.t = nn.Parameter(torch.tensor(float(init_scale)))
        self.b = nn.Parameter(torch.tensor(float(init_bias)))


def siglip_loss(img: torch.Tensor, txt: torch.Tensor, scale: LogitScale) -> torch.Tensor:
    """-1/|B| sum_i [log s(z_ii) + sum_{j != i} log s(-z_ij)] with z = exp(t) cos + b (spectre.md)."""
    img, txt = F.normalize(img, dim=-1), F.normalize(txt, dim=-1)
    logits = scale.t.exp() * img @ txt.T + scale.b
    labels = 2 * torch.eye(len(img), device=img.device, dtype=logits.dtype) - 1
    return -F.logsigmoid(labels * logits).sum() / len(img)


def clip_loss(img: torch.Tensor, txt: torch.Tensor, scale: LogitScale) -> torch.Tensor:
    """Symmetric InfoNCE over the batch (the CLIP ablation); the bias is unused."""
    img, txt = F.normalize(img, dim=-1), F.normalize(txt, dim=-1)
    logits = scale.t.exp() * img @ txt.T
    targets = torch.arange(len(img), device=img.device)
    return (F.cross_entropy(logits, targets) + F.cross_entropy(logits.T, targets)) / 2
