"""Disease-prompt loss: BCE on (s_pos - s_neg) against the label, unknown labels (-1) masked."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def prompt_pos_weight(labels: torch.Tensor, cap: float) -> torch.Tensor:
    """Per-label positive weight min(n_neg / n_pos, cap) from training labels (B, L) in {1, 0, -1}."""
    pos = (labels == 1).sum(dim=0).float()
    neg = (labels == 0).sum(dim=0).float()
    return torch.clamp(neg / pos.clamp(min=1), max=cap).clamp(min=1.0)


def prompt_scores(img: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
    """s_pos - s_neg for every scan and label: img (B, E), pos/neg (L, E) prompt embeddings."""
    img = F.normalize(img, dim=-1)
    return img @ F.normalize(pos, dim=-1).T - img @ F.normalize(neg, dim=-1).T


def prompt_loss(img: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor, labels: torch.Tensor,
                pos_weight: torch.Tensor, scale: float) -> torch.Tensor:
    """Mean BCE over known (scan, label) pairs of scale * (s_pos - s_neg)."""
    logits = scale * prompt_scores(img, pos, neg)
    known = labels >= 0
    if not known.any():
        return logits.sum() * 0.0
    loss = F.binary_cross_entropy_with_logits(logits, labels.clamp(min=0).float(), pos_weight=pos_weight,
                                              reduction="none")
    return loss[known].mean()
