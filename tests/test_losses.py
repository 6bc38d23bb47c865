"""Each loss against a direct formula; SigLIP/CLIP across two real processes (gloo) against one."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F

from ctvlp.losses import LogitScale, clip_loss, localization_loss, prompt_loss, prompt_pos_weight, siglip_loss
from ctvlp.losses.localization import smoothed_targets


def unit(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_siglip_matches_the_pairwise_formula():
    rng = np.random.default_rng(0)
    img, txt = rng.normal(size=(3, 4)), rng.normal(size=(3, 4))
    scale = LogitScale()
    z = 10 * unit(img) @ unit(txt).T - 10
    y = 2 * np.eye(3) - 1
    expected = -np.log(1 / (1 + np.exp(-y * z))).sum() / 3
    got = siglip_loss(torch.tensor(img), torch.tensor(txt), scale)
    assert math.isclose(float(got), expected, rel_tol=1e-6)
    assert math.isclose(float(scale.t), math.log(10), rel_tol=1e-6) and float(scale.b) == -10


def test_clip_matches_symmetric_cross_entropy():
    rng = np.random.default_rng(1)
    img, txt = rng.normal(size=(4, 5)), rng.normal(size=(4, 5))
    logits = 10 * unit(img) @ unit(txt).T
    ce = lambda m: -np.mean(np.log(np.exp(np.diag(m)) / np.exp(m).sum(axis=1)))  # noqa: E731
    expected = (ce(logits) + ce(logits.T)) / 2
    assert math.isclose(float(clip_loss(torch.tensor(img), torch.tensor(txt), LogitScale())), expected, rel_tol=1e-6)


def test_prompt_loss_masks_unknown_and_weights_positives():
    img = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    pos = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    neg = torch.tensor([[0.0, 1.0], [1.0, 0.0]])
    labels = torch.tensor([[1, -1], [0, 1]])
    weight = torch.tensor([3.0, 1.0])
    got = prompt_loss(img, pos, neg, labels, weight, scale=2.0)
    # scan 0 label 0: s = 1 - 0 = 1, logit 2, y=1, w=3; scan 1 label 0: s = -1, logit -2, y = 0;
    # scan 1 label 1: s = 1, logit 2, y = 1; scan 0 label 1 unknown (masked)
    bce = lambda x, y, w=1.0: -(w * y * math.log(1 / (1 + math.exp(-x))) + (1 - y) * math.log(1 - 1 / (1 + math.exp(-x))))  # noqa: E731
    expected = (bce(2, 1, 3.0) + bce(-2, 0) + bce(2, 1)) / 3
    assert math.isclose(float(got), expected, rel_tol=1e-6)
    assert prompt_pos_weight(torch.tensor([[1, 0], [0, 0], [0, -1], [0, 1]]), cap=2.0).tolist() == [2.0, 2.0]
    assert prompt_pos_weight(torch.tensor([[1], [1], [0]]), cap=20).tolist() == [1.0]


def test_localization_loss_matches_gaussian_cross_entropy():
    rng = np.random.default_rng(2)
    snip, depth = rng.normal(size=(1, 3)), rng.normal(size=(1, 5, 3))
    n_valid = 4  # the fifth bin is padding
    cos = unit(depth[0]) @ unit(snip)[0]
    logits = cos[:n_valid] / 0.1
    logp = logits - np.log(np.exp(logits).sum())
    target = np.exp(-0.5 * ((np.arange(n_valid) - 1) / 2.0) ** 2)
    target /= target.sum()
    expected = -(target * logp).sum()
    got = localization_loss(torch.tensor(snip), torch.tensor(depth), torch.tensor([1]), torch.tensor([n_valid]))
    assert math.isclose(float(got), expected, rel_tol=1e-6)
    t = smoothed_targets(torch.tensor([0]), torch.tensor([3]), 5, 2.0)
    assert t[0, 3:].sum() == 0 and math.isclose(float(t.sum()), 1.0, rel_tol=1e-6)


def _worker(rank: int, world: int, init: str, kind: str, out: str):
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
    torch.manual_seed(0)
    enc_img, enc_txt, scale = torch.nn.Linear(4, 3), torch.nn.Linear(4, 3), LogitScale()
    x, y = torch.randn(8, 4), torch.randn(8, 4)
    part = slice(rank * 4, (rank + 1) * 4)
    loss_fn = siglip_loss if kind == "siglip" else clip_loss
    loss = loss_fn(enc_img(x[part]), enc_txt(y[part]), scale)
    loss.backward()
    params = [*enc_img.parameters(), *enc_txt.parameters(), *scale.parameters()]
    for p in params:  # what the trainer (and DDP) does: average gradients over processes
        if p.grad is None:  # CLIP leaves the bias unused
            p.grad = torch.zeros_like(p)
        dist.all_reduce(p.grad)
        p.grad /= world
    total = loss.detach().clone()
    dist.all_reduce(total)
    if rank == 0:
        torch.save({"loss": total / world, "grads": [p.grad for p in params]}, out)
    dist.destroy_process_group()


@pytest.mark.parametrize("kind", ["siglip", "clip"])
def test_two_processes_equal_one_process_on_the_concatenated_batch(tmp_path, kind):
    out = str(tmp_path / "dist.pt")
    mp.spawn(_worker, args=(2, f"file://{tmp_path}/store", kind, out), nprocs=2, join=True)
    torch.manual_seed(0)
    enc_img, enc_txt, scale = torch.nn.Linear(4, 3), torch.nn.Linear(4, 3), LogitScale()
    x, y = torch.randn(8, 4), torch.randn(8, 4)
    loss_fn = siglip_loss if kind == "siglip" else clip_loss
    loss = loss_fn(enc_img(x), enc_txt(y), scale)
    loss.backward()
    got = torch.load(out, weights_only=True)
    assert torch.allclose(got["loss"], loss.detach(), atol=1e-6)
    for g, p in zip(got["grads"], [*enc_img.parameters(), *enc_txt.parameters(), *scale.parameters()]):
        assert torch.allclose(g, p.grad if p.grad is not None else torch.zeros_like(p), atol=1e-6)
