"""Gradient caching at demo size, printed, not asserted: (1) the cached step's gradient against one
full-batch step (max relative error over all parameters, SigLIP + prompt + localization losses), and
(2) the time overhead of caching (phase 1 without gradients, loss, phase 2 re-run) against the plain
full-batch step, measured in the same run on the same batch.

With scans of equal length the two gradients agree to float precision. With scans of different lengths
they differ slightly, by definition: RadFinder's localization target is built over the padded depth axis of
the micro-batch (kernel mass past the array end is renormalised away), so the longest scan of each
micro-batch gets another target than in one big batch (``--equal-length`` isolates the arithmetic).

Usage: python benchmarks/bench_gradcache.py [--text frozen|lora] [--batch 16] [--micro 4] [--repeats 3] [--threads 1]
(one thread by default: on a shared machine OpenMP threads that wait for busy cores distort the ratio)
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import yaml
from safetensors.torch import save_file

from ctvlp.core.label_set import CTRATE_LABELS
from ctvlp.text.labels import default_label_set_file, load_label_set
from ctvlp.text.pipeline import prompts_table
from ctvlp.train.ablations import apply_overrides
from ctvlp.train.data import FeatureSet, Sample
from ctvlp.train.prompt_set import PromptSet
from ctvlp.train.trainer import Trainer

REPO = Path(__file__).resolve().parents[1]


def demo_like_data(root: Path, n: int, dim: int, vary: bool = True) -> list[Sample]:
    """Random window features on the demo's grid (4 x 4 windows in-plane, 3-5 in depth, 4 depth tokens each),
    reports of demo length, the 18 CT-RATE labels and one or two snippets per scan."""
    rng = np.random.default_rng(0)
    samples = []
    for i in range(n):
        nz = 3 + i % 3 if vary else 4
        feats = {"cls": rng.normal(size=(4, 4, nz, dim)), "mean": rng.normal(size=(4, 4, nz, dim)),
                 "depth": rng.normal(size=(4, 4, nz, 4, dim))}
        save_file({k: torch.tensor(v, dtype=torch.float16) for k, v in feats.items()}, str(root / f"V{i:04d}.safetensors"))
        text = (f"Findings: A {4 + i % 9} mm nodule in the right upper lobe (series 3, image {20 + i}). Small pleural "
                f"effusion on the left. Heart size normal.\nImpressions: Nodule {i}, effusion.\n")
        snippets = [(f"A nodule in the right upper lobe {i}", int(rng.integers(0, 4 * nz)))] * (1 + i % 2)
        samples.append(Sample(f"V{i:04d}", "train", "hospital", f"P{i}", text, rng.integers(-1, 2, 18), snippets, f"S{i}"))
    return samples


def step_once(trainer: Trainer) -> tuple[float, dict[str, torch.Tensor]]:
    loader = iter(trainer._loader(0, 0))
    micro = [next(loader) for _ in range(trainer.plan.micro_per_rank)]
    t0 = time.perf_counter()
    trainer._step(0, micro)
    seconds = time.perf_counter() - t0
    return seconds, {n: p.grad.detach().clone() for n, p in trainer.model.named_parameters() if p.grad is not None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--text", default="frozen", choices=["frozen", "lora"])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--micro", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--equal-length", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    base = yaml.safe_load((REPO / "config/config.yaml").read_text())
    root = Path(tempfile.mkdtemp())
    samples = demo_like_data(root, args.batch, base["model"]["window_encoder"]["dim"], vary=not args.equal_length)
    prompts = PromptSet.from_table(prompts_table(load_label_set(default_label_set_file())), {"ct_rate": 1.0})
    lists = {pol: [[f"{n} {pol}"] for n in CTRATE_LABELS] for pol in ("positive", "negative")}
    times, grads = {}, {}
    for name, micro in (("full batch", args.batch), (f"cached x{args.batch // args.micro}", args.micro)):
        config = apply_overrides(base, {"train.batch_size": args.batch, "train.micro_batch": micro,
                                        "train.grad_clip": 1e9, "train.loader_workers": 0,
                                        "model.text_encoder.finetune": args.text})
        trainer = Trainer(config, root / name.replace(" ", "_"), samples, FeatureSet(root), lists, prompt_set=prompts)
        for m in trainer.model.modules():  # equal draws in both: the comparison is of the arithmetic
            if isinstance(m, torch.nn.Dropout):
                m.p = 0.0
        state = {k: v.clone() for k, v in trainer.model.state_dict().items()}
        runs = []
        for _ in range(args.repeats + 1):  # the first step warms up (memo of a frozen text tower, allocator)
            trainer.model.load_state_dict(state)
            seconds, g = step_once(trainer)
            runs.append(seconds)
        times[name], grads[name] = statistics.median(runs[1:]), g
    (full, cached) = grads.values()
    rel = max(float((cached[k] - full[k]).norm() / full[k].norm().clamp(min=1e-30)) for k in full)
    worst = max(float((cached[k] - full[k]).abs().max()) for k in full)
    (t_full, t_cached) = times.values()
    print(f"text tower {args.text}; batch {args.batch}, micro-batch {args.micro}; {len(full)} parameter tensors")
    print(f"gradient: max relative error (per tensor, L2) {rel:.2e}; max absolute difference {worst:.2e}")
    print(f"step time: full batch {t_full:.3f} s, cached {t_cached:.3f} s, overhead x{t_cached / t_full:.2f} "
          f"(median of {args.repeats})")


if __name__ == "__main__":
    main()
