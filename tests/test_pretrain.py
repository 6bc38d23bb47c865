"""Masked-autoencoder pretraining of the window encoder: the loss falls, a resumed run equals an
uninterrupted one, and the weights it writes load (strictly) into the window encoder the features use."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from ctvlp.models.mae import patchify
from ctvlp.train.pretrain import LOSS_LOG, PretrainSpec, WindowSampler, pretrain_window_encoder, save_encoder
from ctvlp.core.state_dict import WeightFileError
from ctvlp.models.window_encoder import PRETRAINED_FILE, WindowEncoderSpec, build_window_encoder, encode_volume

SPEC = WindowEncoderSpec((16, 16, 4), (4, 4, 2), 24, 1, 2)


def volumes(n: int = 3) -> list[np.ndarray]:
    """Smooth blobs on noise in [0, 1]: structure a masked patch can be predicted from."""
    rng = np.random.default_rng(0)
    grid = np.stack(np.meshgrid(*(np.arange(s) for s in (32, 32, 8)), indexing="ij"), -1)
    out = []
    for _ in range(n):
        vol = 0.3 + 0.002 * rng.standard_normal((32, 32, 8))
        for _ in range(6):
            c = rng.uniform([0, 0, 0], [32, 32, 8])
            vol += 0.5 * np.exp(-(((grid - c) / [4.0, 4.0, 2.0]) ** 2).sum(-1))
        out.append(vol.astype(np.float32))
    return out


def run(tmp: Path, steps: int, stop_after: int | None = None, fresh: bool = True):
    spec = PretrainSpec.from_config({"seed": 7, "pretrain": {  # the rest: the schema's defaults
        "steps": steps, "batch_size": 8, "lr": 1e-2, "warmup_steps": 2, "checkpoint_every": 3, "decoder_dim": 24,
        "decoder_heads": 2}})
    encoder = build_window_encoder(SPEC, seed=1)
    rows = pretrain_window_encoder(encoder, WindowSampler(volumes(), SPEC.window, 7), spec, tmp,
                                   stop_after=stop_after, progress=False)
    return encoder, rows


def test_patchify_follows_token_order():
    """Patch k of patchify is the voxels the patch embedding's k-th token sees."""
    x = torch.arange(16 * 16 * 4, dtype=torch.float32).reshape(1, 1, 16, 16, 4)
    patches = patchify(x, (4, 4, 2))
    gx, gy, gz = 4, 4, 2
    k = 1 * gy * gz + 2 * gz + 1  # token (1, 2, 1)
    assert torch.equal(patches[0, k], x[0, 0, 4:8, 8:12, 2:4].flatten())


def test_loss_decreases_and_weights_load(tmp_path):
    encoder, rows = run(tmp_path / "a", steps=30)
    first, last = np.mean([r["loss"] for r in rows[:5]]), np.mean([r["loss"] for r in rows[-5:]])
    assert last < 0.93 * first, (first, last)  # measured 0.90 (30 steps)
    log = (tmp_path / "a" / LOSS_LOG).read_text().splitlines()
    assert log[0] == "step\tloss\tlr" and len(log) == 31
    out = tmp_path / "results" / PRETRAINED_FILE
    save_encoder(encoder, out)
    config = {"results": str(tmp_path / "results"), "pretrain": {"enabled": True},
              "preprocess": {"window_voxels": [16, 16, 4]},
              "model": {"weights_dir": None, "window_encoder": {"patch_voxels": [4, 4, 2], "dim": 24, "depth": 1,
                                                                "heads": 2}}}
    spec = WindowEncoderSpec.from_config(config)
    assert spec.pretrained == str(out)
    loaded = build_window_encoder(spec, seed=123)  # another seed: the file's weights, not the init
    volume = torch.from_numpy(volumes(1)[0])
    a, b = encode_volume(encoder, volume), encode_volume(loaded, volume)
    assert torch.equal(a["mean"], b["mean"]) and torch.equal(a["cls"], b["cls"])
    random = encode_volume(build_window_encoder(SPEC, seed=1), volume)
    assert not torch.allclose(random["mean"], a["mean"])


def test_resume_equals_uninterrupted(tmp_path):
    whole, rows = run(tmp_path / "whole", steps=10)
    run(tmp_path / "cut", steps=10, stop_after=4)  # killed after step 4: the last checkpoint is step 3
    (tmp_path / "cut" / "checkpoints" / "latest.json").write_text('{"name": "ckpt-0000003", "step": 3}')
    resumed, resumed_rows = run(tmp_path / "cut", steps=10)
    for (name, p), q in zip(whole.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(p, q), name
    assert [r["step"] for r in resumed_rows] == list(range(1, 11))
    assert resumed_rows[-1]["loss"] == pytest.approx(rows[-1]["loss"])
    _, other_rows = run(tmp_path / "cut", steps=6)  # other settings: the old checkpoints kept aside, not continued
    assert [r["step"] for r in other_rows] == list(range(1, 7))
    assert (tmp_path / "cut" / "checkpoints.stale-1" / "latest.json").is_file()


def test_wrong_architecture_is_one_clear_error(tmp_path):
    path = tmp_path / "window_encoder.safetensors"
    save_encoder(build_window_encoder(SPEC), path)
    other = WindowEncoderSpec((16, 16, 4), (4, 4, 2), 36, 1, 2, pretrained=str(path))
    with pytest.raises(WeightFileError, match="window_encoder.safetensors: weights do not fit"):
        build_window_encoder(other)
