"""Memory on a GPU run: micro-batches wait on the host in float16 and reach the device one at a time, and
MAE pretraining opens a cache file per draw (no descriptor per volume) and runs under bf16 autocast on CUDA.
The CPU tests show nothing changes in the numbers; the ``gpu`` tests (make gpu-check) run the CUDA paths:
bf16 autocast in pretraining and training, and a resumed CUDA run equal to an uninterrupted one."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from ctvlp.features.cache import cache_file, write_cached
from ctvlp.features.window import collate, volume_tokens
from ctvlp.train.batches import host_tensors
from ctvlp.train.pretrain import WindowSampler
from ctvlp.train.step import to_device
from test_pretrain import SPEC, run, volumes
from test_training import PROMPTS, SMALL, params, tiny_config, tiny_data  # noqa: F401 (tiny_data: a fixture)


def feature_tokens(seed: int, nz: int) -> dict[str, torch.Tensor]:
    """One volume's tokens as FeatureSet gives them: float16 files read as float32."""
    g = torch.Generator().manual_seed(seed)
    feats = {"cls": torch.randn(2, 2, nz, 8, generator=g), "mean": torch.randn(2, 2, nz, 8, generator=g),
             "depth": torch.randn(2, 2, nz, 4, 8, generator=g)}
    return volume_tokens({k: v.half().float() for k, v in feats.items()})


def test_host_float16_micro_batches_round_trip_exactly():
    """The feature files are float16, so a collated batch (zeros where padded) kept float16 on the host comes
    back to the device as the very same float32 values; integer coordinates and masks are untouched."""
    batch = collate([feature_tokens(0, 3), feature_tokens(1, 2)])  # different lengths: padding
    host = host_tensors(batch)
    assert host["scan_tokens"].dtype == host["depth_tokens"].dtype == torch.float16
    assert host["scan_coords"].dtype == torch.long and host["scan_mask"].dtype == torch.bool
    assert host["scan_tokens"].element_size() * 2 == batch["scan_tokens"].element_size()
    back = to_device(host, torch.device("cpu"))
    assert back.keys() == batch.keys()
    for key, value in batch.items():
        assert back[key].dtype == value.dtype and torch.equal(back[key], value), key


def open_descriptors() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc/self/fd")
def test_sampler_reads_files_per_draw_and_draws_what_arrays_give(tmp_path):
    """Files give the same crops as the arrays they hold (same seed, same numbers), and no file stays open."""
    arrays = [v.astype(np.float16) for v in volumes(6)]
    paths = []
    for i, array in enumerate(arrays):
        paths.append(cache_file(tmp_path, f"V{i:02x}{i:030x}"))
        write_cached(paths[-1], array)
    before = open_descriptors()
    from_files = WindowSampler(paths, SPEC.window, 7)
    assert open_descriptors() == before  # the shapes were read, nothing kept open
    batch = from_files.batch(3, 8)
    assert open_descriptors() == before
    assert torch.equal(batch, WindowSampler(arrays, SPEC.window, 7).batch(3, 8))
    assert torch.equal(batch, from_files.batch(3, 8))


# ---- on a GPU (make gpu-check) ------------------------------------------------------------------------------

@pytest.fixture
def deterministic_cuda():
    """Deterministic CUDA kernels (the math SDPA kernel: the efficient kernels' backward accumulates with atomics),
    so that a resumed run can equal an uninterrupted one bit for bit and a difference means the RNG state.
    cuBLAS also needs CUBLAS_WORKSPACE_CONFIG=:4096:8 before CUDA starts (benchmarks/gpu_check.sh sets it)."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        with sdpa_kernel([SDPBackend.MATH]):
            yield
    finally:
        torch.use_deterministic_algorithms(False)


@pytest.mark.gpu
def test_mae_pretraining_runs_under_bf16_autocast_and_resumes_equal_on_cuda(tmp_path, monkeypatch, deterministic_cuda):
    """The encoder's blocks run in bf16 under autocast (loss float32), and a resumed CUDA run ends with the
    weights of an uninterrupted one (mask and crops drawn from (seed, step))."""
    from ctvlp.models import window_encoder

    build = window_encoder.build_window_encoder
    monkeypatch.setattr("test_pretrain.build_window_encoder", lambda spec, seed: build(spec, seed).cuda())
    seen = []
    handle = torch.nn.modules.module.register_module_forward_hook(
        lambda m, i, o: seen.append(o.dtype) if isinstance(m, torch.nn.Linear) and torch.is_tensor(o) else None)
    try:
        whole, rows = run(tmp_path / "whole", steps=6)
    finally:
        handle.remove()
    assert torch.bfloat16 in seen and np.isfinite([r["loss"] for r in rows]).all()
    assert rows[-1]["loss"] < rows[0]["loss"]
    run(tmp_path / "cut", steps=6, stop_after=3)
    resumed, _ = run(tmp_path / "cut", steps=6)
    for (name, p), q in zip(whole.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(p, q), name


@pytest.mark.gpu
def test_resumed_cuda_training_with_dropout_equals_an_uninterrupted_one(tiny_data, tmp_path,  # noqa: F811
                                                                        deterministic_cuda):
    """bf16 autocast, LoRA dropout drawn from the CUDA generator, gradient caching over micro-batches of 2:
    the per-process RNG state in the checkpoint makes the resumed run draw what the uninterrupted one did."""
    samples, feats = tiny_data
    device = torch.device("cuda")
    config = lambda: tiny_config(**{"model.text_encoder.lora.dropout": 0.1, "train.bf16": True})  # noqa: E731
    from ctvlp.train.trainer import Trainer

    straight = Trainer(config(), tmp_path / "straight", samples, feats, PROMPTS, device, prompt_set=SMALL)
    straight.fit()
    Trainer(config(), tmp_path / "resumed", samples, feats, PROMPTS, device, prompt_set=SMALL).fit(stop_after=3)
    resumed = Trainer(config(), tmp_path / "resumed", samples, feats, PROMPTS, device, prompt_set=SMALL)
    resumed.fit()
    a, b = params(straight), params(resumed)
    assert a.keys() == b.keys() and len(a) > 10
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=0, atol=0, msg=name)
