"""The trainer: AdamW (no decay on norms/biases), warm-up + cosine, clipping, accumulation, bf16 on GPU,
multi-process gradient averaging (torchrun), checkpoints that resume, and dev-split selection."""

from __future__ import annotations

import csv
import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from safetensors.torch import load_file, save_file
from tqdm import tqdm

from ctvlp.labels import CTRATE_LABELS
from ctvlp.losses import clip_loss, localization_loss, prompt_loss, prompt_pos_weight, siglip_loss
from ctvlp.models.ctvlp_model import CTVLPModel
from ctvlp.models.features import collate
from ctvlp.permissions import as_umask_allows
from ctvlp.train.checkpoint import load_checkpoint, restore, save_checkpoint
from ctvlp.train.data import FeatureSet, Sample, epoch_order
from ctvlp.train.evaluation import evaluate_samples


@dataclass(frozen=True)
class TrainSettings:
    epochs: int
    batch_size: int
    grad_accum: int
    lr: float
    scale_lr: float
    window_lr: float | None
    weight_decay: float
    betas: tuple[float, float]
    warmup_epochs: float
    grad_clip: float
    checkpoint_every: int
    keep_checkpoints: int
    seed: int
    loss: str
    w_contrastive: float
    w_prompts: float
    w_localization: float
    pos_weight_cap: float
    prompt_scale: float
    loc_temperature: float
    loc_sigma_bins: float
    bf16: bool
    train_datasets: tuple[str, ...]

    @classmethod
    def from_config(cls, config: dict) -> "TrainSettings":
        t = config["train"]
        w = t["weights"]
        return cls(t["epochs"], t["batch_size"], t["grad_accum"], float(t["lr"]), float(t["scale_lr"]),
                   None if t.get("window_lr") is None else float(t["window_lr"]), float(t["weight_decay"]),
                   tuple(t["betas"]), float(t["warmup_epochs"]), float(t["grad_clip"]), t["checkpoint_every"],
                   int(t.get("keep_checkpoints", 2)),
                   config["seed"], t["loss"], w["contrastive"], w["prompts"], w["localization"],
                   t["prompt_pos_weight_cap"], t["prompt_scale"], t["loc_temperature"], t["loc_sigma_bins"],
                   t["bf16"], tuple(t["datasets"]))


LOG_COLUMNS = ("step", "epoch", "contrastive", "prompts", "localization", "grad_norm", "lr", "seconds")


def param_groups(model: torch.nn.Module, weight_decay: float, lr: float, scale_lr: float,
                 window_lr: float | None = None) -> list[dict]:
    """Weight decay on matrices only. The SigLIP temperature and bias get their own learning rate:
    with small batches the bias must move from -10 within a few hundred steps, or the cheapest way
    down the loss is to collapse every embedding onto one direction. A window encoder trained end to
    end gets its own (smaller) rate: at the heads' rate its outputs collapse before the heads learn."""
    groups: dict[tuple[str, bool], list] = {}
    for name, p in model.named_parameters():
        if p.requires_grad:
            part = "scale" if name.startswith("scale.") else "window" if name.startswith("window.") else "rest"
            groups.setdefault((part, p.ndim >= 2 and part != "scale"), []).append(p)
    rates = {"scale": scale_lr, "window": lr if window_lr is None else window_lr, "rest": lr}
    return [{"params": params, "weight_decay": weight_decay if decay else 0.0, "lr": rates[part]}
            for (part, decay), params in sorted(groups.items())]


def warmup_cosine(warmup: int, total: int):
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / max(warmup, 1)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup) / max(total - warmup, 1))))
    return factor


def world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


class Trainer:
    def __init__(self, config: dict, run_dir: Path, samples: list[Sample], features: FeatureSet,
                 prompts: dict[str, list[list[str]]], device: torch.device | None = None):
        self.cfg = TrainSettings.from_config(config)
        self.config, self.run_dir, self.features, self.prompts = config, Path(run_dir), features, prompts
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.device = device or torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.rank, self.world = world()
        torch.manual_seed(self.cfg.seed)
        self.model = CTVLPModel.from_config(config).to(self.device)
        self.features = features.for_model(self.model)  # end to end: tokens from the model's own window encoder
        self.train = [s for s in samples if s.split == "train" and s.text and s.dataset in self.cfg.train_datasets]
        self.dev = [s for s in samples if s.split == "dev" and s.text]
        self._set_feature_stats()
        labels = torch.tensor(np.stack([s.labels for s in self.train]))
        self.pos_weight = prompt_pos_weight(labels, self.cfg.pos_weight_cap).to(self.device)
        self.per_step = self.cfg.batch_size * self.cfg.grad_accum * self.world
        self.steps_per_epoch = max(1, math.ceil(len(self.train) / self.per_step))
        self.total_steps = self.cfg.epochs * self.steps_per_epoch
        self.optimizer = torch.optim.AdamW(param_groups(self.model, self.cfg.weight_decay, self.cfg.lr,
                                                        self.cfg.scale_lr, self.cfg.window_lr), betas=self.cfg.betas)
        warmup = int(round(self.cfg.warmup_epochs * self.steps_per_epoch))
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, warmup_cosine(warmup, self.total_steps))
        self.resumed_from = 0
        self.bin_mm = config["model"]["window_encoder"]["patch_voxels"][2] * config["preprocess"]["spacing_mm"][2]

    def _set_feature_stats(self, max_volumes: int = 2000) -> None:
        """Per-channel mean/std of the training tokens, streamed (float64 sums) over at most ``max_volumes``
        volumes chosen by the seed: memory stays flat at any dataset size."""
        order = np.random.default_rng(self.cfg.seed).permutation(len(self.train))[:max_volumes]
        sums: dict[str, list] = {}
        for i in sorted(order):
            with torch.no_grad():
                tokens = self.features.tokens(self.train[i].volume_id)
            for kind in ("scan", "depth"):
                t = tokens[f"{kind}_tokens"].double()
                acc = sums.setdefault(kind, [0, 0.0, 0.0])
                acc[0] += len(t)
                acc[1] = acc[1] + t.sum(dim=0)
                acc[2] = acc[2] + (t * t).sum(dim=0)
        stats = {}
        for kind, (n, total, squares) in sums.items():
            mean = total / n
            std = ((squares / n - mean * mean).clamp(min=0) * n / max(n - 1, 1)).sqrt()
            stats[kind] = (mean.float(), std.float())
        self.model.grid.set_feature_stats(stats["scan"], stats["depth"])

    # ---- one optimisation step -------------------------------------------------------------
    def _micro_batches(self, step: int) -> list[list[Sample]]:
        epoch, pos = divmod(step, self.steps_per_epoch)
        order = epoch_order(len(self.train), self.cfg.seed, epoch)
        chosen = order[pos * self.per_step:(pos + 1) * self.per_step]
        mine = chosen[self.rank::self.world]
        size = self.cfg.batch_size
        return [[self.train[i] for i in mine[k:k + size]] for k in range(0, len(mine), size) if len(mine[k:k + size])]

    def _losses(self, batch: list[Sample]) -> dict[str, torch.Tensor]:
        c = self.cfg
        tensors = {k: v.to(self.device) for k, v in collate([self.features.tokens(s.volume_id) for s in batch]).items()}
        scan, depth = self.model.encode_scans(tensors)
        losses = {}
        text = self.model.encode_reports([s.text for s in batch])
        contrastive = siglip_loss if c.loss == "siglip" else clip_loss
        losses["contrastive"] = contrastive(scan, text, self.model.scale)
        if c.w_prompts > 0:
            pos, neg = self.model.encode_prompts(self.prompts)
            labels = torch.tensor(np.stack([s.labels for s in batch]), device=self.device)
            losses["prompts"] = prompt_loss(scan, pos, neg, labels, self.pos_weight, c.prompt_scale)
        owners = [(i, text_, b) for i, s in enumerate(batch) for text_, b in s.snippets]
        if c.w_localization > 0 and owners:
            snip = self.model.encode_snippets([t for _, t, _ in owners])
            idx = torch.tensor([i for i, _, _ in owners], device=self.device)
            target = torch.tensor([b for _, _, b in owners], device=self.device)
            losses["localization"] = localization_loss(snip, depth[idx], target, tensors["n_bins"][idx],
                                                       c.loc_temperature, c.loc_sigma_bins)
        return losses

    def _step(self, step: int) -> dict[str, float]:
        weights = {"contrastive": self.cfg.w_contrastive, "prompts": self.cfg.w_prompts,
                   "localization": self.cfg.w_localization}
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        logged: dict[str, float] = {}
        batches = self._micro_batches(step)
        for batch in batches:
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.cfg.bf16 and self.device.type == "cuda"):
                losses = self._losses(batch)
            total = sum(weights[k] * v for k, v in losses.items()) / len(batches)
            total.backward()
            for k, v in losses.items():
                logged[k] = logged.get(k, 0.0) + float(v.detach()) / len(batches)
        self._average_gradients()
        params = [p for p in self.model.parameters() if p.requires_grad]
        logged["grad_norm"] = float(torch.nn.utils.clip_grad_norm_(params, self.cfg.grad_clip))
        self.optimizer.step()
        self.scheduler.step()
        logged["lr"] = self.scheduler.get_last_lr()[0]
        return logged

    def _average_gradients(self) -> None:
        if self.world == 1:
            return
        for p in self.model.parameters():
            if p.requires_grad:
                if p.grad is None:
                    p.grad = torch.zeros_like(p)
                dist.all_reduce(p.grad)
                p.grad /= self.world

    # ---- the loop ------------------------------------------------------------------------
    def fit(self, stop_after: int | None = None) -> dict:
        ckpt_dir = self.run_dir / "checkpoints"
        start, best = 0, {"mean_rank": float("inf"), "step": -1}
        found = load_checkpoint(ckpt_dir)
        if found:
            start = restore(*found, self.model, self.optimizer, self.scheduler)
            best = found[1].get("best", best)
        self.resumed_from = start
        log_path = self.run_dir / "train_log.csv"
        if self.rank == 0:  # rows a killed job logged after its last checkpoint are redone: drop them
            for path in (log_path, self.run_dir / "dev_metrics.csv"):
                self._truncate_csv(path, start)
        bar = tqdm(range(start, self.total_steps), initial=start, total=self.total_steps, desc="train",
                   disable=self.rank != 0)
        for step in bar:
            t0 = time.perf_counter()
            logged = self._step(step)
            logged.update(step=step + 1, epoch=step // self.steps_per_epoch, seconds=time.perf_counter() - t0)
            if self.rank == 0:
                self._append_csv(log_path, logged)
                bar.set_postfix(loss=f"{logged.get('contrastive', 0):.3f}")
            if (step + 1) % self.steps_per_epoch == 0 and self.rank == 0:
                best = self._select(step + 1, best)
            if self.rank == 0 and ((step + 1) % self.cfg.checkpoint_every == 0 or step + 1 == self.total_steps):
                save_checkpoint(ckpt_dir, step + 1, self.model.trainable_state(), self.optimizer, self.scheduler,
                                {"best": best}, keep=self.cfg.keep_checkpoints)
            if stop_after is not None and step + 1 >= stop_after:
                break
        return best

    def _select(self, step: int, best: dict) -> dict:
        """Dev retrieval mean rank after each epoch; the best state is kept as best.safetensors."""
        metrics = evaluate_samples(self.model, self.dev, self.features, self.prompts, self.bin_mm)
        row = {"step": step, **{k: v for k, v in metrics.items() if isinstance(v, (int, float))}}
        self._append_csv(self.run_dir / "dev_metrics.csv", row)
        if metrics["retrieval"]["mean_rank"] < best["mean_rank"]:
            best = {"mean_rank": metrics["retrieval"]["mean_rank"], "step": step}
            tmp = self.run_dir / f"best.safetensors.tmp{os.getpid()}"
            save_file(self.model.trainable_state(), str(tmp))
            as_umask_allows(tmp)
            os.replace(tmp, self.run_dir / "best.safetensors")
            (self.run_dir / "best.json").write_text(json.dumps(best))
        return best

    def load_best(self) -> None:
        path = self.run_dir / "best.safetensors"
        if path.exists():
            self.model.load_state_dict(load_file(str(path)), strict=False)

    @staticmethod
    def _truncate_csv(path: Path, last_step: int) -> None:
        if path.exists():
            rows = list(csv.DictReader(open(path, newline="")))
            kept = [r for r in rows if int(r["step"]) <= last_step]
            if len(kept) != len(rows):
                with open(path, "w", newline="") as f:
                    writer = csv.DictWriter(f, fieldnames=list(rows[0]))
                    writer.writeheader()
                    writer.writerows(kept)

    @staticmethod
    def _append_csv(path: Path, row: dict) -> None:
        """Columns are the file's header (the train log's fixed columns when new): a step without a
        loss term (a batch with no snippets) leaves that cell empty instead of shifting the row."""
        new = not path.exists()
        if new and "grad_norm" in row:  # a train-log row: every loss column, whichever terms this step had
            fields = list(LOG_COLUMNS) + [c for c in row if c not in LOG_COLUMNS]
        elif new:
            fields = list(row)
        else:
            with open(path, newline="") as f:
                fields = next(csv.reader(f))
        with open(path, "a", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=fields, restval="", extrasaction="raise")
            if new:
                writer.writeheader()
            writer.writerow(row)


def prompt_lists(prompts_table) -> dict[str, list[list[str]]]:
    """{positive|negative: [[prompts of label 1], ...]} in CT-RATE label order."""
    out = {}
    for polarity in ("positive", "negative"):
        part = prompts_table[prompts_table.polarity == polarity]
        out[polarity] = [list(part[part.label == label].sort_values("rank").prompt) for label in CTRATE_LABELS]
    return out
