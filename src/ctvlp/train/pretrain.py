"""Self-supervised pretraining of the window encoder (rule ``pretrain_window_encoder``): masked autoencoding.

Why: the method freezes a pretrained window encoder (SPECTRE's). A site that cannot use SPECTRE's
non-commercial weights, or works on another body region or resolution, pretrains its own on its cached
training volumes, with no labels and no reports. A random encoder's mean-pooled tokens carry only large
findings; small ones (a port is a few of the ~300,000 voxels of a demo scan) need learned features.

Why masked autoencoding (MAE, He et al. 2022) rather than self-distillation: it needs one view per window
and runs the encoder on the visible quarter of the tokens only, so enough steps fit on a few CPU cores;
and to rebuild a masked patch from its neighbours, every visible token must describe its own content,
a lesion included, which is what the pooled tokens should keep. The decoder, the mask and the
loss are ``ctvlp.models.mae``; the decoder is thrown away and only the encoder's weights are written, as
safetensors that ``build_window_encoder`` loads (``WindowEncoderSpec.pretrained``). Checkpoints are the
trainer's (``ctvlp.train.checkpoint``), with the trainer's rule: checkpoints of other settings are set aside,
not continued.

Training windows are random crops of window size from the cached volumes (not only the grid-aligned
windows the features use), drawn from a generator seeded by (seed, step), and the mask likewise: a run
resumed from a checkpoint draws exactly what the uninterrupted run would have, so it ends with the same
weights.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from ctvlp.core.state_dict import save_tensors
from ctvlp.features.cache import cache_file, read_cached
from ctvlp.models.mae import MAEDecoder, mae_loss, random_keep
from ctvlp.models.window_encoder import WindowEncoder, WindowEncoderSpec, build_window_encoder
from ctvlp.train.checkpoint import load_checkpoint, restore, save_checkpoint, set_aside_other_settings
from ctvlp.train.optim import warmup_cosine
from ctvlp.train.settings import Section
from ctvlp.train.step import autocast

LOSS_LOG = "loss.tsv"


@dataclass(frozen=True)
class PretrainSpec:
    """The ``pretrain:`` section of the config over the schema's defaults (see the schema for each key)."""

    steps: int
    batch_size: int
    lr: float
    min_lr_fraction: float
    weight_decay: float
    warmup_steps: int
    mask_ratio: float
    decoder_dim: int
    decoder_depth: int
    decoder_heads: int
    norm_pix_eps: float
    min_foreground: float
    checkpoint_every: int
    keep_checkpoints: int
    seed: int

    @classmethod
    def from_config(cls, config: dict) -> "PretrainSpec":
        section = Section(config, "pretrain")
        fields = [f for f in cls.__dataclass_fields__ if f != "seed"]
        return cls(**{f: section[f] for f in fields}, seed=int(config["seed"]))


class WindowSampler:
    """Random window-size crops of the cached volumes, reproducible per step.

    ``volumes``: cache files (the rule) or arrays (tests). A file is opened (memory-mapped) for one draw and
    released after it: holding every training volume mapped at once keeps one file descriptor per volume
    open, which stops near 10^5 volumes with "too many open files"; a draw reads only its crop either way.
    A crop is redrawn (up to a few times) while less than ``min_foreground`` of its voxels are above air
    (scaled value 0.03, about -940 HU): corners of the field of view teach nothing."""

    def __init__(self, volumes: Sequence[np.ndarray | str | Path], window: tuple[int, int, int], seed: int,
                 min_foreground: float = 0.1, tries: int = 4):
        usable = [v for v in volumes if all(s >= w for s, w in zip(self._shape(v), window))]
        if not usable:
            raise ValueError(f"no cached volume is as large as one window {tuple(window)}")
        self.volumes, self.window, self.seed = usable, tuple(window), seed
        self.min_foreground, self.tries = min_foreground, tries

    @staticmethod
    def _open(volume: np.ndarray | str | Path) -> np.ndarray:
        return volume if isinstance(volume, np.ndarray) else read_cached(volume)

    @classmethod
    def _shape(cls, volume: np.ndarray | str | Path) -> tuple[int, ...]:
        return tuple(cls._open(volume).shape)  # a file's header only; its mapping is released on return

    def batch(self, step: int, n: int) -> torch.Tensor:
        rng = np.random.default_rng([self.seed, step])
        out = np.empty((n, 1, *self.window), dtype=np.float32)
        for i in range(n):
            for _ in range(self.tries):
                vol = self._open(self.volumes[int(rng.integers(len(self.volumes)))])
                start = [int(rng.integers(s - w + 1)) for s, w in zip(vol.shape, self.window)]
                crop = np.array(vol[tuple(slice(a, a + w) for a, w in zip(start, self.window))])  # a copy: read now
                del vol  # the file's mapping (and its descriptor) goes with its last reference
                if (crop > 0.03).mean() >= self.min_foreground:
                    break
            out[i, 0] = crop
        return torch.from_numpy(out)


def _resume(directory: Path, pair: nn.Module, optimizer: torch.optim.Optimizer, settings: dict, log=None) -> int:
    """The step to continue from: 0 without a checkpoint, or when the checkpoints were made under other settings
    (set aside: another config must not silently continue an old run)."""
    set_aside_other_settings(directory, settings, log=log)
    found = load_checkpoint(directory)
    return 0 if found is None else restore(*found, pair, optimizer, None)


class _Pair(nn.Module):
    """Encoder and decoder under one state dict (one checkpoint, one optimizer)."""

    def __init__(self, encoder: WindowEncoder, decoder: MAEDecoder):
        super().__init__()
        self.encoder, self.decoder = encoder, decoder


def pretrain_window_encoder(encoder: WindowEncoder, sampler: WindowSampler, spec: PretrainSpec, run_dir: Path,
                            stop_after: int | None = None, progress: bool = True, log=None) -> list[dict]:
    """Train ``encoder`` in place with the masked-autoencoder loss for ``spec.steps`` steps, resuming from
    ``run_dir/checkpoints``; the loss log is ``run_dir/loss.tsv``. ``stop_after`` ends early (after that
    many steps in total) as a killed job would: the tests resume from there. Returns the loss rows."""
    run_dir = Path(run_dir)
    device = next(encoder.parameters()).device
    torch.manual_seed(spec.seed)
    s = encoder.spec
    decoder = MAEDecoder(s.dim, spec.decoder_dim, spec.decoder_depth, spec.decoder_heads,
                         int(np.prod(s.patch))).to(device)
    pair = _Pair(encoder.train().requires_grad_(True), decoder.train())
    no_decay = [p for n, p in pair.named_parameters() if p.ndim < 2 or n.endswith(("cls_token", "mask_token"))]
    decay = [p for n, p in pair.named_parameters() if not (p.ndim < 2 or n.endswith(("cls_token", "mask_token")))]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": spec.weight_decay},
                                   {"params": no_decay, "weight_decay": 0.0}], lr=spec.lr, betas=(0.9, 0.95))
    factor = warmup_cosine(spec.warmup_steps, spec.steps, spec.min_lr_fraction)
    settings = json.loads(json.dumps({"pretrain": asdict(spec), "encoder": asdict(s)}))  # as read back
    start = _resume(run_dir / "checkpoints", pair, optimizer, settings, log)
    rows = _read_log(run_dir / LOSS_LOG, start)
    if log is not None and start:
        log.info("resuming masked pretraining at step %d of %d", start, spec.steps)
    end = spec.steps if stop_after is None else min(spec.steps, stop_after)
    n_tokens = int(np.prod(s.grid))
    bar = tqdm(range(start, end), desc="pretrain window encoder", disable=not progress, initial=start, total=end)
    for step in bar:
        lr = spec.lr * factor(step)
        for group in optimizer.param_groups:
            group["lr"] = lr
        windows = sampler.batch(step, spec.batch_size).to(device)
        generator = torch.Generator().manual_seed(spec.seed * 1_000_003 + step)
        keep = random_keep(len(windows), n_tokens, spec.mask_ratio, generator)
        with autocast(device, True):  # bf16 on a GPU (ViT-L at batch 256 would not fit in float32); CPU: float32
            loss = mae_loss(encoder, decoder, windows, keep, spec.norm_pix_eps)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(pair.parameters(), 1.0)
        optimizer.step()
        value = float(loss.detach())
        rows.append({"step": step + 1, "loss": value, "lr": lr})
        bar.set_postfix(loss=f"{value:.4f}")
        if (step + 1) % spec.checkpoint_every == 0 or step + 1 == end:
            save_checkpoint(run_dir / "checkpoints", step + 1, pair.state_dict(), optimizer, None, {},
                            keep=spec.keep_checkpoints)
            _write_log(run_dir / LOSS_LOG, rows)
            if log is not None:
                log.info("step %d/%d loss %.4f lr %.2e", step + 1, spec.steps, value, lr)
    encoder.eval().requires_grad_(False)
    return rows


def _read_log(path: Path, upto: int) -> list[dict]:
    """The loss rows up to the resumed step (rows after it are rewritten by the resumed run)."""
    if not path.exists() or upto == 0:
        return []
    rows = []
    for line in path.read_text().splitlines()[1:]:
        step, loss, lr = line.split("\t")
        if int(step) <= upto:
            rows.append({"step": int(step), "loss": float(loss), "lr": float(lr)})
    return rows


def _write_log(path: Path, rows: list[dict]) -> None:
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    tmp.write_text("step\tloss\tlr\n" + "".join(f"{r['step']}\t{r['loss']:.6f}\t{r['lr']:.6e}\n" for r in rows))
    os.replace(tmp, path)


def save_encoder(encoder: WindowEncoder, path: str | Path) -> None:
    """The encoder's tensors under SPECTRE's backbone names (what ``build_window_encoder`` loads strictly)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_tensors(dict(encoder.state_dict()), path)


def training_volumes(volumes, datasets: list[str]) -> list[str]:
    """Volume ids the stage may learn from: accepted volumes of the training split of the training
    datasets (never dev or test: their windows would leak into the evaluation's encoder)."""
    keep = (volumes.status == "ok") & (volumes.split == "train") & volumes.dataset.isin(list(datasets))
    return sorted(volumes[keep].volume_id)


def pretrain_from_cache(config: dict, volume_ids: list[str], cache_dir: str | Path, run_dir: str | Path,
                        out_path: str | Path, log=None) -> dict:
    """The rule's work: a seeded random-init window encoder of the configured architecture, pretrained on
    crops of the cached volumes (each file opened for its draw only: only the crops are read), written to
    ``out_path``."""
    if not volume_ids:
        raise ValueError("pretrain: no accepted training volume to pretrain the window encoder on")
    spec = PretrainSpec.from_config(config)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    arch = WindowEncoderSpec.from_config({**config, "pretrain": {"enabled": False}})
    encoder = build_window_encoder(arch, int(config["seed"])).to(device)
    volumes = [cache_file(cache_dir, v) for v in volume_ids]
    sampler = WindowSampler(volumes, arch.window, spec.seed, spec.min_foreground)
    rows = pretrain_window_encoder(encoder, sampler, spec, Path(run_dir), log=log)
    save_encoder(encoder, out_path)
    return {"volumes": len(sampler.volumes), "steps": spec.steps, "windows_seen": spec.steps * spec.batch_size,
            "first_loss": rows[0]["loss"], "last_loss": rows[-1]["loss"], "device": str(device)}
