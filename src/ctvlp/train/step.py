"""One optimisation step over the global contrastive batch by gradient caching (``gradcache``).

Every process encodes its micro-batches and its share of the prompt texts; the embeddings are gathered so
that each holds the whole batch, the objective is computed once on them, and phase two re-runs each
micro-batch with gradients, back-propagating its rows' cached gradient. The encoders sit behind one
``EncoderCalls`` module, wrapped in DDP (its public API) over several processes.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from ctvlp.features.window import collate
from ctvlp.train.gradcache import phase_one, phase_two
from ctvlp.train.objective import SAMPLE_ROWS, gather_embeddings


class EncoderCalls(nn.Module):
    """The model's public encoders behind one ``forward`` so DDP sees every pass that needs gradients (a
    DDP module only all-reduces what went through its forward). Outputs are float32 for the loss.

    The SigLIP temperature and bias (``model.scale``) are not registered here: the loss alone uses them,
    computed identically on every process, so their gradient is already the global one and DDP must
    leave it alone."""

    def __init__(self, model: nn.Module, features):
        super().__init__()
        self.parts = nn.ModuleDict({name: m for name, m in model.named_children() if name != "scale"})
        self._model = (model,)  # a tuple: not a submodule, so DDP never sees ``scale``
        self.features = features

    @property
    def model(self) -> nn.Module:
        return self._model[0]

    def forward(self, kind: str, payload: dict) -> dict[str, torch.Tensor]:
        return self.micro(payload) if kind == "micro" else {"prompt": self.model.encode_reports(payload["texts"]).float()}

    def micro(self, payload: dict) -> dict[str, torch.Tensor]:
        tensors = payload.get("tensors")
        if tensors is None:  # a trainable window encoder: tokens computed here, with gradients
            tensors = {k: v.to(payload["device"]) for k, v in
                       collate([self.features.tokens(v) for v in payload["volumes"]]).items()}
        else:  # frozen features, kept float16 on the host until this micro-batch runs
            tensors = to_device(tensors, payload["device"])
        if payload.get("rope_log_scale") is not None:
            tensors = {**tensors, "rope_log_scale": payload["rope_log_scale"]}
        views = self.model.encode_scan_views(tensors)  # main head, image copy head, depth bins (copy head)
        out = {"scan": views["scan"].float(), "scan_prompt": views["scan_prompt"].float(),
               "depth": views["depth"].float(), "n_bins": tensors["n_bins"],
               "report": self.model.encode_reports(payload["texts"]).float()}
        if payload["snippets"]:
            out["snippet"] = self.model.encode_snippets(payload["snippets"]).float()
        return out


def to_device(tensors: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    """A micro-batch's host tensors on ``device``, floating ones as float32 (the model's master dtype).

    Why micro-batches stay on the host until their pass: a step holds all of them (64 at the paper's 4,096
    pairs) twice over, in both gradient-caching phases, and float32 copies of all of them on the GPU would
    take several GB per rank at long scans. Only the running micro-batch is on the device; pinned host memory
    (the loader's, on CUDA) makes the copy asynchronous."""
    return {k: v.to(device, non_blocking=True).float() if v.is_floating_point() else v.to(device, non_blocking=True)
            for k, v in tensors.items()}


def wrap_encoders(model: nn.Module, features, world: int) -> nn.Module:
    """The encoders, in DDP over several processes."""
    encoders = EncoderCalls(model, features)
    if world == 1:
        return encoders
    return DistributedDataParallel(encoders, find_unused_parameters=True, broadcast_buffers=False)


def enable_text_checkpointing(model: nn.Module) -> None:
    """Recompute the text tower in backward (a Hugging Face model, peft-wrapped with LoRA)."""
    tower = model.text.model
    if hasattr(tower, "activation_checkpointing_enable"):  # the name in transformers >= 5.2x
        tower.activation_checkpointing_enable({"use_reentrant": False})
    else:
        tower.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})


def autocast(device: torch.device, bf16: bool):
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16 and device.type == "cuda")


def rope_log_scales(factor: float, seed: int, step: int, index: list[int], device) -> torch.Tensor | None:
    """ln s per sample (scan path, depth path) for the combiner's RoPE rescaling, drawn from (seed, step,
    sample): the same factors however the global batch is cut into micro-batches and processes, so the GPU
    count never changes the objective (and phase 2 re-runs with phase 1's factors)."""
    if not factor:
        return None
    r = math.log(factor)
    draws = [np.random.default_rng([seed, step, i]).uniform(-r, r, 2) for i in index]
    return torch.tensor(np.array(draws), dtype=torch.float32, device=device)


def share(n: int, rank: int, world: int) -> tuple[np.ndarray, list[int]]:
    """This process's indices of ``n`` items split over processes, and every process's share size."""
    parts = np.array_split(np.arange(n), world)
    return parts[rank], [len(p) for p in parts]


class GradCacheStep:
    """Jobs of a step (prompt chunks, micro-batches), the cached two-phase pass, the objective, clipping
    and the optimiser update. ``t``: the trainer, whose parts (model, encoders, objective, optimiser,
    schedule, plan, samples, settings) this wires together."""

    def __init__(self, t):
        self.t = t

    def _call(self, kind: str, payload: dict):
        def job():
            with autocast(self.t.device, self.t.cfg.bf16):
                return self.t.encoders(kind, payload)
        return job

    def _micro_job(self, item: dict, step: int):
        t = self.t
        index = item["index"].tolist()
        batch = [t.train[i] for i in index]
        owners = [(k, text, b) for k, s in enumerate(batch) for text, b in s.snippets]
        payload = {"tensors": item.get("tensors"),  # host tensors: moved to the device when the job runs
                   "volumes": [s.volume_id for s in batch], "device": t.device,
                   "texts": [s.text for s in batch], "snippets": [text for _, text, _ in owners],
                   "rope_log_scale": rope_log_scales(t.model.combiner.spec.rescale_coords, t.cfg.seed, step, index,
                                                     t.device)}
        meta = {"owner": torch.tensor([k for k, _, _ in owners], dtype=torch.long, device=t.device),
                "bin": torch.tensor([b for _, _, b in owners], dtype=torch.long, device=t.device)}
        return self._call("micro", payload), meta

    def jobs(self, step: int, micro: list[dict]) -> tuple[list, list, list[str], dict[str, list[int]]]:
        """(jobs, metas, kinds, sizes) of a step: this process's prompt chunks, then its micro-batches; ``sizes``
        per kind, every process's share (for the gather). ``benchmarks/bench_gpu.py`` counts their FLOPs."""
        t, c, objective = self.t, self.t.cfg, self.t.objective
        jobs, metas, kinds = [], [], []
        sizes = {"micro": [t.plan.per_rank] * t.world}
        if objective.uses_prompts:
            texts = t.prompt_set.texts()
            mine, sizes["prompts"] = share(len(texts), t.rank, t.world)
            for k in range(0, len(mine), c.prompt_batch):
                jobs.append(self._call("prompts", {"texts": [texts[i] for i in mine[k:k + c.prompt_batch]]}))
                metas.append(None)
                kinds.append("prompts")
        for item in micro:
            job, meta = self._micro_job(item, step)
            jobs.append(job)
            metas.append(meta)
            kinds.append("micro")
        return jobs, metas, kinds, sizes

    def __call__(self, step: int, micro: list[dict]) -> dict[str, float]:
        t, c, objective = self.t, self.t.cfg, self.t.objective
        t.model.train()
        t.optimizer.zero_grad(set_to_none=True)
        batch = torch.from_numpy(t.global_batch(step))
        jobs, metas, kinds, sizes = self.jobs(step, micro)
        direct = t.world == 1 and len(micro) == 1  # one pass holds the whole batch: no re-run
        if direct:
            outs = [job() for job in jobs]
        else:
            cached = phase_one(jobs)
            outs = [{k: v.requires_grad_(True) if v.is_floating_point() else v for k, v in ch.outputs.items()}
                    for ch in cached]
        emb = gather_embeddings(outs, kinds, sizes, direct)
        local = [(o, m) for o, m, kd in zip(outs, metas, kinds) if kd == "micro"]
        losses = objective.losses(step, batch, emb, local, t.model.scale)
        objective.total(losses).backward()
        if not direct:
            phase_two(jobs, cached, self._cached_grads(emb, outs, kinds, sizes),
                      scale=float(t.world), no_sync=getattr(t.encoders, "no_sync", None))
        logged = objective.logged(losses)
        params = [p for p in t.model.parameters() if p.requires_grad]
        logged["grad_norm"] = float(torch.nn.utils.clip_grad_norm_(params, c.grad_clip))
        t.optimizer.step()
        t.scheduler.step()
        logged["lr"] = t.scheduler.get_last_lr()[0]
        return logged

    def _cached_grads(self, emb: dict, outs: list[dict], kinds: list[str], sizes: dict) -> list[dict]:
        """Per job, the gradient of the loss with respect to each of its outputs (its rows of the gathered
        embeddings; its own depth and snippet embeddings)."""
        rank = self.t.rank
        row = {kind: int(sum(n[:rank])) for kind, n in sizes.items()}
        grads = []
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
