"""Training mechanics on a tiny real model: resume equals an uninterrupted run, loading runs no pickle,
and a checkpoint from another configuration is refused with a clear message."""

from __future__ import annotations

import csv
import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from safetensors.torch import save_file

from ctvlp.models.loading import CheckpointError, load_trained_model
from ctvlp.train.ablations import apply_overrides
from ctvlp.train.checkpoint import load_checkpoint
from ctvlp.train.data import FeatureSet, Sample
from ctvlp.train.trainer import Trainer

REPO = Path(__file__).resolve().parents[1]
TINY = {"model.window_encoder.dim": 16, "model.scan_encoder.dim": 32, "model.scan_encoder.depth": 1,
        "model.scan_encoder.heads": 2, "model.embed_dim": 16, "model.text_encoder.max_tokens": 32,
        "train.epochs": 2, "train.batch_size": 4, "train.checkpoint_every": 1, "train.lr": 1e-3}
PROMPTS = {"positive": [[f"label {i} is present."] for i in range(18)],
           "negative": [[f"label {i} is absent."] for i in range(18)]}


def tiny_config(**extra) -> dict:
    base = yaml.safe_load((REPO / "config/config.yaml").read_text())
    return apply_overrides(base, {**TINY, **extra})


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    """8 train + 2 dev volumes of random window features (2x2x2 windows, 4 depth tokens each)."""
    root = tmp_path_factory.mktemp("features")
    rng = np.random.default_rng(0)
    samples = []
    for i in range(10):
        vid = f"V{i:04d}"
        feats = {"cls": rng.normal(size=(2, 2, 2, 16)), "mean": rng.normal(size=(2, 2, 2, 16)),
                 "depth": rng.normal(size=(2, 2, 2, 4, 16))}
        save_file({k: torch.tensor(v, dtype=torch.float16) for k, v in feats.items()}, str(root / f"{vid}.safetensors"))
        labels = rng.integers(-1, 2, 18)
        samples.append(Sample(vid, "train" if i < 8 else "dev", "hospital", f"P{i}", f"Report {i}: finding {i % 3}.",
                              labels, [(f"finding {i % 3}", int(i % 8))], f"C{i}"))
    return samples, FeatureSet(root)


def params(trainer: Trainer) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in trainer.model.trainable_state().items()}


def test_killed_and_resumed_run_ends_with_the_same_parameters(tiny_data, tmp_path):
    samples, feats = tiny_data
    straight = Trainer(tiny_config(), tmp_path / "straight", samples, feats, PROMPTS)
    straight.fit()
    assert straight.total_steps == 4
    interrupted = Trainer(tiny_config(), tmp_path / "resumed", samples, feats, PROMPTS)
    interrupted.fit(stop_after=3)  # as if killed right after the checkpoint of step 3
    assert load_checkpoint(tmp_path / "resumed" / "checkpoints")[1]["step"] == 3
    resumed = Trainer(tiny_config(), tmp_path / "resumed", samples, feats, PROMPTS)  # a fresh process
    resumed.fit()
    a, b = params(straight), params(resumed)
    assert a.keys() == b.keys() and len(a) > 10
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=0, atol=0, msg=name)
    with open(tmp_path / "resumed/train_log.csv", newline="") as f:
        steps = [int(row["step"]) for row in csv.DictReader(f)]
    assert steps == [1, 2, 3, 4]  # no step logged twice


def test_loading_runs_no_pickle_and_refuses_other_configs(tiny_data, tmp_path, monkeypatch):
    samples, feats = tiny_data
    run = tmp_path / "run"
    trainer = Trainer(tiny_config(), run, samples, feats, PROMPTS)
    trainer.fit(stop_after=2)
    (run / "config.json").write_text(json.dumps(tiny_config()))

    def refuse(*args, **kwargs):
        raise AssertionError("pickle was used to load a checkpoint")

    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(pickle, "Unpickler", refuse)
    monkeypatch.setattr(torch, "load", refuse)
    assert load_checkpoint(run / "checkpoints")[1]["step"] == 2
    model, _ = load_trained_model(run)
    torch.testing.assert_close(model.trainable_state()["scan_head.0.weight"],
                               trainer.model.trainable_state()["scan_head.0.weight"])
    (run / "config.json").write_text(json.dumps(tiny_config(**{"model.embed_dim": 8})))
    with pytest.raises(CheckpointError, match="best.safetensors"):
        load_trained_model(run)
