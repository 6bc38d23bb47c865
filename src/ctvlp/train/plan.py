"""What one optimisation step contains: the global contrastive batch and its split over processes and
micro-batches (torch-free: the workflow checks it when it starts, before any job).

``train.batch_size`` is the global contrastive batch B (paper 4,096): every step's loss is the loss of
B pairs whatever the number of processes W or the micro-batch m (``train.micro_batch``, what fits on
one GPU). B must be a multiple of m x W; each process takes B/W consecutive entries of the step in
B/(mW) micro-batches, so every process runs the same number of micro-batches and steps. An epoch has
floor(N/B) steps: the tail of the shuffled entries is dropped (a different tail every epoch).
"""

from __future__ import annotations

from dataclasses import dataclass

from ctvlp.core.config import ConfigError


@dataclass(frozen=True)
class BatchPlan:
    batch: int
    micro: int
    world: int
    entries: int

    @classmethod
    def check(cls, config: dict, world: int, entries: int | None = None) -> "BatchPlan":
        """The plan, or ConfigError naming the key: the same check runs when the workflow starts (with the
        configured GPU count) and in every training process (with the real one and the training set)."""
        t = config["train"]
        batch, micro = int(t["batch_size"]), int(t["micro_batch"])
        if batch % (micro * world):
            raise ConfigError(f"config key 'train.batch_size': {batch} is not a multiple of train.micro_batch x "
                              f"processes = {micro} x {world} = {micro * world}")
        if entries is not None and entries < world:
            raise ConfigError(f"config key 'compute.train_gpus': {world} processes but only {entries} training "
                              "entries; every process needs at least one")
        if entries is not None and entries < batch:
            raise ConfigError(f"config key 'train.batch_size': {batch} exceeds the {entries} training entries "
                              "(an epoch would have no step)")
        return cls(batch, micro, world, entries or 0)

    @property
    def per_rank(self) -> int:
        return self.batch // self.world

    @property
    def micro_per_rank(self) -> int:
        return self.per_rank // self.micro

    @property
    def steps_per_epoch(self) -> int:
        return self.entries // self.batch

    def rank_slice(self, rank: int) -> slice:
        return slice(rank * self.per_rank, (rank + 1) * self.per_rank)

    def describe(self) -> str:
        """The arithmetic, as the workflow (at start) and the train log print it."""
        text = (f"contrastive batch {self.batch} pairs per optimiser step = {self.world} process(es) x "
                f"{self.micro_per_rank} micro-batch(es) x {self.micro} (train.micro_batch)"
                f"{', by gradient caching' if self.world * self.micro_per_rank > 1 else ''}")
        if self.entries:
            text += (f"; {self.steps_per_epoch} steps per epoch over {self.entries} entries "
                     f"({self.entries - self.steps_per_epoch * self.batch} left out per epoch, a different tail each)")
        return text
