"""Localization: softmax over the depth bins of the SAME scan, Gaussian-smoothed one-hot target."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def smoothed_targets(target_bin: torch.Tensor, n_valid: torch.Tensor, n_bins: int, sigma: float) -> torch.Tensor:
    """(S, n_bins) distributions: a Gaussian (sigma in bins) around the target, zero on padded bins."""
    bins = torch.arange(n_bins, device=target_bin.device, dtype=torch.float32)
    weights = torch.exp(-0.5 * ((bins[None] - target_bin[:, None].float()) / sigma) ** 2)
    weights = weights * (bins[None] < n_valid[:, None]).float()
    return weights / weights.sum(dim=1, keepdim=True)


def localization_logits(snippets: torch.Tensor, depth: torch.Tensor, n_valid: torch.Tensor,
                        temperature: float) -> torch.Tensor:
    """cos(snippet, bin) / temperature with padded bins at -inf: snippets (S, E), depth (S, n_bins, E)."""
    cos = torch.einsum("se,sbe->sb", F.normalize(snippets, dim=-1), F.normalize(depth, dim=-1))
    valid = torch.arange(depth.shape[1], device=depth.device)[None] < n_valid[:, None]
    return (cos / temperature).masked_fill(~valid, float("-inf"))


def localization_loss(snippets: torch.Tensor, depth: torch.Tensor, target_bin: torch.Tensor, n_valid: torch.Tensor,
                      temperature: float = 0.1, sigma: float = 2.0) -> torch.Tensor:
    """Cross-entropy between the softmax over bins and the smoothed target, averaged over snippets."""
    logits = localization_logits(snippets, depth, n_valid, temperature)
    target = smoothed_targets(target_bin, n_valid, depth.shape[1], sigma)
    logp = F.log_softmax(logits, dim=1).masked_fill(target == 0, 0.0)
    return -(target * logp).sum(dim=1).mean()
