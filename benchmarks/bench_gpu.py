"""GPU readiness at the paper's dims, printed, not asserted:

1. window-feature extraction: SPECTRE ViT-L (1080-d, 24 layers, 12 heads) on 128x128x32 windows with the
   folded 16x16x4 patch kernel, bf16 autocast, as the ``window_features`` rule runs it -> windows/s and MFU;
2. the trainer's own step (``ctvlp.train.step.GradCacheStep``, built by ``ctvlp.train.trainer.Trainer`` from the
   paper preset): micro-batches of 16, both gradient-caching phases (two micro-batches per step by default),
   1,024-token report texts with an attention mask (lengths vary; the longest are truncated), scans of 4 x 4 x
   4..10 windows (up to 1,280 depth tokens), a random Qwen3-Embedding-0.6B-sized tower saved in bf16 as the
   published files are, LoRA r 16 on q/k/v/o with text-tower checkpointing, the four SigLIP heads, the SigLIP,
   prompt and localisation losses, AdamW -> pairs/s, peak memory and MFU;
3. with ``--train-steps N --batch B`` (make gpu-check: 3 steps over 4,096 pairs): ``Trainer.fit`` for N optimiser
   steps of gradient caching over B pairs per step -> seconds per step and peak memory.

Model FLOPs (for MFU) are counted by ``torch.utils.flop_counter`` on one forward and backward of every job of a
step with text-tower checkpointing off: neither the checkpoint recompute nor gradient caching's gradient-free
first pass (also a recompute) counts. MFU = model FLOPs / step time / the GPU's peak dense bf16 FLOP/s, looked up
by the exact device name (``PEAK_BF16_TFLOPS``) or given with --peak-tflops; an unknown name prints no MFU.
Without a GPU the script runs the same code at tiny dims on the CPU (no MFU): it shows the benchmark works.

Usage: python benchmarks/bench_gpu.py [--tiny | --paper] [--batch-windows N] [--pairs N] [--steps N]
                                      [--train-steps N --batch B] [--peak-tflops T]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from ctvlp.cli import merged_config
from ctvlp.core.label_set import CTRATE_LABELS
from ctvlp.features.window import volume_tokens
from ctvlp.models.window_encoder import WindowEncoder, WindowEncoderSpec
from ctvlp.train.ablations import apply_overrides
from ctvlp.train.data import FeatureSet, Sample
from ctvlp.train.step import enable_text_checkpointing
from ctvlp.train.trainer import Trainer

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
from hf_folders import QWEN3_EMBEDDING_06B, TINY_QWEN3, tiny_qwen3_folder  # noqa: E402

# Peak dense (no sparsity) bf16 tensor TFLOP/s per exact torch.cuda.get_device_name(), from NVIDIA's data sheets.
# Exact names: "H100" alone matches three products of 756 to 989 TFLOP/s.
PEAK_BF16_TFLOPS = {
    "NVIDIA H100 80GB HBM3": 989.4,     # H100 SXM5
    "NVIDIA H100 SXM5 80GB": 989.4,
    "NVIDIA H100 PCIe": 756.0,
    "NVIDIA H100 NVL": 835.0,
    "NVIDIA H200": 989.4,               # H200 SXM
    "NVIDIA H200 NVL": 835.0,
    "NVIDIA A100-SXM4-80GB": 312.0,
    "NVIDIA A100-SXM4-40GB": 312.0,
    "NVIDIA A100 80GB PCIe": 312.0,
    "NVIDIA A100-PCIE-40GB": 312.0,
    "NVIDIA L40S": 362.1,
}

WINDOWS = {"paper": {"window": (128, 128, 32), "patch": (16, 16, 4), "dim": 1080, "depth": 24, "heads": 12},
           "tiny": {"window": (32, 32, 8), "patch": (8, 8, 2), "dim": 48, "depth": 2, "heads": 4}}
# The paper preset at toy size (the same code paths): 48-d, 12-d heads (padded to 16 in attention).
TINY_OVERRIDES = {"model.window_encoder.dim": 48, "model.window_encoder.depth": 2, "model.window_encoder.heads": 4,
                  "model.scan_encoder.dim": 48, "model.scan_encoder.depth": 2, "model.scan_encoder.heads": 4,
                  "model.heads.hidden_dim": 64, "model.heads.bottleneck_dim": 16, "model.embed_dim": 32,
                  "model.text_encoder.max_tokens": 32, "preprocess.window_voxels": [32, 32, 8],
                  "model.window_encoder.patch_voxels": [8, 8, 2], "train.prompt_batch": 16}
GRIDS = {"paper": ((4, 4), (4, 10)), "tiny": ((2, 2), (2, 4))}  # in-plane windows, range of windows in depth


def peak_flops(device: torch.device, override: float | None) -> tuple[str, float | None]:
    """(device name, peak dense bf16 FLOP/s or None): --peak-tflops, else the exact-name table."""
    if device.type != "cuda":
        return "cpu", None
    name = torch.cuda.get_device_name(device)
    if override:
        return name, override * 1e12
    value = PEAK_BF16_TFLOPS.get(name)
    return name, None if value is None else value * 1e12


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device, steps: int) -> float:
    fn()  # warm-up (kernels, allocator)
    sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        fn()
    sync(device)
    return (time.perf_counter() - start) / steps


def bench_windows(p: dict, device, batch: int, steps: int) -> tuple[float, float]:
    """(windows/s, FLOPs per window) of frozen feature extraction under bf16 autocast."""
    spec = WindowEncoderSpec(p["window"], p["patch"], p["dim"], p["depth"], p["heads"])
    model = WindowEncoder(spec).to(device).eval().requires_grad_(False)
    x = torch.rand(batch, 1, *p["window"], device=device)

    @torch.no_grad()
    def run():
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            return model(x)

    seconds = timed(run, device, steps)
    counter = FlopCounterMode(display=False)
    with counter:
        run()
    return batch / seconds, counter.get_total_flops() / batch


class SyntheticFeatures(FeatureSet):
    """Window features of synthetic scans in the feature files' layout and precision (float16 values), made
    from the volume id: rows of a fixed random pool, so a worker or a resumed loader reads the same tokens."""

    def __init__(self, dim: int, depth_per_window: int, grids: dict[str, tuple[int, int, int]], pool: int = 4096):
        self.feature_dir, self.keep, self._cache = Path("<synthetic>"), False, {}
        g = torch.Generator().manual_seed(0)
        self.pool = torch.randn(pool, dim, generator=g).half().float()
        self.gz, self.grids = depth_per_window, grids

    def tokens(self, volume_id: str) -> dict[str, torch.Tensor]:
        nx, ny, nz = self.grids[volume_id]
        g = torch.Generator().manual_seed(int(volume_id[1:], 16))
        rows = lambda *shape: self.pool[torch.randint(len(self.pool), shape, generator=g)]  # noqa: E731
        return volume_tokens({"cls": rows(nx, ny, nz), "mean": rows(nx, ny, nz), "depth": rows(nx, ny, nz, self.gz)})


def synthetic_samples(n_train: int, n_dev: int, text_words: int, size: str, depth_per_window: int, seed: int = 0):
    """Samples with report texts of ``text_words // 2`` .. ``text_words + 64`` words (the longest truncated to
    the tower's max_tokens, the rest padded and masked), two sentences each with a depth bin, random labels;
    and each volume's window grid."""
    rng = np.random.default_rng(seed)
    (nx, ny), (lo, hi) = GRIDS[size]
    samples, grids = [], {}
    for i in range(n_train + n_dev):
        vid = f"V{i:08x}"
        grids[vid] = (nx, ny, int(rng.integers(lo, hi + 1)))
        words = rng.integers(0, 64, int(rng.integers(text_words // 2, text_words + 65)))
        text = " ".join(f"w{k}" for k in words)
        bins = grids[vid][2] * depth_per_window
        snippets = [(" ".join(f"w{k}" for k in rng.integers(0, 64, 8)), int(rng.integers(bins))) for _ in range(2)]
        samples.append(Sample(vid, "train" if i < n_train else "dev", "hospital", f"P{i}", text,
                              rng.integers(-1, 2, len(CTRATE_LABELS)), snippets, f"C{i}"))
    return samples, grids


PROMPTS = {"positive": [[f"w{i} present", f"there is w{i}"] for i in range(len(CTRATE_LABELS))],
           "negative": [[f"no w{i}", f"w{i} absent"] for i in range(len(CTRATE_LABELS))]}


def paper_trainer(size: str, device: torch.device, tower: Path, run_dir: Path, batch: int, micro: int,
                  n_train: int, epochs: int = 1) -> Trainer:
    """The trainer of the paper preset (config.yaml + paper.yaml) on synthetic features and texts: every paper
    switch as configured, except the paths (a random tower, no imported weights) and the batch sizes."""
    config = merged_config([REPO / "config" / "config.yaml", REPO / "config" / "paper.yaml"])
    overrides = {"model.weights_dir": None, "model.text_encoder.path": str(tower), "pretrain.enabled": False,
                 "train.batch_size": batch, "train.micro_batch": micro, "train.epochs": epochs,
                 "train.datasets": ["hospital"], "train.checkpoint_every": 10 ** 6, "compute.train_gpus": 1,
                 "train.loader_workers": 8 if device.type == "cuda" else 0}
    config = apply_overrides(config, {**overrides, **(TINY_OVERRIDES if size == "tiny" else {})})
    text_words = int(config["model"]["text_encoder"]["max_tokens"])
    w = config["model"]["window_encoder"]
    gz = config["preprocess"]["window_voxels"][2] // w["patch_voxels"][2]
    samples, grids = synthetic_samples(n_train, 16, text_words, size, gz)
    features = SyntheticFeatures(w["dim"], gz, grids)
    return Trainer(config, run_dir, samples, features, PROMPTS, device)


def model_flops(trainer: Trainer, micro: list[dict]) -> float:
    """FLOPs of one forward and backward of every job of a step (prompt chunks, micro-batches) with text-tower
    checkpointing off: the work the model needs, without what checkpointing and caching recompute."""
    checkpointing = trainer.cfg.text_checkpointing
    if checkpointing:
        tower = trainer.model.text.model  # (the name in transformers >= 5.2x, as enable_text_checkpointing)
        if hasattr(tower, "activation_checkpointing_disable"):
            tower.activation_checkpointing_disable()
        else:
            tower.gradient_checkpointing_disable()
    counter = FlopCounterMode(display=False)
    try:
        jobs, *_ = trainer._step.jobs(0, micro)
        with counter:
            for job in jobs:
                out = job()
                torch.stack([v.float().sum() for v in out.values()
                             if torch.is_tensor(v) and v.is_floating_point() and v.requires_grad]).sum().backward()
    finally:
        trainer.optimizer.zero_grad(set_to_none=True)
        if checkpointing:
            enable_text_checkpointing(trainer.model)
    return float(counter.get_total_flops())


def bench_train_step(size: str, device, tower: Path, pairs: int, micro: int, steps: int,
                     peak: float | None) -> str:
    """The trainer's own step over ``pairs`` pairs in micro-batches of ``micro``: pairs/s, memory, MFU."""
    with tempfile.TemporaryDirectory() as tmp:
        trainer = paper_trainer(size, device, tower, Path(tmp), pairs, micro, n_train=pairs)
        loader = iter(trainer._loader(0, 0))
        batch = [next(loader) for _ in range(trainer.plan.micro_per_rank)]
        flops = model_flops(trainer, batch)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        seconds = timed(lambda: trainer._step(0, batch), device, steps)
        text = int(trainer.config["model"]["text_encoder"]["max_tokens"])
        line = (f"training step: {pairs / seconds:.2f} pairs/s ({seconds:.2f} s/step; {pairs} pairs in "
                f"{len(batch)} micro-batches of {micro}, both caching phases; texts up to {text} tokens, masked), "
                f"{flops / pairs / 1e9:.4g} model GFLOP/pair")
        if peak:
            line += f", MFU {100 * flops / seconds / peak:.1f} %"
        if device.type == "cuda":
            line += f"; peak GPU memory {torch.cuda.max_memory_allocated(device) / 2 ** 30:.1f} GiB"
        return line


def train_steps(size: str, device, tower: Path, steps: int, batch: int, micro: int) -> str:
    """``Trainer.fit`` for ``steps`` optimiser steps of gradient caching over ``batch`` pairs each."""
    with tempfile.TemporaryDirectory() as tmp:
        trainer = paper_trainer(size, device, tower, Path(tmp), batch, micro, n_train=steps * batch)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        start = time.perf_counter()
        trainer.fit(stop_after=steps)
        total = time.perf_counter() - start
        log = (Path(tmp) / "train_log.csv").read_text().splitlines()
        header = log[0].split(",")
        rows = [dict(zip(header, line.split(","))) for line in log[1:]]
        per_step = ", ".join(f"{float(r['seconds']):.1f}" for r in rows)
        losses = ", ".join(f"{float(r['contrastive']):.3f}" for r in rows)
        line = (f"paper training: {len(rows)} optimiser steps of {batch} pairs (micro-batch {micro}, "
                f"{trainer.plan.micro_per_rank} passes per step): s/step {per_step}; contrastive loss {losses}; "
                f"{total:.0f} s with the dev pass and checkpoint")
        if device.type == "cuda":
            line += f"; peak GPU memory {torch.cuda.max_memory_allocated(device) / 2 ** 30:.1f} GiB"
        return line


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tiny", action="store_true", help="tiny dims even on a GPU (a smoke run)")
    ap.add_argument("--paper", action="store_true", help="paper dims even without a GPU (slow; a shape check)")
    ap.add_argument("--batch-windows", type=int, default=None, help="windows per forward (paper dims: 64)")
    ap.add_argument("--pairs", type=int, default=None, help="pairs per timed step (default: 2 micro-batches)")
    ap.add_argument("--micro", type=int, default=None, help="micro-batch (paper: 16; tiny: 2)")
    ap.add_argument("--steps", type=int, default=None, help="timed repetitions (after one warm-up)")
    ap.add_argument("--train-steps", type=int, default=0, help="instead: Trainer.fit for this many steps")
    ap.add_argument("--batch", type=int, default=4096, help="pairs per optimiser step with --train-steps")
    ap.add_argument("--skip-windows", action="store_true", help="leave out the window-feature benchmark")
    ap.add_argument("--peak-tflops", type=float, default=None, help="the GPU's peak dense bf16 TFLOP/s")
    args = ap.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    size = "tiny" if args.tiny or (device.type != "cuda" and not args.paper) else "paper"
    steps = args.steps or (2 if size == "tiny" else 5)
    micro = args.micro or (2 if size == "tiny" else 16)
    torch.manual_seed(0)
    name, peak = peak_flops(device, args.peak_tflops)
    label = "TINY dims (no GPU: shows the benchmark runs; no MFU)" if size == "tiny" else "paper dims"
    known = f"{peak / 1e12:.0f} TFLOP/s" if peak else "unknown (pass --peak-tflops for MFU)"
    print(f"device: {name}; peak dense bf16: {known}; {label}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        tower = tiny_qwen3_folder(Path(tmp) / "qwen3", arch=TINY_QWEN3 if size == "tiny" else QWEN3_EMBEDDING_06B)
        print(f"text tower: random Qwen3 ({'tiny' if size == 'tiny' else 'Qwen3-Embedding-0.6B dims'}) saved in "
              f"bf16 in {time.perf_counter() - start:.0f} s", flush=True)
        if args.train_steps:
            print(train_steps(size, device, tower, args.train_steps, args.batch, micro), flush=True)
            return
        if not args.skip_windows:
            p = WINDOWS[size]
            batch = args.batch_windows or (4 if size == "tiny" else 64)
            rate, flops = bench_windows(p, device, batch, steps)
            mfu = f", MFU {100 * rate * flops / peak:.1f} %" if peak else ""
            print(f"window features: {rate:.1f} windows/s ({p['window']} voxels, patch {p['patch']}, ViT {p['dim']}-d x "
                  f"{p['depth']}, batch {batch}), {flops / 1e9:.3g} GFLOP/window{mfu}", flush=True)
        print(bench_train_step(size, device, tower, args.pairs or 2 * micro, micro, steps, peak), flush=True)


if __name__ == "__main__":
    main()
