"""The few collectives the trainer needs, written so that one process needs no process group at all.

Every process knows the whole global batch (its order is a pure function of seed and step), so the
only data that travels are embeddings (gathered once per step, without gradients), the logged loss
values, the RNG states for checkpoints and the dev-set embeddings.
"""

from __future__ import annotations

import torch
import torch.distributed as dist


def world() -> tuple[int, int]:
    """(rank, world size); (0, 1) without an initialised process group."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _device_for(x: torch.Tensor) -> torch.device:
    """NCCL moves only CUDA tensors; gloo only CPU ones."""
    return torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")


def gather_rows(x: torch.Tensor, sizes: list[int]) -> torch.Tensor:
    """Concatenate every process's rows in rank order; ``sizes`` (rows per rank) is known to all ranks,
    so unequal shares are padded to the largest and cut back without an extra size exchange."""
    rank, n = world()
    if n == 1:
        return x
    if len(x) != sizes[rank]:
        raise ValueError(f"rank {rank} holds {len(x)} rows, the plan says {sizes[rank]}")
    top = max(sizes)
    device = _device_for(x)
    pad = torch.zeros((top, *x.shape[1:]), dtype=x.dtype, device=device)
    pad[: len(x)] = x.to(device)
    parts = [torch.empty_like(pad) for _ in range(n)]
    dist.all_gather(parts, pad.contiguous())
    return torch.cat([p[:s] for p, s in zip(parts, sizes)]).to(x.device)


def all_sum(x: torch.Tensor) -> torch.Tensor:
    """Sum over processes (identity for one)."""
    if world()[1] == 1:
        return x
    y = x.detach().to(_device_for(x)).clone()
    dist.all_reduce(y)
    return y.to(x.device)


def gather_objects(obj) -> list:
    """Every process's ``obj`` in rank order (small, picklable between our own processes only)."""
    if world()[1] == 1:
        return [obj]
    out: list = [None] * world()[1]
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(obj):
    """Rank 0's ``obj`` on every process."""
    if world()[1] == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier() -> None:
    if world()[1] > 1:
        dist.barrier()
