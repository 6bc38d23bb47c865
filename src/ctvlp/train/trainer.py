"""The trainer: the paper's objective over a global contrastive batch by gradient caching, AdamW (no decay on
norms, biases, position and CLS tokens), warm-up + cosine, clipping, bf16 autocast on GPU, DDP over
processes (torchrun), checkpoints that resume (per-process RNG), and dev-split selection shared by all
processes."""

from __future__ import annotations

import csv
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from ctvlp.core.label_set import CTRATE_LABELS
from ctvlp.losses import clip_loss, draw_variants, localization_terms, prompt_loss, prompt_pos_weight, siglip_loss
from ctvlp.models.ctvlp_model import CTVLPModel
from ctvlp.features.window import collate
from ctvlp.core.state_dict import save_tensors
from ctvlp.train.batches import epoch_samples, micro_batch_loader, training_entries
from ctvlp.train.plan import BatchPlan
from ctvlp.train.checkpoint import load_checkpoint, restore, rng_states, save_checkpoint
from ctvlp.train.data import FeatureSet, Sample
from ctvlp.train.distributed import all_sum, gather_objects, gather_rows, world
from ctvlp.inference.embedding import embed_samples, evaluate_samples, merge_embeddings
from ctvlp.train.gradcache import phase_one, phase_two
from ctvlp.train.prompt_set import PromptSet

# Which embedding feeds which loss, as RadFinder: the one place to change it. Retrieval (SigLIP) takes the main
# image and text heads; the prompt loss the image copy head ("scan_prompt") against prompts through the main text
# head; localization the depth bins through the image copy head and the snippets through the text copy head.
LOSS_INPUTS = {"contrastive": ("scan", "report"), "prompts": ("scan_prompt", "prompt"),
               "localization": ("depth", "snippet")}
# Outputs with one row per sample of the global batch: gathered over processes for the batch-wide losses.
SAMPLE_ROWS = ("scan", "scan_prompt", "report")
MIN_REPORT_TOKENS = 11  # RadFinder drops reports of <= 10 tokens from the contrastive batch


@dataclass(frozen=True)
class TrainSettings:
    epochs: int
    batch_size: int
    micro_batch: int
    prompt_batch: int
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
    prompt_scale: float | None
    prompt_sampling: str
    prompt_groups: dict
    loc_temperature: float
    loc_sigma_bins: float
    bf16: bool
    train_datasets: tuple[str, ...]
    ctrate_sampling: str
    text_checkpointing: bool
    loader_workers: int
    prefetch: int

    @classmethod
    def from_config(cls, config: dict) -> "TrainSettings":
        t = config["train"]
        w = t["weights"]
        return cls(t["epochs"], t["batch_size"], t["micro_batch"], int(t.get("prompt_batch", 128)), float(t["lr"]),
                   float(t["scale_lr"]), None if t.get("window_lr") is None else float(t["window_lr"]),
                   float(t["weight_decay"]), tuple(t["betas"]), float(t["warmup_epochs"]), float(t["grad_clip"]),
                   t["checkpoint_every"], int(t.get("keep_checkpoints", 2)), config["seed"], t["loss"],
                   w["contrastive"], w["prompts"], w["localization"], t["prompt_pos_weight_cap"],
                   None if t.get("prompt_scale") is None else float(t["prompt_scale"]),
                   t.get("prompt_sampling", "random_1"), dict(t.get("prompt_groups") or {"ct_rate": 1.0}),
                   t["loc_temperature"], t["loc_sigma_bins"], t["bf16"], tuple(t["datasets"]),
                   t.get("ctrate_sampling", "first_all"), bool(t.get("text_grad_checkpointing", False)),
                   int(t.get("loader_workers", 0)), int(t.get("prefetch", 2)))


LOG_COLUMNS = ("step", "epoch", "contrastive", "prompts", "localization", "grad_norm", "lr", "seconds")


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


def warmup_cosine(warmup: int, total: int):
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / max(warmup, 1)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup) / max(total - warmup, 1))))
    return factor


class EncoderCalls(nn.Module):
    """The model's public encoders behind one ``forward`` so DDP sees every pass that needs gradients (a
    DDP module only all-reduces what went through its forward). Outputs are float32 for the loss."""

    def __init__(self, model: CTVLPModel, features):
        super().__init__()
        self.model = model
        self.features = features

    def forward(self, kind: str, payload: dict) -> dict[str, torch.Tensor]:
        return self.micro(payload) if kind == "micro" else {"prompt": self.model.encode_reports(payload["texts"]).float()}

    def micro(self, payload: dict) -> dict[str, torch.Tensor]:
        tensors = payload.get("tensors")
        if tensors is None:  # a trainable window encoder: tokens computed here, with gradients
            tensors = {k: v.to(payload["device"]) for k, v in
                       collate([self.features.tokens(v) for v in payload["volumes"]]).items()}
        if payload.get("rope_log_scale") is not None:
            tensors = {**tensors, "rope_log_scale": payload["rope_log_scale"]}
        views = self.model.encode_scan_views(tensors)  # main head, image copy head, depth bins (copy head)
        out = {"scan": views["scan"].float(), "scan_prompt": views["scan_prompt"].float(),
               "depth": views["depth"].float(), "n_bins": tensors["n_bins"],
               "report": self.model.encode_reports(payload["texts"]).float()}
        if payload["snippets"]:
            out["snippet"] = self.model.encode_snippets(payload["snippets"]).float()
        return out


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
        self.labels = torch.from_numpy(self.prompt_set.label_matrix(self.train))
        self.pos_weight = prompt_pos_weight(self.labels, c.pos_weight_cap).to(self.device)
        self.label_weight = torch.from_numpy(self.prompt_set.weights).to(self.device)
        self.has_text = torch.tensor([n >= MIN_REPORT_TOKENS for n in self._token_counts([s.text for s in self.train])])
        self._set_feature_stats()
        if c.text_checkpointing and self.model.text.spec.finetune != "frozen":
            tower = self.model.text.model  # a Hugging Face model (peft-wrapped with LoRA)
            if hasattr(tower, "activation_checkpointing_enable"):  # the name in transformers >= 5.2x
                tower.activation_checkpointing_enable({"use_reentrant": False})
            else:
                tower.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        self.steps_per_epoch = self.plan.steps_per_epoch
        self.total_steps = c.epochs * self.steps_per_epoch
        self.optimizer = torch.optim.AdamW(param_groups(self.model, c.weight_decay, c.lr, c.scale_lr, c.window_lr),
                                           betas=c.betas)
        warmup = int(round(c.warmup_epochs * self.steps_per_epoch))
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, warmup_cosine(warmup, self.total_steps))
        self.encoders: nn.Module = EncoderCalls(self.model, self.features)
        if self.world > 1:
            # The temperature and bias are used by the loss only, computed identically on every process:
            # their gradient is already the global one and DDP must leave it alone.
            DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(
                self.encoders, [f"model.{n}" for n, _ in self.model.named_parameters() if n.startswith("scale.")])
            self.encoders = DistributedDataParallel(self.encoders, find_unused_parameters=True, broadcast_buffers=False)
        self.resumed_from = 0
        self.bin_mm = config["model"]["window_encoder"]["patch_voxels"][2] * config["preprocess"]["spacing_mm"][2]
        if self.rank == 0:
            groups = {g: (self.prompt_set.groups.count(g), c.prompt_groups[g]) for g in dict.fromkeys(self.prompt_set.groups)}
            print(f"ctvlp train: {self.plan.describe()}; {len(self.train)} training volumes; prompt labels: "
                  + ", ".join(f"{g} {n} x weight {w}" for g, (n, w) in groups.items()), flush=True)

    def _token_counts(self, texts: list[str]) -> list[int]:
        tok = self.model.text.tokenizer
        return [len(ids) for ids in tok(texts, truncation=True, max_length=self.model.text.spec.max_tokens)["input_ids"]]

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
        self.model.set_feature_stats(stats["scan"], stats["depth"])

    def _autocast(self):
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.cfg.bf16 and self.device.type == "cuda")

    # ---- one optimisation step -------------------------------------------------------------
    def global_batch(self, step: int) -> np.ndarray:
        """The B sample indices of a step, in the order every process agrees on."""
        epoch, pos = divmod(step, self.steps_per_epoch)
        return epoch_samples(self.entries, self.cfg.seed, epoch)[pos * self.plan.batch:(pos + 1) * self.plan.batch]

    def _rope_log_scales(self, step: int, index: list[int]) -> torch.Tensor | None:
        """ln s per sample (scan path, depth path) for the combiner's RoPE rescaling, drawn from (seed, step,
        sample): the same factors however the global batch is cut into micro-batches and processes, so the GPU
        count never changes the objective (and phase 2 re-runs with phase 1's factors)."""
        factor = self.model.combiner.spec.rescale_coords
        if not factor:
            return None
        r = math.log(factor)
        draws = [np.random.default_rng([self.cfg.seed, step, i]).uniform(-r, r, 2) for i in index]
        return torch.tensor(np.array(draws), dtype=torch.float32, device=self.device)

    def _micro_job(self, item: dict, step: int):
        index = item["index"].tolist()
        batch = [self.train[i] for i in index]
        owners = [(k, text, b) for k, s in enumerate(batch) for text, b in s.snippets]
        tensors = item.get("tensors")
        payload = {"tensors": None if tensors is None else {k: v.to(self.device, non_blocking=True) for k, v in tensors.items()},
                   "volumes": [s.volume_id for s in batch], "device": self.device,
                   "texts": [s.text for s in batch], "snippets": [t for _, t, _ in owners],
                   "rope_log_scale": self._rope_log_scales(step, index)}
        meta = {"owner": torch.tensor([k for k, _, _ in owners], dtype=torch.long, device=self.device),
                "bin": torch.tensor([b for _, _, b in owners], dtype=torch.long, device=self.device)}
        return self._call("micro", payload), meta

    def _call(self, kind: str, payload: dict):
        def job():
            with self._autocast():
                return self.encoders(kind, payload)
        return job

    def _prompt_share(self) -> tuple[list[str], list[int]]:
        """This process's share of the prompt texts and every process's share size."""
        texts = self.prompt_set.texts()
        parts = np.array_split(np.arange(len(texts)), self.world)
        return [texts[i] for i in parts[self.rank]], [len(p) for p in parts]

    def _step(self, step: int, micro: list[dict]) -> dict[str, float]:
        c, plan = self.cfg, self.plan
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        batch = torch.from_numpy(self.global_batch(step))
        jobs, metas, kinds = [], [], []
        use_prompts = c.w_prompts > 0 and len(self.prompt_set.names) > 0
        if use_prompts:
            mine, prompt_sizes = self._prompt_share()
            for k in range(0, len(mine), c.prompt_batch):
                jobs.append(self._call("prompts", {"texts": mine[k:k + c.prompt_batch]}))
                metas.append(None)
                kinds.append("prompts")
        for item in micro:
            job, meta = self._micro_job(item, step)
            jobs.append(job)
            metas.append(meta)
            kinds.append("micro")
        # One pass holds the whole batch: the loss back-propagates through it directly (no re-run).
        direct = self.world == 1 and len(micro) == 1
        if direct:
            outs = [job() for job in jobs]
        else:
            cached = phase_one(jobs)
            outs = [{k: v.requires_grad_(True) if v.is_floating_point() else v for k, v in ch.outputs.items()}
                    for ch in cached]

        def joined(name: str, kind: str, sizes: list[int]):
            local = torch.cat([o[name] for o, kd in zip(outs, kinds) if kd == kind])
            return local if direct else gather_rows(local.detach(), sizes).requires_grad_(True)

        emb = {name: joined(name, "micro", [plan.per_rank] * self.world) for name in SAMPLE_ROWS}
        if use_prompts:
            emb["prompt"] = joined("prompt", "prompts", prompt_sizes)
        losses = self._objective(step, batch, emb, outs, metas, kinds)
        weights = {"contrastive": c.w_contrastive, "prompts": c.w_prompts, "localization": c.w_localization}
        total = sum(weights[k] * v for k, v in losses.items() if k in weights)
        total.backward()
        if not direct:
            phase_two(jobs, cached, self._cached_grads(emb, outs, kinds, use_prompts),
                      scale=float(self.world), no_sync=getattr(self.encoders, "no_sync", None))
        logged = {k: float(v.detach()) for k, v in losses.items() if k in weights}
        if "localization" in losses:
            logged["localization"] = float(all_sum(losses["loc_sum"].detach()) / losses["loc_count"])
        params = [p for p in self.model.parameters() if p.requires_grad]
        logged["grad_norm"] = float(torch.nn.utils.clip_grad_norm_(params, c.grad_clip))
        self.optimizer.step()
        self.scheduler.step()
        logged["lr"] = self.scheduler.get_last_lr()[0]
        return logged

    def _cached_grads(self, emb, outs, kinds, use_prompts) -> list[dict]:
        """Per job, the gradient of the loss with respect to each of its outputs (its rows of the gathered
        embeddings; its own depth and snippet embeddings)."""
        grads = []
        row = {"micro": self.rank * self.plan.per_rank, "prompts": 0}
        if use_prompts:
            _, sizes = self._prompt_share()
            row["prompts"] = int(sum(sizes[:self.rank]))
        for out, kind in zip(outs, kinds):
            n = len(next(iter(out.values())))
            if kind == "prompts":
                grads.append({"prompt": emb["prompt"].grad[row["prompts"]:row["prompts"] + n]})
            else:
                g = {name: None if emb[name].grad is None else emb[name].grad[row["micro"]:row["micro"] + n]
                     for name in SAMPLE_ROWS}
                g.update({name: out[name].grad for name in ("depth", "snippet") if name in out})
                grads.append(g)
            row[kind] += n
        return grads

    def _objective(self, step: int, batch: torch.Tensor, emb: dict, outs, metas, kinds) -> dict[str, torch.Tensor]:
        """The losses of the global batch from its embeddings (spectre.md): SigLIP (or CLIP) over all pairs
        whose report has > 10 tokens, the prompt loss over all samples, the localization loss over all
        snippets (each process sums its own, divided by the global count)."""
        c = self.cfg
        losses: dict[str, torch.Tensor] = {}
        img, txt = LOSS_INPUTS["contrastive"]
        keep = self.has_text[batch].to(self.device)
        if keep.any():
            contrastive = siglip_loss if c.loss == "siglip" else clip_loss
            losses["contrastive"] = contrastive(emb[img][keep], emb[txt][keep], self.model.scale)
        if "prompt" in emb:
            img, prm = LOSS_INPUTS["prompts"]
            n_labels, n_var = len(self.prompt_set.names), self.prompt_set.n_variants
            prompt_emb = emb[prm].reshape(n_labels, n_var, 2, -1)
            draw = (draw_variants(c.seed, step, len(batch), n_labels, n_var) if c.prompt_sampling == "random_1"
                    else None)
            scale = self.model.scale.t.exp() if c.prompt_scale is None else c.prompt_scale
            losses["prompts"] = prompt_loss(emb[img], prompt_emb, self.labels[batch].to(self.device), self.pos_weight,
                                            self.label_weight, scale, draw)
        count = sum(len(self.train[int(i)].snippets) for i in batch)
        if c.w_localization > 0 and count:
            dep, snp = LOSS_INPUTS["localization"]
            total = torch.zeros((), device=self.device)
            for out, meta, kind in zip(outs, metas, kinds):
                if kind == "micro" and snp in out:
                    total = total + localization_terms(out[snp], out[dep][meta["owner"]], meta["bin"],
                                                       out["n_bins"][meta["owner"]], c.loc_temperature,
                                                       c.loc_sigma_bins).sum()
            losses["localization"] = total / count
            losses["loc_sum"], losses["loc_count"] = total, torch.tensor(float(count))
        return losses

    # ---- the loop ------------------------------------------------------------------------
    def _loader(self, epoch: int, first: int):
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
                self._truncate_csv(path, start)
        bar = tqdm(range(start, self.total_steps), initial=start, total=self.total_steps, desc="train",
                   disable=self.rank != 0)
        step = start
        while step < self.total_steps and (stop_after is None or step < stop_after):
            epoch, first = divmod(step, self.steps_per_epoch)
            loader = iter(self._loader(epoch, first))
            for _ in range(first, self.steps_per_epoch):
                t0 = time.perf_counter()
                micro = [next(loader) for _ in range(self.plan.micro_per_rank)]
                logged = self._step(step, micro)
                step += 1
                logged.update(step=step, epoch=epoch, seconds=time.perf_counter() - t0)
                if self.rank == 0:
                    self._append_csv(log_path, logged)
                    bar.update(1)
                    bar.set_postfix(loss=f"{logged.get('contrastive', 0):.3f}")
                if step % self.steps_per_epoch == 0:
                    best = self._select(step, best)
                if step % self.cfg.checkpoint_every == 0 or step == self.total_steps:
                    rng = gather_objects(rng_states())  # every process's generators, written by rank 0
                    if self.rank == 0:
                        save_checkpoint(ckpt_dir, step, self.model.trainable_state(), self.optimizer, self.scheduler,
                                        {"best": best, "world": self.world}, keep=self.cfg.keep_checkpoints, rng=rng)
                if stop_after is not None and step >= stop_after:
                    break
        bar.close()
        return best

    def _select(self, step: int, best: dict) -> dict:
        """Dev retrieval mean rank after each epoch (every process embeds its share, rank 0 scores them);
        the best state is kept as best.safetensors."""
        share = np.array_split(np.arange(len(self.dev)), self.world)[self.rank]
        with self._autocast():
            part = embed_samples(self.model, [self.dev[i] for i in share], self.features, self.prompts)
        parts = gather_objects(part)
        if self.rank != 0:
            return best
        metrics = evaluate_samples(self.model, self.dev, self.features, self.prompts, self.bin_mm,
                                   emb=merge_embeddings(parts))
        row = {"step": step, **{k: v for k, v in metrics.items() if isinstance(v, (int, float))}}
        self._append_csv(self.run_dir / "dev_metrics.csv", row)
        if metrics["retrieval"]["mean_rank"] < best["mean_rank"]:
            best = {"mean_rank": metrics["retrieval"]["mean_rank"], "step": step}
            save_tensors(self.model.trainable_state(), self.run_dir / "best.safetensors")
            (self.run_dir / "best.json").write_text(json.dumps(best))
        return best

    def prompt_scale(self) -> float:
        """The scale of the prompt logits: ``train.prompt_scale``, or exp(t) of the current model (RadFinder)."""
        return float(self.model.scale.t.detach().exp()) if self.cfg.prompt_scale is None else self.cfg.prompt_scale

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


def prompt_set_from_lists(prompts: dict[str, list[list[str]]], groups: dict[str, float]) -> PromptSet:
    """The prompt set of ``prompt_lists`` (the 18 CT-RATE labels, group ``ct_rate``): tests and callers
    without a prompts table."""
    import pandas as pd
    rows = [{"label": label, "polarity": pol, "rank": r, "prompt": p}
            for pol in ("positive", "negative") for label, group in zip(CTRATE_LABELS, prompts[pol])
            for r, p in enumerate(group)]
    return PromptSet.from_table(pd.DataFrame(rows), {g: w for g, w in groups.items() if g == "ct_rate"} or {"ct_rate": 1.0})


def prompt_lists(prompts_table) -> dict[str, list[list[str]]]:
    """{positive|negative: [[prompts of label 1], ...]} in CT-RATE label order (evaluation's zero-shot)."""
    out = {}
    for polarity in ("positive", "negative"):
        part = prompts_table[prompts_table.polarity == polarity]
        out[polarity] = [list(part[part.label == label].sort_values("rank").prompt) for label in CTRATE_LABELS]
    return out
