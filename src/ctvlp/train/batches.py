"""The epoch's entries (CT-RATE ``first_all``) and a DataLoader that prefetches each process's micro-batches
(the split itself is ``ctvlp.train.plan.BatchPlan``)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from ctvlp.features.window import collate
from ctvlp.train.plan import BatchPlan


def training_entries(samples: Sequence, mode: str) -> list[list[int]]:
    """Groups of sample indices, one entry per report. ``first_all`` (RadFinder): the reconstructions of one
    CT-RATE scan share one report, so they form one entry (else two volumes with the same report are each
    other's negatives); ``all``: every volume its own entry. Other datasets: one entry per volume."""
    groups: dict[tuple, list[int]] = {}
    for i, s in enumerate(samples):
        key = ("ct_rate", s.scan_id) if mode == "first_all" and s.dataset == "ct_rate" and s.scan_id else ("v", i)
        groups.setdefault(key, []).append(i)
    return list(groups.values())


def epoch_samples(entries: list[list[int]], seed: int, epoch: int) -> np.ndarray:
    """The epoch's sample indices in order: entries shuffled, one random reconstruction per entry; a pure
    function of (seed, epoch), so every process and a resumed run see the same batches."""
    order = np.random.default_rng([seed, epoch]).permutation(len(entries))
    pick = np.random.default_rng([seed, epoch, 1]).integers(0, 1 << 30, size=len(entries))
    return np.array([entries[e][pick[e] % len(entries[e])] for e in order], dtype=np.int64)


class _MicroBatches(Dataset):
    """Item k: the k-th micro-batch of this process in the epoch (sample indices and, for frozen features,
    their collated tokens, read in a worker)."""

    def __init__(self, micro: list[list[int]], samples: Sequence, features, collate_tokens: bool):
        self.micro, self.samples, self.features, self.collate_tokens = micro, samples, features, collate_tokens

    def __len__(self) -> int:
        return len(self.micro)

    def __getitem__(self, k: int) -> dict:
        index = self.micro[k]
        item: dict = {"index": torch.tensor(index)}
        if self.collate_tokens:
            item["tensors"] = host_tensors(collate([self.features.tokens(self.samples[i].volume_id) for i in index]))
        return item


def host_tensors(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A collated micro-batch as it waits on the host: floating tensors (the window features) as float16.

    Why float16 loses nothing: the feature files are float16 (``ctvlp.features.window.extract_features``), so
    the float32 values collated from them round-trip exactly (padding is zeros); it halves the host memory,
    pinned on CUDA, of a step's micro-batches. The trainer's step moves one micro-batch at a time to the
    device, as float32 (``ctvlp.train.step.to_device``)."""
    return {k: v.to(torch.float16) if v.is_floating_point() else v for k, v in tensors.items()}


def micro_batch_loader(plan: BatchPlan, order: np.ndarray, first_step: int, rank: int, samples: Sequence, features,
                       collate_tokens: bool, workers: int, prefetch: int, pin: bool) -> DataLoader:
    """This process's micro-batches for steps ``first_step`` .. end of the epoch, in step order."""
    micro = []
    for pos in range(first_step, plan.steps_per_epoch):
        mine = order[pos * plan.batch:(pos + 1) * plan.batch][plan.rank_slice(rank)]
        micro += [mine[k:k + plan.micro].tolist() for k in range(0, plan.per_rank, plan.micro)]
    return DataLoader(_MicroBatches(micro, samples, features, collate_tokens), batch_size=None, shuffle=False,
                      num_workers=workers, pin_memory=pin, prefetch_factor=prefetch if workers else None,
                      persistent_workers=False, generator=torch.Generator().manual_seed(0))
    # (its own generator: a loader's iterator would otherwise draw from the global RNG, and a resumed run
    # that starts a loader mid-epoch would continue with different dropout draws)
