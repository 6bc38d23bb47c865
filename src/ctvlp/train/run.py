"""Train one run end to end (rule ``train``): also the torchrun entry point for several GPUs.

python -m ctvlp.train.run --config RUN_CONFIG.json --inputs INPUTS.json --run-dir DIR --gpus N
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.distributed as dist

from ctvlp.core.compute import resolve_device
from ctvlp.features.window import LiveFeatures
from ctvlp.inference.embedding import evaluate_samples
from ctvlp.models.window_encoder import WindowEncoderSpec
from ctvlp.train.data import FeatureSet, build_samples
from ctvlp.train.prompt_set import PromptSet, prompt_lists, training_prompts, with_rate_labels
from ctvlp.train.settings import Section, TrainSettings
from ctvlp.train.trainer import Trainer


def load_prompt_set(paths: dict, config: dict) -> PromptSet:
    """The labels and prompts of the prompt loss, from the text stage's prompts table and the group weights."""
    groups = TrainSettings.from_config(config).prompt_groups
    rate = pd.read_parquet(paths["rate_prompts"]) if paths.get("rate_prompts") else None
    source = " + ".join(str(paths[k]) for k in ("prompts", "rate_prompts") if paths.get(k))
    return PromptSet.from_table(training_prompts(pd.read_parquet(paths["prompts"]), rate), groups, source=source)


def load_inputs(paths: dict, config: dict | None = None) -> tuple[list, FeatureSet | LiveFeatures, dict]:
    """Samples, their token source and the prompts. A run whose window encoder trains end to end reads
    the cached voxels (``paths['cache_dir']``); every other run reads the frozen features."""
    volumes = pd.read_parquet(paths["volumes"])
    features = pd.concat([pd.read_parquet(p) for p in paths["feature_shards"]], ignore_index=True)
    rate_labels = pd.read_parquet(paths["rate_labels"]) if paths.get("rate_labels") else None
    labels = with_rate_labels(pd.read_parquet(paths["labels"]), rate_labels)
    samples = build_samples(volumes, pd.read_parquet(paths["reports"]), labels,
                            pd.read_parquet(paths["snippets"]), features)
    end_to_end = config is not None and WindowEncoderSpec.from_config(config).trainable
    source = LiveFeatures(paths["cache_dir"]) if end_to_end else FeatureSet(paths["feature_dir"])
    return samples, source, prompt_lists(pd.read_parquet(paths["prompts"]))


def run_training(config: dict, run_dir: Path, paths: dict, stop_after: int | None = None,
                 gpus: int | None = None) -> dict:
    """Train one run; ``gpus`` is what the job was allocated (default ``compute.train_gpus``)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    gpus = config["compute"]["train_gpus"] if gpus is None else gpus
    # Fails before anything is read when GPUs were requested and CUDA is missing (unless allow_cpu).
    device = resolve_device(gpus, bool(Section(config, "compute")["allow_cpu"]), "rule train")
    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
    if distributed:
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        if device.type == "cuda":
            torch.cuda.set_device(device)
    samples, features, prompts = load_inputs(paths, config)
    trainer = Trainer(config, run_dir, samples, features, prompts, device, load_prompt_set(paths, config))
    features = trainer.features
    best = trainer.fit(stop_after=stop_after)
    result = {"best": best, "steps": trainer.total_steps, "resumed_from_step": trainer.resumed_from}
    if trainer.rank == 0 and (stop_after is None or stop_after >= trainer.total_steps):
        trainer.load_best()
        result["prompt_scale"] = trainer.prompt_scale()
        test = [s for s in samples if s.split == "test"]
        metrics = evaluate_samples(trainer.model, test, features, prompts, trainer.bin_mm)
        result.update(test=metrics, train_volumes=len(trainer.train), dev_volumes=len(trainer.dev))
        (run_dir / "final.json").write_text(json.dumps(result, indent=1, default=float))
    if distributed:
        dist.destroy_process_group()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True)
    parser.add_argument("--inputs", required=True)
    parser.add_argument("--run-dir", required=True)
    parser.add_argument("--gpus", type=int, default=None)
    args = parser.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    np.seterr(all="ignore")
    run_training(json.loads(Path(args.config).read_text()), Path(args.run_dir), json.loads(Path(args.inputs).read_text()),
                 gpus=args.gpus)


if __name__ == "__main__":
    main()
