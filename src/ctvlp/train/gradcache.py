"""Gradient caching (the two-phase scheme of GradCache / RadFinder): the exact gradient of a loss over a
batch far larger than fits in memory.

Phase 1 runs every micro-batch without gradients and keeps only its embeddings (and the RNG state it
started from). The loss of the whole batch is then computed on those cached embeddings, once, with
gradients with respect to them. Phase 2 re-runs each micro-batch with gradients, under the RNG state
saved for it (so dropout and RoPE-rescale draws equal phase 1's), and back-propagates the cached
embedding gradients through it. The parameter gradient is exactly the full-batch gradient (sum rule),
while the activation memory is that of one micro-batch.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass

import torch


@dataclass
class RandState:
    """CPU and CUDA generator states, captured before a micro-batch and restored for its re-run (the CUDA
    state of this process's own device only: touching the others would create a context on every GPU)."""

    cpu: torch.Tensor
    cuda: torch.Tensor | None

    @classmethod
    def capture(cls) -> "RandState":
        cuda = torch.cuda.get_rng_state() if torch.cuda.is_available() and torch.cuda.is_initialized() else None
        return cls(torch.get_rng_state(), cuda)

    def restore(self) -> None:
        torch.set_rng_state(self.cpu)
        if self.cuda is not None:
            torch.cuda.set_rng_state(self.cuda)


Job = Callable[[], dict[str, torch.Tensor]]


@dataclass
class Cached:
    """Phase-1 outputs of one job (detached) and the RNG state it ran under."""

    outputs: dict[str, torch.Tensor]
    rng: RandState


def phase_one(jobs: Sequence[Job]) -> list[Cached]:
    """Run every job without gradients, recording the RNG state each started from."""
    cached = []
    for job in jobs:
        rng = RandState.capture()
        with torch.no_grad():
            out = job()
        cached.append(Cached({k: v.detach() for k, v in out.items()}, rng))
    return cached


def phase_two(jobs: Sequence[Job], cached: Sequence[Cached], grads: Sequence[dict[str, torch.Tensor]],
              scale: float = 1.0, no_sync: Callable[[], object] | None = None) -> None:
    """Re-run each job with gradients under its phase-1 RNG state and back-propagate ``scale * grads``.

    ``no_sync`` (DDP's context manager) wraps every job but the last, so gradients are all-reduced once,
    after the last backward. The RNG stream continues afterwards as if every job had run once."""
    after = RandState.capture()
    for k, (job, cache, grad) in enumerate(zip(jobs, cached, grads)):
        context = no_sync() if no_sync is not None and k < len(jobs) - 1 else nullcontext()
        with context:
            cache.rng.restore()
            out = job()
            pairs = [(out[name], g) for name, g in grad.items() if g is not None and out[name].requires_grad]
            if pairs:
                torch.autograd.backward([o for o, _ in pairs], [g.to(o.dtype) * scale for o, g in pairs])
            elif no_sync is not None and k == len(jobs) - 1:
                raise RuntimeError("the last micro-batch produced no gradient: DDP would never all-reduce")
    after.restore()
