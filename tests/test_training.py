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

from ctvlp.features.window import LiveFeatures
from ctvlp.models.loading import CheckpointError, load_trained_model
from ctvlp.models.text_encoder import TextEncoder, TextEncoderSpec
from ctvlp.models.window_encoder import WindowEncoderSpec, build_window_encoder
from ctvlp.features.cache import cache_file, write_cached
from ctvlp.train.ablations import apply_overrides, load_ablations, schedule_priority
from ctvlp.train.checkpoint import load_checkpoint
from ctvlp.train.csv_log import append_csv
from ctvlp.train.data import FeatureSet, Sample
from ctvlp.train.prompt_set import PromptSet
from ctvlp.train.trainer import Trainer

REPO = Path(__file__).resolve().parents[1]
TINY = {"model.window_encoder.dim": 24, "model.scan_encoder.dim": 24, "model.scan_encoder.depth": 1,
        "model.scan_encoder.heads": 2, "model.embed_dim": 16, "model.heads.hidden_dim": 32,
        "model.heads.bottleneck_dim": 8, "model.text_encoder.max_tokens": 32,
        "train.epochs": 2, "train.batch_size": 4, "train.micro_batch": 2, "train.checkpoint_every": 1, "train.lr": 1e-3,
        "train.loader_workers": 0,
        "model.text_encoder.finetune": "lora",
        "pretrain.enabled": False}  # random window-encoder start: no pretraining stage in these unit tests
PROMPTS = {"positive": [[f"label {i} is present."] for i in range(18)],
           "negative": [[f"label {i} is absent."] for i in range(18)]}
# The prompt loss trains on two CT-RATE labels with two paired variants each (a step encodes 8 prompts).
SMALL = PromptSet.from_table(pd.DataFrame([
    {"label": label, "polarity": pol, "rank": r, "prompt": f"{'' if pol == 'positive' else 'no '}{label} {r}"}
    for label in ("Cardiomegaly", "Emphysema") for pol in ("positive", "negative") for r in range(2)]), {"ct_rate": 5.0})


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
        samples.append(Sample(vid, "train" if i < 8 else "dev", "hospital", f"P{i}",
                              f"Findings: report {i} describes finding {i % 3} in the right lung.",
                              labels, [(f"finding {i % 3}", int(i % 8))], f"C{i}"))
    return samples, FeatureSet(root)


def params(trainer: Trainer) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in trainer.model.trainable_state().items()}


def test_killed_and_resumed_run_ends_with_the_same_parameters(tiny_data, tmp_path):
    samples, feats = tiny_data
    straight = Trainer(tiny_config(), tmp_path / "straight", samples, feats, PROMPTS, prompt_set=SMALL)
    straight.fit()
    assert straight.total_steps == 4
    kept = sorted(p.name for p in (tmp_path / "straight" / "checkpoints").glob("ckpt-*"))
    assert kept == ["ckpt-0000003.json", "ckpt-0000003.safetensors", "ckpt-0000004.json", "ckpt-0000004.safetensors"]
    interrupted = Trainer(tiny_config(), tmp_path / "resumed", samples, feats, PROMPTS, prompt_set=SMALL)
    interrupted.fit(stop_after=3)  # as if killed right after the checkpoint of step 3
    assert load_checkpoint(tmp_path / "resumed" / "checkpoints")[1]["step"] == 3
    resumed = Trainer(tiny_config(), tmp_path / "resumed", samples, feats, PROMPTS, prompt_set=SMALL)  # a fresh process
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
    trainer = Trainer(tiny_config(), run, samples, feats, PROMPTS, prompt_set=SMALL)
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
    trainer = Trainer(config, run, samples, LiveFeatures(cache), PROMPTS, prompt_set=SMALL)
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
    append_csv(log, full)
    append_csv(log, {k: v for k, v in full.items() if k != "localization"} | {"step": 2})
    append_csv(log, full | {"step": 3})
    table = pd.read_csv(log)
    assert list(table.step) == [1, 2, 3] and list(table.grad_norm) == [3.0, 3.0, 3.0]
    assert table.localization.isna().tolist() == [False, True, False] and table.prompts.isna().all()


def no_dropout(trainer: Trainer) -> Trainer:
    for m in trainer.model.modules():
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0
    return trainer


def one_step_gradients(tiny_data, run: Path, **extra) -> tuple[dict, dict]:
    samples, feats = tiny_data
    trainer = no_dropout(Trainer(tiny_config(**{"train.grad_clip": 1e9, "train.prompt_batch": 3, **extra}), run,
                                 samples, feats, PROMPTS, prompt_set=SMALL))
    loader = iter(trainer._loader(0, 0))
    logged = trainer._step(0, [next(loader) for _ in range(trainer.plan.micro_per_rank)])
    return {n: p.grad.clone() for n, p in trainer.model.named_parameters() if p.grad is not None}, logged


def test_gradient_cache_equals_one_full_batch_step(tiny_data, tmp_path):
    """Two-phase caching over micro-batches of 2 and of 1 gives the gradient of the 4-pair batch computed
    in one pass (SigLIP over all pairs, prompt loss, localization loss; LoRA text tower included), where
    separate per-micro-batch losses (plain accumulation) would not; with text-tower gradient checkpointing too."""
    full, full_log = one_step_gradients(tiny_data, tmp_path / "full", **{"train.micro_batch": 4})
    assert any(n.startswith("text.") for n in full) and "scale.t" in full and "scale.b" in full
    assert {"contrastive", "prompts", "localization"} <= set(full_log)
    for micro, checkpointing in ((2, False), (1, True)):
        cached, log = one_step_gradients(tiny_data, tmp_path / f"m{micro}", **{"train.micro_batch": micro,
                                                                              "train.text_grad_checkpointing": checkpointing})
        assert cached.keys() == full.keys()
        for name in full:  # float32 sums in another order: tolerance relative to the tensor's own scale
            scale = float(full[name].abs().max())
            torch.testing.assert_close(cached[name], full[name], rtol=1e-4, atol=1e-6 + 1e-5 * scale, msg=name)
        for key in ("contrastive", "prompts", "localization", "grad_norm"):
            assert np.isclose(log[key], full_log[key], rtol=1e-5), key


def test_replayed_micro_batch_draws_the_dropout_of_its_first_pass():
    """Phase 2 restores each micro-batch's RNG state: the re-run reproduces phase 1's embeddings bit for bit
    (without the restore the dropout masks differ), and the RNG stream continues as after one pass."""
    from ctvlp.train.gradcache import phase_one, phase_two

    torch.manual_seed(0)
    layer, drop = torch.nn.Linear(5, 4), torch.nn.Dropout(0.5)
    xs = [torch.randn(3, 5) for _ in range(3)]
    seen: list[torch.Tensor] = []

    def job_for(x):
        def job():
            y = drop(layer(x))
            seen.append(y.detach().clone())
            return {"y": y}
        return job

    jobs = [job_for(x) for x in xs]
    cached = phase_one(jobs)
    after_phase_one = torch.get_rng_state()
    grads = [{"y": torch.ones(3, 4)} for _ in jobs]
    phase_two(jobs, cached, grads)
    assert torch.equal(torch.get_rng_state(), after_phase_one)
    for first, again in zip(seen[:3], seen[3:]):
        assert torch.equal(first, again)
    masks = [(c.outputs["y"] != 0).float() for c in cached]  # d/dW of sum(dropout(Wx+b)) uses phase 1's masks
    want = sum((m * 2.0).T @ x for m, x in zip(masks, xs))
    torch.testing.assert_close(layer.weight.grad, want)
    with torch.no_grad():
        assert not all(torch.equal(drop(layer(x)), c.outputs["y"]) for x, c in zip(xs, cached))


def test_ctrate_trains_one_entry_per_report_with_a_random_reconstruction_each_epoch():
    """first_all: the reconstructions of a CT-RATE scan share one report and form one entry; each epoch takes
    one of them at random (seeded), so two volumes with the same report are never each other's negatives."""
    from ctvlp.train.batches import epoch_samples, training_entries

    y = np.zeros(18, dtype=np.int64)
    samples = [Sample(f"V{i}", "train", "ct_rate", "P", "t", y, [], f"train_{i // 3}_a") for i in range(9)]
    samples += [Sample(f"H{i}", "train", "hospital", "P", "t", y, [], "same") for i in range(2)]
    entries = training_entries(samples, "first_all")
    assert sorted(map(tuple, entries)) == [(0, 1, 2), (3, 4, 5), (6, 7, 8), (9,), (10,)]
    assert len(training_entries(samples, "all")) == 11
    picks = [epoch_samples(entries, 42, epoch) for epoch in range(12)]
    for order in picks:
        assert len(order) == 5 and {i // 3 for i in order if i < 9} == {0, 1, 2} and {9, 10} <= set(order)
    assert len({tuple(sorted(order)) for order in picks}) > 3  # different reconstructions in different epochs
    assert np.array_equal(epoch_samples(entries, 42, 5), picks[5])  # a pure function of (seed, epoch)


def test_report_text_and_short_reports():
    """The text tower reads "Findings: ...\\nImpressions: ...\\n" (RadFinder); reports of <= 10 tokens leave the
    contrastive batch."""
    from ctvlp.train.data import report_text

    assert report_text("No effusion. Impressions follow.", "Normal.", "raw") == \
        "Findings: No effusion.  follow.\nImpressions: Normal.\n"
    assert report_text("", "Normal.", "raw") == "Impressions: Normal.\n"
    assert report_text(None, " ", "raw") == "raw"


def test_no_weight_decay_on_norms_biases_positions_and_tokens(tiny_data, tmp_path):
    from ctvlp.train.objective import report_token_counts
    from ctvlp.train.optim import no_decay

    samples, feats = tiny_data
    trainer = Trainer(tiny_config(), tmp_path / "run", samples, feats, PROMPTS, prompt_set=SMALL)
    decayed = {id(p) for g in trainer.optimizer.param_groups if g["weight_decay"] > 0 for p in g["params"]}
    names = {n: id(p) in decayed for n, p in trainer.model.named_parameters() if p.requires_grad}
    assert not names["combiner.cls_token"] and not names["scale.t"]
    assert not any(v for n, v in names.items() if n.endswith(".bias") or "norm" in n)
    assert names["image_head.layers.0.weight"] and names["combiner.patch_proj.weight"]
    assert no_decay("combiner.cls_token", torch.zeros(1, 1, 4)) and no_decay("x.pos_embed", torch.zeros(4, 4))
    short = [s.text for s in samples[:2]] + ["No findings."]
    assert [n >= 11 for n in report_token_counts(trainer.model.text, short)] == [True, True, False]
    assert bool(trainer.objective.has_text.all())  # every tiny report is long enough


def test_loader_workers_read_the_same_micro_batches(tiny_data, tmp_path):
    samples, feats = tiny_data
    trainer = Trainer(tiny_config(), tmp_path / "run", samples, feats, PROMPTS, prompt_set=SMALL)
    plain = list(trainer._loader(1, 0))
    trainer.cfg = type(trainer.cfg)(**{**trainer.cfg.__dict__, "loader_workers": 2})
    threaded = list(trainer._loader(1, 0))
    assert len(plain) == len(threaded) == trainer.steps_per_epoch * trainer.plan.micro_per_rank
    for a, b in zip(plain, threaded):
        assert a["index"].tolist() == b["index"].tolist()
        for k in a["tensors"]:
            assert torch.equal(a["tensors"][k], b["tensors"][k])
    flat = [i for item in plain for i in item["index"].tolist()]
    want = [int(i) for step in range(trainer.steps_per_epoch) for i in trainer.global_batch(trainer.steps_per_epoch + step)]
    assert flat == want


def test_text_tower_runs_are_scheduled_first_and_every_run_before_what_waits_on_training():
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    runs = load_ablations(REPO / "config" / "ablations.tsv")
    priorities = {run: schedule_priority(config, overrides) for run, overrides in runs.items()}
    assert priorities["lora_text"] == 2
    assert {p for run, p in priorities.items() if run != "lora_text"} == {1}


def test_settings_take_every_default_from_the_schema():
    """train/settings.py writes no default: a key left out of the config takes the schema's, and a required key
    left out is one ConfigError naming it."""
    from ctvlp.core.config import ConfigError
    from ctvlp.train.pretrain import PretrainSpec
    from ctvlp.train.settings import TrainSettings, schema_defaults

    config = tiny_config()
    defaults = schema_defaults("train")
    assert {"prompt_batch", "loader_workers", "prefetch", "window_lr", "keep_checkpoints"} <= set(defaults)
    bare = {**config, "train": {k: v for k, v in config["train"].items() if k not in defaults}}
    s = TrainSettings.from_config(bare)
    assert (s.prompt_batch, s.loader_workers, s.prefetch, s.window_lr, s.keep_checkpoints) == (
        defaults["prompt_batch"], defaults["loader_workers"], defaults["prefetch"], defaults["window_lr"],
        defaults["keep_checkpoints"])
    with pytest.raises(ConfigError, match="'train.lr' is missing"):
        TrainSettings.from_config({**config, "train": {k: v for k, v in config["train"].items() if k != "lr"}})
    spec = PretrainSpec.from_config({"seed": 3, "pretrain": {"enabled": True}})
    assert spec.steps == schema_defaults("pretrain")["steps"] and spec.seed == 3
