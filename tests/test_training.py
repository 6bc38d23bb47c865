"""Training mechanics on a tiny real model: resume equals an uninterrupted run, loading runs no pickle,
a checkpoint from another configuration is refused with a clear message, the window encoder trains
end to end from the cached voxels when asked, and a frozen text tower encodes each text once."""

from __future__ import annotations

import csv
import json
import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from safetensors.torch import save_file

from ctvlp.models.features import LiveFeatures
from ctvlp.models.loading import CheckpointError, load_trained_model
from ctvlp.models.text_encoder import TextEncoder, TextEncoderSpec
from ctvlp.models.window_encoder import WindowEncoderSpec, build_window_encoder
from ctvlp.preprocess.cache import cache_file, write_cached
from ctvlp.train.ablations import apply_overrides
from ctvlp.train.checkpoint import load_checkpoint
from ctvlp.train.data import FeatureSet, Sample
from ctvlp.train.trainer import Trainer

REPO = Path(__file__).resolve().parents[1]
TINY = {"model.window_encoder.dim": 24, "model.scan_encoder.dim": 24, "model.scan_encoder.depth": 1,
        "model.scan_encoder.heads": 2, "model.embed_dim": 16, "model.heads.hidden_dim": 32, "model.heads.bottleneck_dim": 8,
        "model.text_encoder.max_tokens": 32,
        "train.epochs": 2, "train.batch_size": 4, "train.checkpoint_every": 1, "train.lr": 1e-3,
        "model.text_encoder.finetune": "lora",
        "pretrain.enabled": False}  # random window-encoder start: no pretraining stage in these unit tests
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
        feats = {"cls": rng.normal(size=(2, 2, 2, 24)), "mean": rng.normal(size=(2, 2, 2, 24)),
                 "depth": rng.normal(size=(2, 2, 2, 4, 24))}
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
    kept = sorted(p.name for p in (tmp_path / "straight" / "checkpoints").glob("ckpt-*"))
    assert kept == ["ckpt-0000003.json", "ckpt-0000003.safetensors", "ckpt-0000004.json", "ckpt-0000004.safetensors"]
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
    torch.testing.assert_close(model.trainable_state()["image_head.layers.0.weight"],
                               trainer.model.trainable_state()["image_head.layers.0.weight"])
    (run / "config.json").write_text(json.dumps(tiny_config(**{"model.embed_dim": 8})))
    with pytest.raises(CheckpointError, match="best.safetensors"):
        load_trained_model(run)


def test_window_encoder_trains_end_to_end_from_the_cache_and_reloads(tiny_data, tmp_path):
    """model.window_encoder.trainable: tokens come from cached voxels through the model's own encoder,
    its weights change and travel with the checkpoint, and the reloaded run encodes the cache alike."""
    samples, _ = tiny_data
    cache = tmp_path / "cache"
    rng = np.random.default_rng(1)
    for s in samples:  # 64 x 64 x 16 voxels = 2 x 2 x 2 windows of 32 x 32 x 8, 4 depth bins each
        write_cached(cache_file(cache, s.volume_id), rng.random((64, 64, 16)))
    config = tiny_config(**{"model.window_encoder.trainable": True, "train.window_lr": 1e-3})
    run = tmp_path / "run"
    trainer = Trainer(config, run, samples, LiveFeatures(cache), PROMPTS)
    start = build_window_encoder(WindowEncoderSpec.from_config(config), config["seed"]).state_dict()
    assert all(torch.equal(start[k], v) for k, v in trainer.model.window.state_dict().items())  # the frozen start
    trainer.fit()
    state = trainer.model.trainable_state()
    window = {k: v for k, v in state.items() if k.startswith("window.")}
    assert len(window) > 10
    assert any(not torch.equal(start[k.removeprefix("window.")], v) for k, v in window.items())
    tokens = trainer.features.tokens(samples[0].volume_id)
    assert tokens["scan_tokens"].shape == (8, 48) and tokens["depth_tokens"].shape == (2 * 2 * 8, 24)
    (run / "config.json").write_text(json.dumps(config))
    model, _ = load_trained_model(run)
    trainer.load_best()
    for k, v in trainer.model.window.state_dict().items():
        torch.testing.assert_close(model.window.state_dict()[k], v, rtol=0, atol=0, msg=k)
    with torch.no_grad():
        again = LiveFeatures(cache).for_model(model).tokens(samples[0].volume_id)
        best = trainer.features.tokens(samples[0].volume_id)
    torch.testing.assert_close(again["depth_tokens"], best["depth_tokens"])
    with pytest.raises(ValueError, match="trainable"):
        LiveFeatures(cache).for_model(Trainer(tiny_config(), tmp_path / "frozen", samples, tiny_data[1], PROMPTS).model)
    with pytest.raises(ValueError, match="trainable"):
        tiny_data[1].for_model(model)  # frozen features cannot feed a model that trains its encoder


def test_frozen_text_tower_encodes_each_text_once_and_alike():
    """The memo returns what a fresh encoding of the text alone returns, and does not grow on repeats."""
    base = tiny_config(**{"model.text_encoder.finetune": "frozen"})
    encoder = TextEncoder(TextEncoderSpec.from_config(base))
    texts = ["Kein Pleuraerguss.", "A 6 mm nodule in the right upper lobe (series 3, image 41).", "Kein Pleuraerguss."]
    first = encoder(texts)
    assert len(encoder._memo) == 2 and not first.requires_grad
    torch.testing.assert_close(first[0], first[2], rtol=0, atol=0)
    with torch.no_grad():
        alone = encoder._encode([texts[1]])[0]
    torch.testing.assert_close(first[1], alone, rtol=0, atol=0)
    torch.testing.assert_close(encoder(texts[::-1]), first.flip(0), rtol=0, atol=0)
    assert len(encoder._memo) == 2


def test_train_log_keeps_its_columns_when_a_step_lacks_a_loss_term(tmp_path):
    """A batch without snippets has no localization loss: its cell stays empty, the row does not shift."""
    log = tmp_path / "train_log.csv"
    full = {"contrastive": 1.0, "localization": 2.0, "grad_norm": 3.0, "lr": 1e-3, "step": 1, "epoch": 0, "seconds": 0.1}
    Trainer._append_csv(log, full)
    Trainer._append_csv(log, {k: v for k, v in full.items() if k != "localization"} | {"step": 2})
    Trainer._append_csv(log, full | {"step": 3})
    table = pd.read_csv(log)
    assert list(table.step) == [1, 2, 3] and list(table.grad_norm) == [3.0, 3.0, 3.0]
    assert table.localization.isna().tolist() == [False, True, False] and table.prompts.isna().all()
