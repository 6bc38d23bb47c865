"""Self-supervised pretraining of the window encoder (rule ``pretrain_window_encoder``): masked autoencoding.

Why: the method freezes a pretrained window encoder (SPECTRE's). A site that cannot use SPECTRE's
non-commercial weights, or works on another body region or resolution, pretrains its own on its cached
training volumes, with no labels and no reports. A random encoder's mean-pooled tokens carry only large
findings; small ones (a port is a few of the ~300,000 voxels of a demo scan) need learned features.

Why masked autoencoding (MAE, He et al. 2022) rather than self-distillation: it needs one view per window
and runs the encoder on the visible quarter of the tokens only, so enough steps fit on a few CPU cores;
and to rebuild a masked patch from its neighbours, every visible token must describe its own content,
a lesion included, which is what the pooled tokens should keep. Targets are the voxels of each masked
patch normalised by the patch's own mean and spread (``norm_pix_eps`` keeps noise-only patches, whose
spread is the scanner noise, from dominating the loss). The decoder (a few SPECTRE blocks with the same
3D RoPE over the full token grid) is thrown away; only the encoder's weights are written, as safetensors
that ``build_window_encoder`` loads (``WindowEncoderSpec.pretrained``).

Training windows are random crops of window size from the cached volumes (not only the grid-aligned
windows the features use), drawn from a generator seeded by (seed, step), and the mask likewise: a run
resumed from a checkpoint draws exactly what the uninterrupted run would have, so it ends with the same
weights.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file
from torch import nn
from tqdm.auto import tqdm

from ctvlp.models.rope import AxialRope3D, grid_index, normalized_coords
from ctvlp.models.vit_blocks import LN_EPS, Block, init_like_spectre
from ctvlp.models.window_encoder import ROPE_BASE, WindowEncoder
from ctvlp.core.state_dict import save_tensors

LOSS_LOG = "loss.tsv"


@dataclass(frozen=True)
class PretrainSpec:
    """The ``pretrain:`` section of the config (see the schema for what each key means)."""

    steps: int = 600
    batch_size: int = 64
    lr: float = 1.5e-3
    min_lr_fraction: float = 0.05
    weight_decay: float = 0.05
    warmup_steps: int = 40
    mask_ratio: float = 0.75
    decoder_dim: int = 96
    decoder_depth: int = 1
    decoder_heads: int = 4
    norm_pix_eps: float = 1e-4
    min_foreground: float = 0.1
    checkpoint_every: int = 100
    keep_checkpoints: int = 2
    seed: int = 0

    @classmethod
    def from_config(cls, config: dict) -> "PretrainSpec":
        section = dict(config.get("pretrain") or {})
        section.pop("enabled", None)
        section.pop("method", None)
        section.setdefault("seed", int(config.get("seed", 0)))
        return cls(**section)


def patchify(windows: torch.Tensor, patch: tuple[int, int, int]) -> torch.Tensor:
    """(B, 1, X, Y, Z) -> (B, N, px*py*pz) in the patch embedding's token order ((H, W, D) raster, D fastest)."""
    b, _, x, y, z = windows.shape
    px, py, pz = patch
    v = windows.reshape(b, x // px, px, y // py, py, z // pz, pz).permute(0, 1, 3, 5, 2, 4, 6)
    return v.reshape(b, (x // px) * (y // py) * (z // pz), px * py * pz)


class MAEDecoder(nn.Module):
    """Encoder tokens -> voxels of every patch: projection, mask token at the masked positions, SPECTRE
    blocks with 3D RoPE over the full grid, linear prediction of each patch's voxels."""

    def __init__(self, enc_dim: int, dim: int, depth: int, heads: int, patch_voxels: int):
        super().__init__()
        self.embed = nn.Linear(enc_dim, dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.rope = AxialRope3D(dim // heads, ROPE_BASE)
        self.blocks = nn.ModuleList(Block(dim, heads) for _ in range(depth))
        self.norm = nn.LayerNorm(dim, eps=LN_EPS)
        self.pred = nn.Linear(dim, patch_voxels)
        init_like_spectre(self)
        nn.init.normal_(self.mask_token, std=0.02)

    def forward(self, encoded: torch.Tensor, keep: torch.Tensor, n_tokens: int, coords: torch.Tensor) -> torch.Tensor:
        """encoded (B, 1 + k, enc_dim) [CLS; visible]; keep (B, k) visible indices; coords (N, 3) -> (B, N, voxels)."""
        x = self.embed(encoded)
        b, dim = len(x), x.shape[-1]
        full = self.mask_token.expand(b, n_tokens, dim).to(x.dtype).clone()
        full.scatter_(1, keep[..., None].expand(-1, -1, dim), x[:, 1:])
        x = torch.cat([x[:, :1], full], dim=1)
        rope = self.rope(coords)
        for block in self.blocks:
            x = block(x, rope)
        return self.pred(self.norm(x)[:, 1:])


def random_keep(batch: int, n_tokens: int, mask_ratio: float, generator: torch.Generator) -> torch.Tensor:
    """(B, k) sorted indices of the visible tokens, k = round(N (1 - ratio)), one random subset per window."""
    k = max(1, int(round(n_tokens * (1.0 - mask_ratio))))
    noise = torch.rand(batch, n_tokens, generator=generator)
    return noise.argsort(dim=1)[:, :k].sort(dim=1).values


def mae_loss(encoder: WindowEncoder, decoder: MAEDecoder, windows: torch.Tensor, keep: torch.Tensor,
             norm_pix_eps: float) -> torch.Tensor:
    """Mean squared error on the masked patches, targets normalised per patch."""
    spec = encoder.spec
    grid = spec.grid
    coords = normalized_coords(grid_index(grid, windows.device), torch.tensor(grid, device=windows.device))
    tokens = encoder.patch_embed(windows)
    keep = keep.to(windows.device)
    dim = tokens.shape[-1]
    visible = tokens.gather(1, keep[..., None].expand(-1, -1, dim))
    encoded = encoder.encode_tokens(visible, coords[keep])
    pred = decoder(encoded, keep, tokens.shape[1], coords)
    target = patchify(windows, spec.patch)
    mean, var = target.mean(-1, keepdim=True), target.var(-1, keepdim=True)
    target = (target - mean) / (var + norm_pix_eps).sqrt()
    masked = torch.ones(tokens.shape[:2], dtype=torch.bool, device=windows.device)
    masked.scatter_(1, keep, False)
    err = ((pred - target) ** 2).mean(-1)
    return (err * masked).sum() / masked.sum()


class WindowSampler:
    """Random window-size crops of the cached volumes, reproducible per step.

    A crop is redrawn (up to a few times) while less than ``min_foreground`` of its voxels are above air
    (scaled value 0.03, about -940 HU): corners of the field of view teach nothing."""

    def __init__(self, volumes: list[np.ndarray], window: tuple[int, int, int], seed: int,
                 min_foreground: float = 0.1, tries: int = 4):
        usable = [v for v in volumes if all(s >= w for s, w in zip(v.shape, window))]
        if not usable:
            raise ValueError(f"no cached volume is as large as one window {tuple(window)}")
        self.volumes, self.window, self.seed = usable, tuple(window), seed
        self.min_foreground, self.tries = min_foreground, tries

    def batch(self, step: int, n: int) -> torch.Tensor:
        rng = np.random.default_rng([self.seed, step])
        out = np.empty((n, 1, *self.window), dtype=np.float32)
        for i in range(n):
            for _ in range(self.tries):
                vol = self.volumes[int(rng.integers(len(self.volumes)))]
                start = [int(rng.integers(s - w + 1)) for s, w in zip(vol.shape, self.window)]
                crop = vol[tuple(slice(a, a + w) for a, w in zip(start, self.window))]
                if (np.asarray(crop) > 0.03).mean() >= self.min_foreground:
                    break
            out[i, 0] = crop
        return torch.from_numpy(out)


def _schedule(spec: PretrainSpec) -> Callable[[int], float]:
    def factor(step: int) -> float:
        if step < spec.warmup_steps:
            return (step + 1) / spec.warmup_steps
        t = (step - spec.warmup_steps) / max(1, spec.steps - spec.warmup_steps)
        return spec.min_lr_fraction + (1 - spec.min_lr_fraction) * 0.5 * (1 + math.cos(math.pi * min(t, 1.0)))

    return factor


def _save_checkpoint(directory: Path, step: int, model: nn.Module, optimizer: torch.optim.Optimizer,
                     keep: int, fingerprint: dict) -> None:
    """Parameters and AdamW moments in safetensors, step and param groups in JSON; ``latest.json`` last."""
    directory.mkdir(parents=True, exist_ok=True)
    opt = optimizer.state_dict()
    tensors = {f"model/{k}": v for k, v in model.state_dict().items()}
    for idx, state in opt["state"].items():
        for key, value in state.items():
            tensors[f"optim/{idx}/{key}"] = torch.as_tensor(value)
    name = f"ckpt-{step:07d}"
    save_tensors(tensors, directory / f"{name}.safetensors")
    (directory / f"{name}.json").write_text(json.dumps({"step": step, "param_groups": opt["param_groups"],
                                                         "fingerprint": fingerprint}))
    tmp = directory / f"latest.json.tmp{os.getpid()}"
    tmp.write_text(json.dumps({"name": name, "step": step}))
    os.replace(tmp, directory / "latest.json")
    names = sorted(p.stem for p in directory.glob("ckpt-*.json"))
    for old in names[: max(len(names) - max(keep, 1), 0)]:
        for suffix in (".safetensors", ".json"):
            (directory / f"{old}{suffix}").unlink(missing_ok=True)


def _restore(directory: Path, model: nn.Module, optimizer: torch.optim.Optimizer, fingerprint: dict, log=None) -> int:
    """The step to continue from: 0 without a checkpoint, or when it was made under other settings
    (another config must not silently continue an old run)."""
    pointer = directory / "latest.json"
    if not pointer.exists():
        return 0
    name = json.loads(pointer.read_text())["name"]
    meta = json.loads((directory / f"{name}.json").read_text())
    if meta.get("fingerprint") != fingerprint:
        if log is not None:
            log.info("checkpoint %s was made with other pretraining settings: starting afresh", name)
        return 0
    tensors = load_file(str(directory / f"{name}.safetensors"))
    model.load_state_dict({k[len("model/"):]: v for k, v in tensors.items() if k.startswith("model/")})
    state: dict[int, dict] = {}
    for key, value in tensors.items():
        if key.startswith("optim/"):
            _, idx, field = key.split("/", 2)
            state.setdefault(int(idx), {})[field] = value
    optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
    return int(meta["step"])


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
    factor = _schedule(spec)
    fingerprint = json.loads(json.dumps({"pretrain": asdict(spec), "encoder": asdict(s)}))  # as read back
    start = _restore(run_dir / "checkpoints", pair, optimizer, fingerprint, log)
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
        loss = mae_loss(encoder, decoder, windows, keep, spec.norm_pix_eps)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(pair.parameters(), 1.0)
        optimizer.step()
        value = float(loss.detach())
        rows.append({"step": step + 1, "loss": value, "lr": lr})
        bar.set_postfix(loss=f"{value:.4f}")
        if (step + 1) % spec.checkpoint_every == 0 or step + 1 == end:
            _save_checkpoint(run_dir / "checkpoints", step + 1, pair, optimizer, spec.keep_checkpoints,
                             fingerprint)
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
    crops of the cached volumes (memory-mapped: only the crops are read), written to ``out_path``."""
    from ctvlp.models.window_encoder import WindowEncoderSpec, build_window_encoder
    from ctvlp.features.cache import cache_file, read_cached

    if not volume_ids:
        raise ValueError("pretrain: no accepted training volume to pretrain the window encoder on")
    spec = PretrainSpec.from_config(config)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    arch = WindowEncoderSpec.from_config({**config, "pretrain": {"enabled": False}})
    encoder = build_window_encoder(arch, int(config["seed"])).to(device)
    volumes = [read_cached(cache_file(cache_dir, v)) for v in volume_ids]
    sampler = WindowSampler(volumes, arch.window, spec.seed, spec.min_foreground)
    rows = pretrain_window_encoder(encoder, sampler, spec, Path(run_dir), log=log)
    save_encoder(encoder, out_path)
    return {"volumes": len(sampler.volumes), "steps": spec.steps, "windows_seen": spec.steps * spec.batch_size,
            "first_loss": rows[0]["loss"], "last_loss": rows[-1]["loss"], "device": str(device)}
