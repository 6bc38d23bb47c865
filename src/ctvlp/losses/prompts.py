"""Disease-prompt loss as RadFinder trains it (spectre.md, "Training at the paper's scale").

Every label has V paired prompt variants (positive v, negative v). Per sample, label and step one
variant is drawn (``random_1``); the logit is exp(t) (cos+ - cos-) with the SigLIP temperature t (the
bias cancels); BCE over the known labels only, with the per-label ``pos_weight`` and the label's
group weight as the element weight, averaged over the known elements (not divided by the weights).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def prompt_pos_weight(labels: torch.Tensor, cap: float) -> torch.Tensor:
    """Per-label min(n_neg / n_pos, cap) over training labels (N, L) in {1, 0, -1}; 1 where a label has no
    positive. No floor at 1: a label positive in most scans gets a weight below 1, as in RadFinder."""
    pos = (labels == 1).sum(dim=0).double()
    neg = (labels == 0).sum(dim=0).double()
    weight = torch.where(pos > 0, neg / pos.clamp(min=1), torch.ones_like(pos))
    return weight.clamp(max=cap).float()


def draw_variants(seed: int, step: int, n_samples: int, n_labels: int, n_variants: int) -> torch.Tensor:
    """(n_samples, n_labels) variant indices for one optimisation step: a pure function of (seed, step), so
    every process (and a resumed run) draws the same prompts for the same global batch."""
    rng = np.random.default_rng([seed, step, 0x70])
    return torch.from_numpy(rng.integers(0, n_variants, size=(n_samples, n_labels)))


def prompt_logits(img: torch.Tensor, prompt_emb: torch.Tensor, draw: torch.Tensor | None,
                  scale: torch.Tensor | float) -> torch.Tensor:
    """scale * (cos(img, pos_v) - cos(img, neg_v)) per sample and label: img (B, E), prompt_emb (L, V, 2, E)
    (index 0 positive, 1 negative), draw (B, L) the variant per sample and label (None: the mean of the
    per-variant cosines). Cosines of all variants are one (B, L*V*2) product: no (B, L, 2, E) copy."""
    n_labels, n_variants = prompt_emb.shape[:2]
    cos = F.normalize(img, dim=-1) @ F.normalize(prompt_emb, dim=-1).reshape(-1, img.shape[-1]).T
    cos = cos.reshape(len(img), n_labels, n_variants, 2)
    diff = cos[..., 0] - cos[..., 1]
    chosen = diff.mean(dim=2) if draw is None else diff.gather(2, draw.to(diff.device)[..., None])[..., 0]
    return scale * chosen


def prompt_loss(img: torch.Tensor, prompt_emb: torch.Tensor, labels: torch.Tensor, pos_weight: torch.Tensor,
                label_weight: torch.Tensor, scale: torch.Tensor | float, draw: torch.Tensor | None) -> torch.Tensor:
    """Mean over known (sample, label) elements of the weighted BCE; labels (B, L) in {1, 0, -1}."""
    logits = prompt_logits(img, prompt_emb, draw, scale)
    known = labels >= 0
    if not known.any():
        return logits.sum() * 0.0
    expand = lambda v: v.to(logits.device, logits.dtype)[None].expand_as(logits)[known]  # noqa: E731
    return F.binary_cross_entropy_with_logits(logits[known], labels[known].to(logits.dtype),
                                              pos_weight=expand(pos_weight), weight=expand(label_weight))
