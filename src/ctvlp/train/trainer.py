"""The trainer: wires settings (``settings``), optimiser and schedule (``optim``), the objective
(``objective``), the gradient-cached step (``step``), dev selection (``selection``) and the logs
(``csv_log``) into a loop over a global contrastive batch, with DDP over processes (torchrun),
checkpoints that resume (per-process RNG) and bf16 autocast on GPU."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from ctvlp.models.ctvlp_model import CTVLPModel
from ctvlp.train.batches import epoch_samples, micro_batch_loader, training_entries
from ctvlp.train.checkpoint import load_checkpoint, restore, rng_states, save_checkpoint
from ctvlp.train.csv_log import append_csv, truncate_csv
from ctvlp.train.data import FeatureSet, Sample, feature_stats
from ctvlp.train.distributed import gather_objects, world
from ctvlp.train.objective import MIN_REPORT_TOKENS, Objective, report_token_counts
from ctvlp.train.optim import build_optimizer
from ctvlp.train.plan import BatchPlan
from ctvlp.train.prompt_set import PromptSet, prompt_set_from_lists
from ctvlp.train.selection import load_best, select
from ctvlp.train.settings import TrainSettings
from ctvlp.train.step import GradCacheStep, autocast, enable_text_checkpointing, wrap_encoders


class Trainer:
    def __init__(self, config: dict, run_dir: Path, samples: list[Sample], features,
                 prompts: dict[str, list[list[str]]], device: torch.device | None = None,
                 prompt_set: PromptSet | None = None):
        self.cfg = c = TrainSettings.from_config(config)
        self.config, self.run_dir, self.prompts = config, Path(run_dir), prompts
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.device = device or torch.device("cpu")
        self.rank, self.world = world()
        torch.manual_seed(c.seed)
        self.model = CTVLPModel.from_config(config).to(self.device)
        self.features = features.for_model(self.model)  # end to end: tokens from the model's own window encoder
        self.train = [s for s in samples if s.split == "train" and s.text and s.dataset in c.train_datasets]
        self.dev = [s for s in samples if s.split == "dev" and s.text]
        self.entries = training_entries(self.train, c.ctrate_sampling)
        self.plan = BatchPlan.check(config, self.world, len(self.entries))
        self.prompt_set = prompt_set or prompt_set_from_lists(prompts, c.prompt_groups)
        counts = report_token_counts(self.model.text, [s.text for s in self.train])
        self.objective = Objective(c, self.prompt_set, torch.from_numpy(self.prompt_set.label_matrix(self.train)),
                                   torch.tensor([n >= MIN_REPORT_TOKENS for n in counts]),
                                   [len(s.snippets) for s in self.train], self.device)
        stats = feature_stats(self.features, self.train, c.seed)
        self.model.set_feature_stats(stats["scan"], stats["depth"])
        if c.text_checkpointing and self.model.text.spec.finetune != "frozen":
            enable_text_checkpointing(self.model)
        self.steps_per_epoch = self.plan.steps_per_epoch
        self.total_steps = c.epochs * self.steps_per_epoch
        self.optimizer, self.scheduler = build_optimizer(self.model, c, self.steps_per_epoch, self.total_steps)
        self.encoders = wrap_encoders(self.model, self.features, self.world)
        self._step = GradCacheStep(self)  # (step, micro-batches) -> logged values
        self.resumed_from = 0
        self.bin_mm = config["model"]["window_encoder"]["patch_voxels"][2] * config["preprocess"]["spacing_mm"][2]
        if self.rank == 0:
            groups = {g: (self.prompt_set.groups.count(g), c.prompt_groups[g]) for g in dict.fromkeys(self.prompt_set.groups)}
            print(f"ctvlp train: {self.plan.describe()}; {len(self.train)} training volumes; prompt labels: "
                  + ", ".join(f"{g} {n} x weight {w}" for g, (n, w) in groups.items()), flush=True)

    def autocast(self):
        return autocast(self.device, self.cfg.bf16)

    def global_batch(self, step: int) -> np.ndarray:
        """The B sample indices of a step, in the order every process agrees on."""
        epoch, pos = divmod(step, self.steps_per_epoch)
        return epoch_samples(self.entries, self.cfg.seed, epoch)[pos * self.plan.batch:(pos + 1) * self.plan.batch]

    def _loader(self, epoch: int, first: int):
        """This process's micro-batches of ``epoch`` from step ``first`` of the epoch on."""
        pin = self.device.type == "cuda"
        return micro_batch_loader(self.plan, epoch_samples(self.entries, self.cfg.seed, epoch), first, self.rank,
                                  self.train, self.features, isinstance(self.features, FeatureSet),
                                  self.cfg.loader_workers, self.cfg.prefetch, pin)

    def fit(self, stop_after: int | None = None) -> dict:
        ckpt_dir = self.run_dir / "checkpoints"
        start, best = 0, {"mean_rank": float("inf"), "step": -1}
        found = load_checkpoint(ckpt_dir)
        if found:
            start = restore(*found, self.model, self.optimizer, self.scheduler, rank=self.rank)
            best = found[1].get("best", best)
        self.resumed_from = start
        log_path = self.run_dir / "train_log.csv"
        if self.rank == 0:  # rows a killed job logged after its last checkpoint are redone: drop them
            for path in (log_path, self.run_dir / "dev_metrics.csv"):
                truncate_csv(path, start)
        bar = tqdm(range(start, self.total_steps), initial=start, total=self.total_steps, desc="train",
                   disable=self.rank != 0)
        step = start
        while step < self.total_steps and (stop_after is None or step < stop_after):
            epoch, first = divmod(step, self.steps_per_epoch)
            loader = iter(self._loader(epoch, first))
            for _ in range(first, self.steps_per_epoch):
                t0 = time.perf_counter()
                logged = self._step(step, [next(loader) for _ in range(self.plan.micro_per_rank)])
                step += 1
                logged.update(step=step, epoch=epoch, seconds=time.perf_counter() - t0)
                if self.rank == 0:
                    append_csv(log_path, logged)
                    bar.update(1)
                    bar.set_postfix(loss=f"{logged.get('contrastive', 0):.3f}")
                if step % self.steps_per_epoch == 0:
                    best = select(self, step, best)
                if step % self.cfg.checkpoint_every == 0 or step == self.total_steps:
                    rng = gather_objects(rng_states())  # every process's generators, written by rank 0
                    if self.rank == 0:
                        save_checkpoint(ckpt_dir, step, self.model.trainable_state(), self.optimizer, self.scheduler,
                                        {"best": best, "world": self.world}, keep=self.cfg.keep_checkpoints, rng=rng)
                if stop_after is not None and step >= stop_after:
                    break
        bar.close()
        return best

    def prompt_scale(self) -> float:
        """The scale of the prompt logits: ``train.prompt_scale``, or exp(t) of the current model (RadFinder)."""
        return float(self.model.scale.t.detach().exp()) if self.cfg.prompt_scale is None else self.cfg.prompt_scale

    def load_best(self) -> None:
        load_best(self.model, self.run_dir)
