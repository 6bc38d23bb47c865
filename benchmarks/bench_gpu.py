"""GPU readiness at the paper's dims, printed, not asserted:

1. window-feature extraction: SPECTRE ViT-L (1080-d, 24 layers, 12 heads) on 128x128x32 windows with the
   folded 16x16x4 patch kernel, bf16 autocast, as the ``window_features`` rule runs it -> windows/s and MFU;
2. one training step: the feature combiner (1080-d, 4 layers) over a scan's window grid and its depth path,
   a Qwen3-Embedding-0.6B-sized random text tower with LoRA r 16 on q/k/v/o (gradient checkpointing), the
   four SigLIP heads and the SigLIP + localization losses, bf16 autocast, AdamW -> pairs/s and MFU.

FLOPs are counted by ``torch.utils.flop_counter`` on one call (matmuls and attention, forward and backward),
MFU = counted FLOPs / time / the GPU's peak dense bf16 FLOP/s (printed; override with --peak-tflops).
Without a GPU the script runs the same code at tiny dims on the CPU (no MFU; the CPU attention kernel is not
counted): it shows the benchmark works.

Usage: python benchmarks/bench_gpu.py [--tiny | --paper] [--batch-windows N] [--pairs N] [--steps N] [--peak-tflops T]
"""

from __future__ import annotations

import argparse
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from ctvlp.losses import LogitScale
from ctvlp.losses.contrastive import siglip_loss
from ctvlp.losses.localization import localization_loss
from ctvlp.models.combiner import CombinerSpec, FeatureCombiner
from ctvlp.models.heads import SigLIPHead
from ctvlp.models.rope import grid_index
from ctvlp.models.text_encoder import TextTower, add_lora
from ctvlp.models.window_encoder import WindowEncoder, WindowEncoderSpec

# Peak dense bf16 tensor FLOP/s (vendor data sheets, without sparsity)
PEAK_BF16 = {"H200": 989e12, "H100": 989e12, "A100": 312e12, "L40S": 362e12, "A40": 150e12, "L4": 121e12,
             "RTX 6000 Ada": 364e12, "A6000": 155e12, "V100": 125e12}

PAPER = {"window": (128, 128, 32), "patch": (16, 16, 4), "dim": 1080, "depth": 24, "heads": 12,
         "comb_depth": 4, "grid": (4, 4, 6), "text": dict(vocab_size=151669, hidden_size=1024, intermediate_size=3072,
                                                         num_hidden_layers=28, num_attention_heads=16,
                                                         num_key_value_heads=8, head_dim=128),
         "text_len": 256, "lora_r": 16, "head_hidden": 2048, "head_bottleneck": 256, "embed": 512}
TINY = {"window": (32, 32, 8), "patch": (8, 8, 2), "dim": 48, "depth": 2, "heads": 4, "comb_depth": 2,
        "grid": (2, 2, 3), "text": dict(vocab_size=300, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                                        num_attention_heads=4, num_key_value_heads=2, head_dim=16),
        "text_len": 32, "lora_r": 4, "head_hidden": 64, "head_bottleneck": 16, "embed": 32}


def peak_flops(device: torch.device, override: float | None) -> tuple[str, float | None]:
    if device.type != "cuda":
        return "cpu", None
    name = torch.cuda.get_device_name(device)
    if override:
        return name, override * 1e12
    for key, value in PEAK_BF16.items():
        if key in name:
            return name, value
    return name, None


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


def counted_flops(fn) -> float:
    counter = FlopCounterMode(display=False)
    with counter:
        fn()
    return float(counter.get_total_flops())


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
    return batch / seconds, counted_flops(run) / batch


def bench_train_step(p: dict, device, pairs: int, steps: int) -> tuple[float, float]:
    """(pairs/s, FLOPs per pair) of one optimisation step of the trainable parts."""
    from transformers import Qwen3Config, Qwen3Model

    dim = p["dim"]
    combiner = FeatureCombiner(CombinerSpec(dim, dim, p["comb_depth"], p["heads"], 2.0))
    text_model = Qwen3Model(Qwen3Config(**p["text"]))
    text_model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    text_model.enable_input_require_grads()
    text = TextTower(add_lora(text_model, p["lora_r"], 4 * p["lora_r"], 0.05,
                              ["q_proj", "k_proj", "v_proj", "o_proj"]), "last_token")
    hidden = p["text"]["hidden_size"]
    heads = torch.nn.ModuleDict({name: SigLIPHead(width, p["head_hidden"], p["head_bottleneck"], p["embed"])
                                 for name, width in (("image", 2 * dim), ("text", hidden), ("image_copy", 2 * dim),
                                                     ("text_copy", hidden))})
    scale = LogitScale(2.302585, -10.0)
    parts = torch.nn.ModuleList([combiner, text, heads, scale]).to(device).train()
    params = [q for q in parts.parameters() if q.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=2e-4, betas=(0.9, 0.95), weight_decay=1e-4)

    gx, gy, gz = p["grid"]
    bins = gz * p["window"][2] // p["patch"][2]
    n_scan, n_depth = gx * gy * gz, gx * gy * bins
    scan_tokens = torch.randn(pairs, n_scan, 2 * dim, device=device)
    depth_tokens = torch.randn(pairs, n_depth, dim, device=device)
    scan_index = grid_index((gx, gy, gz), device)[None].expand(pairs, -1, -1)
    depth_index = grid_index((gx, gy, bins), device)[None].expand(pairs, -1, -1)
    grid = torch.tensor([p["grid"]] * pairs, device=device)
    scan_mask = torch.ones(pairs, n_scan, dtype=torch.bool, device=device)
    depth_mask = torch.ones(pairs, n_depth, dtype=torch.bool, device=device)
    ids = torch.randint(0, p["text"]["vocab_size"], (pairs, p["text_len"]), device=device)
    attention = torch.ones_like(ids)
    snippet_ids = ids[:, :16]
    target = torch.randint(0, bins, (pairs,), device=device)
    n_bins = torch.full((pairs,), bins, device=device)

    def step():
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            scan_feat = combiner.scan(scan_tokens, scan_index, grid, scan_mask)
            depth = heads["image_copy"](combiner.depth(depth_tokens, depth_index, grid, depth_mask, bins))
            report = heads["text"](text(ids, attention))
            snippets = heads["text_copy"](text(snippet_ids, torch.ones_like(snippet_ids)))
            loss = siglip_loss(heads["image"](scan_feat), report, scale)
            loss = loss + localization_loss(snippets, depth, target, n_bins, 0.1, 2.0)
        loss.float().backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()

    seconds = timed(step, device, steps)
    return pairs / seconds, counted_flops(step) / pairs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tiny", action="store_true", help="tiny dims even on a GPU (a smoke run)")
    ap.add_argument("--paper", action="store_true", help="paper dims even without a GPU (slow; a shape check)")
    ap.add_argument("--batch-windows", type=int, default=None, help="windows per forward (paper dims: 64)")
    ap.add_argument("--pairs", type=int, default=None, help="pairs per training step (paper dims: 32)")
    ap.add_argument("--steps", type=int, default=None, help="timed repetitions (after one warm-up)")
    ap.add_argument("--peak-tflops", type=float, default=None, help="the GPU's peak dense bf16 TFLOP/s")
    args = ap.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    tiny = args.tiny or (device.type != "cuda" and not args.paper)
    p = TINY if tiny else PAPER
    steps = args.steps or (2 if tiny else 10)
    batch = args.batch_windows or (4 if tiny else 64)
    pairs = args.pairs or (4 if tiny else 32)
    torch.manual_seed(0)
    name, peak = peak_flops(device, args.peak_tflops)
    label = "TINY dims (no GPU: shows the benchmark runs; no MFU)" if tiny else "paper dims"
    print(f"device: {name}; peak bf16 assumed: {f'{peak / 1e12:.0f} TFLOP/s' if peak else 'unknown'}; {label}")
    rate, flops = bench_windows(p, device, batch, steps)
    mfu = f", MFU {100 * rate * flops / peak:.1f} %" if peak else ""
    print(f"window features: {rate:.1f} windows/s ({p['window']} voxels, patch {p['patch']}, ViT {p['dim']}-d x "
          f"{p['depth']}, batch {batch}), {flops / 1e9:.3g} GFLOP/window{mfu}")
    rate, flops = bench_train_step(p, device, pairs, steps)
    mfu = f", MFU {100 * rate * flops / peak:.1f} %" if peak else ""
    print(f"training step: {rate:.1f} pairs/s (batch {pairs}, grid {p['grid']}, text {p['text_len']} tokens, "
          f"{p['text']['num_hidden_layers']}-layer tower + LoRA r {p['lora_r']}), {flops / 1e9:.3g} GFLOP/pair{mfu}")
    if device.type == "cuda":
        print(f"peak GPU memory: {torch.cuda.max_memory_allocated(device) / 2**30:.1f} GiB")


if __name__ == "__main__":
    main()
