"""The workflow's model modules against reference outputs of the SPECTRE authors' own package.

tests/data/spectre/ holds small random models in SPECTRE's released file formats and the outputs
spectre-fm 0.2.1 (and transformers' Qwen3Model + spectre-fm's loralib adapters) computed for fixed
inputs; ``load_component`` must reproduce every one to 1e-4.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from ctvlp.models.combiner import FeatureCombiner
from ctvlp.models.rope import grid_index
from ctvlp.core.state_dict import WeightFileError
from ctvlp.models.spectre import load_component

DATA = Path(__file__).parent / "data" / "spectre"
ARCH = json.loads((DATA / "README.json").read_text())
TEXT_ARCH = json.loads((DATA / "text_README.json").read_text())
EXPECTED = load_file(str(DATA / "expected.safetensors"))
TOL = 1e-4


def max_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max())


@torch.no_grad()
def test_backbone_tokens_match_spectre():
    model = load_component("backbone", DATA / "backbone.pt", ARCH["backbone"])
    out = model.forward_features(EXPECTED["backbone_input"])
    assert out.shape == EXPECTED["backbone_tokens"].shape
    assert max_err(out, EXPECTED["backbone_tokens"]) < TOL


@torch.no_grad()
def test_folded_backbone_matches_spectre_on_half_depth_windows():
    arch = {**ARCH["backbone"], "img_size": ARCH["backbone_folded"]["img_size"],
            "patch_size": ARCH["backbone_folded"]["patch_size"]}
    model = load_component("backbone", DATA / "backbone.pt", arch)
    assert tuple(model.patch_embed.proj.weight.shape[2:]) == tuple(arch["patch_size"])
    out = model.forward_features(EXPECTED["folded_input"])
    assert max_err(out, EXPECTED["folded_tokens"]) < TOL


@torch.no_grad()
def test_combiner_tokens_match_spectre():
    arch = ARCH["combiner"]
    model = load_component("combiner", DATA / "combiner.pt", arch)
    x = EXPECTED["combiner_input"]
    grid = torch.tensor(arch["grid_size"])
    index = grid_index(tuple(arch["grid_size"]))[None].expand(len(x), -1, -1)
    out = model(x, index, grid[None].expand(len(x), -1))
    assert max_err(out, EXPECTED["combiner_tokens"]) < TOL


@torch.no_grad()
def test_siglip_head_matches_spectre():
    model = load_component("siglip_head", DATA / "siglip_head.pt", ARCH["siglip_head"])
    assert max_err(model(EXPECTED["head_input"]), EXPECTED["head_output"]) < TOL


@pytest.mark.parametrize("side", ["left", "right"])
@torch.no_grad()
def test_text_last_token_matches_unpadded_rows(side):
    expected = load_file(str(DATA / "text_expected.safetensors"))
    arch = {"config": TEXT_ARCH["config"], "lora": TEXT_ARCH["lora"]}
    model = load_component("text", DATA / "text_lora.pt", arch)
    out = model(expected[f"input_ids_{side}"], expected[f"attention_mask_{side}"])
    assert max_err(out, expected["last_token"]) < TOL


@torch.no_grad()
def test_combiner_output_of_a_scan_does_not_change_with_padding_windows():
    """A scan's [CLS; mean] is the same alone and padded next to a larger scan (keys masked)."""
    torch.manual_seed(0)
    arch = ARCH["combiner"]
    model = load_component("combiner", DATA / "combiner.pt", arch)
    small, big = (2, 2, 1), (3, 2, 2)
    xs, xb = torch.randn(1, 4, 192), torch.randn(1, 12, 192)
    alone = model.scan(xs, grid_index(small)[None], torch.tensor([small]), torch.ones(1, 4, dtype=torch.bool))
    tokens = torch.zeros(2, 12, 192)
    tokens[0, :4], tokens[1] = xs[0], xb[0]
    index = torch.zeros(2, 12, 3, dtype=torch.long)
    index[0, :4], index[1] = grid_index(small), grid_index(big)
    mask = torch.zeros(2, 12, dtype=torch.bool)
    mask[0, :4], mask[1] = True, True
    both = model.scan(tokens, index, torch.tensor([small, big]), mask)
    assert max_err(both[0], alone[0]) < 1e-5
    depth_alone = model.depth(xs[..., :96], grid_index(small)[None], torch.tensor([small]),
                              torch.ones(1, 4, dtype=torch.bool), 1)
    depth_both = model.depth(tokens[..., :96], index, torch.tensor([small, big]), mask, 2)
    assert max_err(depth_both[0, :1], depth_alone[0]) < 1e-5


def test_axis_patch_proj_starts_from_the_mean_half_of_patch_proj():
    model = load_component("combiner", DATA / "combiner.pt", ARCH["combiner"])
    assert isinstance(model, FeatureCombiner)
    assert torch.equal(model.axis_patch_proj.weight, model.patch_proj.weight[:, 96:])
    assert torch.equal(model.axis_patch_proj.bias, model.patch_proj.bias)


def test_rescale_coords_only_in_training():
    torch.manual_seed(0)
    model = load_component("combiner", DATA / "combiner.pt", ARCH["combiner"])
    model = FeatureCombiner(type(model.spec)(96, 96, 2, 4, 2.0))
    x = torch.randn(2, 12, 192)
    index = grid_index((3, 2, 2))[None].expand(2, -1, -1)
    grid = torch.tensor([[3, 2, 2]] * 2)
    model.eval()
    assert torch.equal(model(x, index, grid), model(x, index, grid))
    model.train()
    assert not torch.allclose(model(x, index, grid), model(x, index, grid))


def test_a_backbone_file_of_another_architecture_is_refused():
    arch = {**ARCH["backbone"], "embed_dim": 120, "num_heads": 4}
    with pytest.raises(WeightFileError, match=r"backbone\.pt: weights do not fit.*of another shape"):
        load_component("backbone", DATA / "backbone.pt", arch)
