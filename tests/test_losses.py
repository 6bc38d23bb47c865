"""Each loss against a direct formula (spectre.md), hand-computed or written out independently in numpy.
Several processes: tests/test_distributed.py."""

from __future__ import annotations

import math

import numpy as np
import torch

from ctvlp.losses import (LogitScale, clip_loss, draw_variants, localization_loss, localization_terms, prompt_logits,
                          prompt_loss, prompt_pos_weight, siglip_loss, smoothed_targets)


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


def test_prompt_loss_draws_paired_variants_with_group_and_positive_weights():
    """Hand-computed: 2 scans, 2 labels, 2 paired variants; scan 1's label 1 unknown; logits exp(t) (cos+ - cos-)."""
    img = torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    e = {"x": [1.0, 0.0], "y": [0.0, 1.0], "d": [2 ** -0.5, 2 ** -0.5]}
    # prompt_emb[label, variant, polarity]
    prompt_emb = torch.tensor([[[e["x"], e["y"]], [e["d"], e["y"]]],
                               [[e["y"], e["x"]], [e["d"], e["x"]]]], dtype=torch.float64)
    labels = torch.tensor([[1, 0], [0, -1]])
    draw = torch.tensor([[1, 0], [0, 1]])  # scan 0: label 0 variant 1, label 1 variant 0; scan 1: variant 0, (1)
    pos_weight, group = torch.tensor([3.0, 0.5]), torch.tensor([5.0, 1.0])
    scale = torch.tensor(math.log(10.0), dtype=torch.float64).exp()
    got = prompt_loss(img, prompt_emb, labels, pos_weight, group, scale, draw)
    s = 10.0 * np.array([(2 ** -0.5) - 0.0,  # scan 0, label 0, v1: cos(x, d) - cos(x, y)
                         0.0 - 1.0,          # scan 0, label 1, v0: cos(x, y) - cos(x, x)
                         0.0 - 1.0])         # scan 1, label 0, v0: cos(y, x) - cos(y, y)
    sig = lambda z: 1 / (1 + math.exp(-z))  # noqa: E731
    terms = [5.0 * -(3.0 * math.log(sig(s[0]))),   # y = 1: group weight x pos_weight x -log s(z)
             1.0 * -math.log(1 - sig(s[1])),        # y = 0: group weight x -log(1 - s(z))
             5.0 * -math.log(1 - sig(s[2]))]
    assert math.isclose(float(got), sum(terms) / 3, rel_tol=1e-6)  # mean over the 3 known elements
    mean_all = prompt_loss(img, prompt_emb, labels, pos_weight, group, 1.0, None)  # mean over the variants
    s0 = ((1.0 - 0.0) + (2 ** -0.5 - 0.0)) / 2
    assert math.isclose(float(prompt_logits(img, prompt_emb, None, 1.0)[0, 0]), s0, rel_tol=1e-6)
    assert float(mean_all) > 0


def test_pos_weight_is_the_capped_ratio_without_a_floor():
    labels = torch.tensor([[1, 0, 1, -1], [0, 0, 1, -1], [0, -1, 1, -1], [0, 1, 0, -1]])
    # label 0: 1 pos / 3 neg -> 3; label 1: 1 / 2 -> 2 (cap 2.5); label 2: 3 pos / 1 neg -> 1/3 (no floor); label 3: none -> 1
    got = prompt_pos_weight(labels, cap=2.5).tolist()
    assert np.allclose(got, [2.5, 2.0, 1 / 3, 1.0])
    assert prompt_pos_weight(torch.tensor([[0], [0]]), cap=20).tolist() == [1.0]  # no positive: 1, not the cap


def test_prompt_draws_are_a_function_of_seed_and_step():
    a, b = draw_variants(42, 7, 5, 4, 3), draw_variants(42, 7, 5, 4, 3)
    assert torch.equal(a, b) and a.shape == (5, 4) and int(a.min()) >= 0 and int(a.max()) <= 2
    assert not torch.equal(a, draw_variants(42, 8, 5, 4, 3))


def radfinder_target(target: int, n_valid: int, n_padded: int, sigma: float) -> np.ndarray:
    """spectre.md, written out independently: one-hot over the padded axis, Gaussian kernel of radius
    round(3 sigma) normalised to 1, zero padding at the ends, renormalised over all positions, then zeroed
    on padded positions without renormalising."""
    radius = max(int(sigma * 3 + 0.5), 1)
    kernel = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    kernel /= kernel.sum()
    onehot = np.zeros(n_padded)
    onehot[target] = 1.0
    smooth = np.convolve(onehot, kernel, mode="same") if n_padded >= len(kernel) else \
        np.convolve(onehot, kernel, mode="full")[radius:radius + n_padded]
    smooth /= smooth.sum() + 1e-8
    smooth[n_valid:] = 0.0
    return smooth


def test_localization_target_is_radfinders_near_the_scan_ends():
    """Target 1 bin from the start of a 5-bin scan padded to 9 bins: the kernel's mass left of bin 0 is lost
    at the array end and renormalised; the mass on padded bins 5..8 stays in the normalisation and is cut."""
    got = smoothed_targets(torch.tensor([1, 4]), torch.tensor([5, 5]), 9, 2.0).numpy()
    for row, tgt in zip(got, (1, 4)):
        want = radfinder_target(tgt, 5, 9, 2.0)
        assert np.allclose(row, want, atol=1e-7)
    assert got[1].sum() < 0.75 and math.isclose(got[1, 4], radfinder_target(4, 5, 9, 2.0)[4], rel_tol=1e-6)
    # kernel of sigma 2: radius 6, 13 taps
    assert len(radfinder_target(6, 13, 13, 2.0).nonzero()[0]) == 13


def test_localization_loss_matches_the_soft_cross_entropy():
    rng = np.random.default_rng(2)
    snip, depth = rng.normal(size=(2, 3)), rng.normal(size=(2, 6, 3))
    n_valid, targets = [4, 6], [0, 5]
    expected = []
    for k in range(2):
        cos = unit(depth[k]) @ unit(snip)[k]
        logits = cos[: n_valid[k]] / 0.1
        logp = logits - np.log(np.exp(logits).sum())
        t = radfinder_target(targets[k], n_valid[k], 6, 2.0)[: n_valid[k]]
        expected.append(-(t * logp).sum())  # summed over valid bins, NOT renormalised
    got = localization_loss(torch.tensor(snip), torch.tensor(depth), torch.tensor(targets), torch.tensor(n_valid))
    assert math.isclose(float(got), np.mean(expected), rel_tol=1e-6)
    terms = localization_terms(torch.tensor(snip), torch.tensor(depth), torch.tensor(targets), torch.tensor(n_valid))
    assert np.allclose(terms.numpy(), expected)


def test_objective_on_fixed_embeddings_is_the_three_losses_of_the_global_batch():
    """The trainer's objective (ctvlp.train.objective) without a model: SigLIP over the pairs whose report is
    long enough, the prompt loss with the (seed, step) variant draw, the localization terms of this process's
    micro-batches over the global snippet count, the weighted total; the gather joins micro-batches in order."""
    import dataclasses
    from pathlib import Path

    import pandas as pd
    import yaml

    from ctvlp.train.objective import Objective, gather_embeddings
    from ctvlp.train.prompt_set import PromptSet
    from ctvlp.train.settings import TrainSettings

    config = yaml.safe_load((Path(__file__).resolve().parents[1] / "config/config.yaml").read_text())
    s = dataclasses.replace(TrainSettings.from_config({**config, "seed": 5}), w_contrastive=1.0, w_prompts=0.5,
                            w_localization=2.0)
    prompts = PromptSet.from_table(pd.DataFrame([
        {"label": label, "polarity": pol, "rank": r, "prompt": f"{pol} {label} {r}"}
        for label in ("Cardiomegaly", "Emphysema") for pol in ("positive", "negative") for r in range(2)]),
        {"ct_rate": 5.0})
    g = torch.Generator().manual_seed(0)
    labels = torch.randint(-1, 2, (6, 2), generator=g)
    has_text = torch.tensor([True, True, False, True, True, True])  # sample 2: a report of <= 10 tokens
    snippets = [1, 0, 2, 1, 0, 3]
    objective = Objective(s, prompts, labels, has_text, snippets, torch.device("cpu"))
    batch = torch.tensor([4, 2, 0, 3])  # the step's global batch: 0 + 2 + 1 + 1 = 4 snippets in all
    micro = [{name: torch.randn(2, 8, generator=g) for name in ("scan", "scan_prompt", "report")} for _ in range(2)]
    for out, n in zip(micro, (2, 1)):  # this process's micro-batches: 2 and 1 snippets, 4 depth bins per scan
        out.update(depth=torch.randn(2, 4, 8, generator=g), n_bins=torch.tensor([4, 3]),
                   snippet=torch.randn(n, 8, generator=g))
    meta = [{"owner": torch.tensor([0, 1]), "bin": torch.tensor([1, 3])},
            {"owner": torch.tensor([1]), "bin": torch.tensor([2])}]
    prompt_out = [{"prompt": torch.randn(8, 8, generator=g)}]  # 2 labels x 2 variants x 2 polarities
    outs, kinds = prompt_out + micro, ["prompts", "micro", "micro"]
    emb = gather_embeddings(outs, kinds, {"micro": [4], "prompts": [8]}, direct=False)
    assert torch.equal(emb["scan"], torch.cat([micro[0]["scan"], micro[1]["scan"]])) and emb["scan"].requires_grad
    assert torch.equal(emb["prompt"], prompt_out[0]["prompt"])
    scale = LogitScale(2.0, -3.0)
    losses = objective.losses(7, batch, emb, list(zip(micro, meta)), scale)

    keep = torch.tensor([True, False, True, True])
    torch.testing.assert_close(losses["contrastive"], siglip_loss(emb["scan"][keep], emb["report"][keep], scale))
    draw = draw_variants(5, 7, 4, 2, 2)
    want = prompt_loss(emb["scan_prompt"], emb["prompt"].reshape(2, 2, 2, -1), labels[batch],
                       prompt_pos_weight(labels, s.pos_weight_cap), torch.tensor([5.0, 5.0]), scale.t.exp(), draw)
    torch.testing.assert_close(losses["prompts"], want)
    terms = [localization_terms(out["snippet"], out["depth"][m["owner"]], m["bin"], out["n_bins"][m["owner"]],
                                s.loc_temperature, s.loc_sigma_bins).sum() for out, m in zip(micro, meta)]
    torch.testing.assert_close(losses["localization"], (terms[0] + terms[1]) / 4)  # the global count, not these 3
    total = objective.total(losses)
    torch.testing.assert_close(total, losses["contrastive"] + 0.5 * losses["prompts"] + 2.0 * losses["localization"])
    assert objective.logged(losses) == {k: float(losses[k]) for k in ("contrastive", "prompts", "localization")}
    total.backward()  # the gradient lands on the gathered rows (phase two back-propagates them)
    assert emb["scan"].grad is not None and emb["prompt"].grad is not None and emb["report"].grad[1].abs().sum() == 0
    without = Objective(dataclasses.replace(s, w_localization=0.0), prompts, labels, has_text, snippets,
                        torch.device("cpu"))
    assert "localization" not in without.losses(7, batch, emb, list(zip(micro, meta)), scale)
