"""RadFinder's published model through ``ctvlp.models.release.load_release``: every tensor of the authors' oracle
(tests/data/radfinder: their own code on a tiny random model saved as their HF release; README.json says what
each tensor is) reproduced to 1e-5, bool tensors equal."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from ctvlp.core.state_dict import WeightFileError
from ctvlp.models.release import load_release

ORACLE = Path(__file__).parent / "data" / "radfinder"
ATOL = 1e-5


def text_config() -> dict:
    """The oracle's tiny Qwen3 (a real release: the local Qwen3-Embedding-0.6B folder)."""
    text = json.loads((ORACLE / "README.json").read_text())["architecture"]["text_backbone"]
    return {**text["config"], "rope_parameters": dict(text["rope"])}


@pytest.fixture(scope="module")
def model():
    return load_release(ORACLE / "release", text_config())


@pytest.fixture(scope="module")
def inputs():
    return load_file(str(ORACLE / "inputs.safetensors"))


def reproduce(m, inp) -> dict[str, torch.Tensor]:
    px, grid = inp["pixel_values"].float(), inp["grid_size"]
    ids, mask = inp["input_ids"], inp["attention_mask"]
    out = {"image_retrieval_emb": m.encode_image_retrieval(px, grid),
           "image_disease_emb": m.encode_image_disease(px, grid),
           "text_emb": m.encode_text(ids, mask),
           "text_emb_right": m.encode_text(inp["input_ids_right"], inp["attention_mask_right"])}
    counts = grid.long().prod(dim=1).tolist()
    scans = px.split(counts)
    for kind, fn in (("retrieval", m.encode_image_retrieval), ("disease", m.encode_image_disease)):
        out[f"image_{kind}_emb_per_scan"] = torch.cat([fn(s, grid[i:i + 1]) for i, s in enumerate(scans)])
    single = []
    for row, keep in zip(ids, mask.bool()):
        single.append(m.encode_text(row[keep][None], torch.ones(1, int(keep.sum()), dtype=torch.long)))
    out["text_emb_single"] = torch.cat(single)
    slices, valid, snippets = m.localize(px, grid, ids, mask)
    out.update(loc_scan_slice_emb=slices, loc_scan_valid_depth_mask=valid, loc_snippet_emb=snippets)
    out["loc_snippet_bin_cosine"] = torch.einsum("bde,se->bsd", F.normalize(slices, dim=-1),
                                                 F.normalize(snippets, dim=-1))
    out["logit_scale_log"], out["logit_scale"], out["logit_bias"] = m.model.scale.t, m.logit_scale, m.logit_bias
    out["retrieval_logits"] = (F.normalize(out["image_retrieval_emb"], dim=-1)
                               @ F.normalize(out["text_emb"], dim=-1).T * m.logit_scale + m.logit_bias)
    # intermediates: the workflow's own window features, token batch and combiner paths
    batch = m.image_batch(px, grid)
    window = m.model.window(px)
    wmask = torch.zeros(len(grid), *grid.long().max(dim=0).values.tolist(), dtype=torch.bool)
    for i, (h, w, d) in enumerate(grid.tolist()):
        wmask[i, :h, :w, :d] = True
    out["window_mask"] = wmask
    for name, key in (("image_backbone_cls", "cls"), ("image_backbone_patch_average", "mean"),
                      ("image_backbone_patch_axis2", "depth")):
        padded = torch.zeros(*wmask.shape, *window[key].shape[1:])
        padded[wmask] = window[key]
        out[name] = padded
    scan = m.model.scan_features(batch)
    dim = scan.shape[-1] // 2
    out["combiner_cls"], out["combiner_patch_average"] = scan[:, :dim], scan[:, dim:]
    depth = m.model.depth_features(batch)
    out["axis2_combiner_cls"], out["axis2_perslice"] = depth[:, 0, :dim], depth[..., dim:]
    out["text_pooled_hidden"] = m.text_features(ids, mask)
    return out


def test_every_oracle_tensor_reproduced(model, inputs):
    expected = load_file(str(ORACLE / "expected.safetensors"))
    got = reproduce(model, inputs)
    assert set(got) == set(expected), set(expected) ^ set(got)
    errors = {}
    for name, want in expected.items():
        have = got[name].detach()
        assert tuple(have.shape) == tuple(want.shape), name
        if want.dtype == torch.bool:
            assert torch.equal(have, want), name
        else:
            errors[name] = (have.float() - want.float()).abs().max().item()
    worst = max(errors, key=errors.get)
    print(f"oracle max abs error {errors[worst]:.2e} ({worst})")
    assert errors[worst] <= ATOL, errors


def test_localize_reads_as_mapping_or_tuple(model, inputs):
    out = model.localize(inputs["pixel_values"].float(), inputs["grid_size"], inputs["input_ids"],
                         inputs["attention_mask"])
    slices, valid, snippets = out
    assert out["scan_slice_emb"] is slices and out.snippet_emb is snippets
    assert list(out.keys()) == ["scan_slice_emb", "scan_valid_depth_mask", "snippet_emb"]
    assert valid.dtype == torch.bool and valid.sum(dim=1).tolist() == [16, 8]  # Dg * 8 bins per scan


def test_lora_never_added_twice(model):
    """The stored text weights hold the merged update: the adapters in the file are not applied again."""
    state = load_file(str(ORACLE / "release" / "model.safetensors"))
    key = "model.backbone_text.layers.0.self_attn.q_proj"
    assert f"{key}.lora_A" in state
    loaded = model.model.text.model.layers[0].self_attn.q_proj.weight
    assert torch.equal(loaded, state[f"{key}.weight"])
    assert not any("lora" in n for n, _ in model.model.text.model.named_parameters())


def test_sharded_release_and_no_code_run(tmp_path, inputs, model):
    """Shards + index load alike; the custom code files a release carries are never imported."""
    folder = tmp_path / "sharded"
    folder.mkdir()
    shutil.copy(ORACLE / "release" / "config.json", folder)
    (folder / "modeling_radfinder.py").write_text("raise SystemExit('custom code executed')\n")
    (folder / "configuration_radfinder.py").write_text("raise SystemExit('custom code executed')\n")
    state = load_file(str(ORACLE / "release" / "model.safetensors"))
    keys = sorted(state)
    halves = {"model-00001-of-00002.safetensors": keys[::2], "model-00002-of-00002.safetensors": keys[1::2]}
    weight_map = {}
    for name, part in halves.items():
        save_file({k: state[k] for k in part}, str(folder / name))
        weight_map.update({k: name for k in part})
    (folder / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    sharded = load_release(folder, text_config())
    px, grid = inputs["pixel_values"].float(), inputs["grid_size"]
    assert torch.equal(sharded.encode_image_retrieval(px, grid), model.encode_image_retrieval(px, grid))


def test_folder_without_safetensors_refused(tmp_path):
    shutil.copy(ORACLE / "release" / "config.json", tmp_path)
    (tmp_path / "pytorch_model.bin").write_bytes(b"not read")
    with pytest.raises(WeightFileError, match="pickle: not read"):
        load_release(tmp_path, text_config())
