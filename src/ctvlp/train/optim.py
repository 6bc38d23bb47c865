"""Optimiser and schedule: AdamW without decay on norms, biases, position and CLS tokens (RadFinder), own
rates for the SigLIP temperature/bias and an end-to-end window encoder, linear warm-up then cosine."""

from __future__ import annotations

import math

import torch

from ctvlp.train.settings import TrainSettings


def no_decay(name: str, p: torch.Tensor) -> bool:
    """Norms, biases, the temperature/bias and every position or CLS/scan token are not decayed (RadFinder)."""
    leaf = name.rsplit(".", 1)[-1]
    return (p.ndim < 2 or name.startswith("scale.") or "pos" in leaf or "token" in leaf
            or ".pos." in name or "pos_embed" in name or "rope" in name)


def param_groups(model: torch.nn.Module, weight_decay: float, lr: float, scale_lr: float,
                 window_lr: float | None = None) -> list[dict]:
    """Weight decay on weight matrices only. The SigLIP temperature and bias get their own learning rate:
    with small batches the bias must move from -10 within a few hundred steps, or the cheapest way
    down the loss is to collapse every embedding onto one direction. A window encoder trained end to
    end gets its own (smaller) rate: at the heads' rate its outputs collapse before the heads learn."""
    groups: dict[tuple[str, bool], list] = {}
    for name, p in model.named_parameters():
        if p.requires_grad:
            part = "scale" if name.startswith("scale.") else "window" if name.startswith("window.") else "rest"
            groups.setdefault((part, not no_decay(name, p)), []).append(p)
    rates = {"scale": scale_lr, "window": lr if window_lr is None else window_lr, "rest": lr}
    return [{"params": params, "weight_decay": weight_decay if decay else 0.0, "lr": rates[part]}
            for (part, decay), params in sorted(groups.items())]


def warmup_cosine(warmup: int, total: int, floor: float = 0.0):
    """The rate factor of a step: linear warm-up over ``warmup`` steps, then a cosine from 1 down to
    ``floor`` at step ``total`` (and ``floor`` after it)."""
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / max(warmup, 1)
        cosine = 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup) / max(total - warmup, 1))))
        return cosine if floor == 0.0 else floor + (1 - floor) * cosine
    return factor


def build_optimizer(model: torch.nn.Module, s: TrainSettings, steps_per_epoch: int, total_steps: int):
    """(AdamW, its warm-up + cosine LambdaLR) for the trainable parameters of ``model``."""
    optimizer = torch.optim.AdamW(param_groups(model, s.weight_decay, s.lr, s.scale_lr, s.window_lr), betas=s.betas)
    warmup = int(round(s.warmup_epochs * steps_per_epoch))
    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_cosine(warmup, total_steps))
