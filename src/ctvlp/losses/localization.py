"""Localization: softmax over the depth bins of the SAME scan against a Gaussian-smoothed target.

The target is built exactly as RadFinder builds it (spectre.md): a one-hot over all depth positions of
the padded batch, convolved with a Gaussian kernel of radius max(round(3 sigma), 1) normalised to sum 1
(zero padding at the array ends), renormalised over ALL positions (padded ones included), then zeroed
on padded positions without renormalising again. Near a scan's end some target mass is therefore lost
(it fell on padding), which is what the paper trained with.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

EPS = 1e-8  # RadFinder's normalisation epsilon


def gaussian_kernel(sigma: float) -> torch.Tensor:
    radius = max(int(sigma * 3 + 0.5), 1)
    x = torch.arange(-radius, radius + 1, dtype=torch.float32)
    kernel = torch.exp(-0.5 * (x / sigma) ** 2)
    return kernel / kernel.sum()


def smoothed_targets(target_bin: torch.Tensor, n_valid: torch.Tensor, n_bins: int, sigma: float) -> torch.Tensor:
    """(S, n_bins) soft targets over the padded depth axis of length ``n_bins``, zero on padded bins."""
    onehot = F.one_hot(target_bin.long(), n_bins).float()
    onehot = onehot / (onehot.sum(dim=1, keepdim=True) + EPS)
    if sigma > 0:
        kernel = gaussian_kernel(sigma).to(onehot.device)
        onehot = F.conv1d(onehot[:, None], kernel.view(1, 1, -1), padding=len(kernel) // 2)[:, 0]
        onehot = onehot / (onehot.sum(dim=1, keepdim=True) + EPS)
    valid = torch.arange(n_bins, device=onehot.device)[None] < n_valid.to(onehot.device)[:, None]
    return onehot.masked_fill(~valid, 0.0)


def localization_logits(snippets: torch.Tensor, depth: torch.Tensor, n_valid: torch.Tensor,
                        temperature: float) -> torch.Tensor:
    """cos(snippet, bin) / temperature with padded bins at -inf: snippets (S, E), depth (S, n_bins, E)."""
    cos = torch.einsum("se,sbe->sb", F.normalize(snippets, dim=-1), F.normalize(depth, dim=-1))
    valid = torch.arange(depth.shape[1], device=depth.device)[None] < n_valid[:, None]
    return (cos / temperature).masked_fill(~valid, float("-inf"))


def localization_terms(snippets: torch.Tensor, depth: torch.Tensor, target_bin: torch.Tensor, n_valid: torch.Tensor,
                       temperature: float = 0.1, sigma: float = 2.0) -> torch.Tensor:
    """Per-snippet cross-entropy summed over the valid bins (S,): the trainer sums them over all micro-batches
    and divides by the number of snippets of the global batch."""
    logits = localization_logits(snippets, depth, n_valid, temperature)
    target = smoothed_targets(target_bin, n_valid, depth.shape[1], sigma)
    valid = torch.arange(depth.shape[1], device=depth.device)[None] < n_valid[:, None]
    return (-(target * F.log_softmax(logits, dim=1))).masked_fill(~valid, 0.0).sum(dim=1)


def localization_loss(snippets: torch.Tensor, depth: torch.Tensor, target_bin: torch.Tensor, n_valid: torch.Tensor,
                      temperature: float = 0.1, sigma: float = 2.0) -> torch.Tensor:
    """The mean over snippets of ``localization_terms``."""
    return localization_terms(snippets, depth, target_bin, n_valid, temperature, sigma).mean()
