"""`ctvlp import-weights`: SPECTRE-format files (the oracle models) -> model.weights_dir -> the workflow's model.

The imported folder must give the workflow's own CTVLPModel the oracle outputs (window encoder folded
on import, combiner, image head and its copy, the Qwen3 tower with its loralib LoRA), and every bad
file must stop the import with one line naming it, exit 2, nothing written.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from ctvlp.cli import main
from ctvlp.models.ctvlp_model import CTVLPModel
from ctvlp.models.rope import grid_index
from ctvlp.models.weights_dir import model_config_problems
from ctvlp.models.window_encoder import WindowEncoderSpec, build_window_encoder

REPO = Path(__file__).resolve().parents[1]
DATA = Path(__file__).parent / "data" / "spectre"
ARCH = json.loads((DATA / "README.json").read_text())
TEXT_ARCH = json.loads((DATA / "text_README.json").read_text())
EXPECTED = load_file(str(DATA / "expected.safetensors"))
TOL = 1e-4


def tiny_qwen_folder(folder: Path, state: dict[str, torch.Tensor]) -> Path:
    """A local HF folder of the oracle's Qwen3 (its base weights) with a word-level tokenizer of its vocabulary."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast, Qwen3Config, Qwen3Model

    model = Qwen3Model(Qwen3Config(**TEXT_ARCH["config"]))
    model.load_state_dict({k: v for k, v in state.items() if not k.endswith(("lora_A", "lora_B"))})
    model.save_pretrained(folder)
    vocab = {f"w{i}": i for i in range(TEXT_ARCH["config"]["vocab_size"])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="w0"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="w0", pad_token="w1").save_pretrained(folder)
    return folder


def oracle_config(tmp_path: Path, text_path: Path) -> Path:
    """The demo config at the oracle's dims (window 96/2/4 with patch 8x8x2, combiner 96/2/4, head 64/16/24)."""
    config = yaml.safe_load((REPO / "config/config.yaml").read_text())
    m = config["model"]
    m["heads"] = {"hidden_dim": ARCH["siglip_head"]["hidden_dim"], "bottleneck_dim": ARCH["siglip_head"]["bottleneck_dim"]}
    m["embed_dim"] = ARCH["siglip_head"]["output_dim"]
    lora = TEXT_ARCH["lora"]
    m["text_encoder"].update(path=str(text_path), pooling="last_token", finetune="lora",
                             lora={"r": lora["r"], "alpha": lora["alpha"], "dropout": 0.0,
                                   "target_modules": lora["targets"]})
    path = tmp_path / "oracle.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture(scope="module")
def imported(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("weights")
    text_state = torch.load(DATA / "text_lora.pt", weights_only=True)
    config_file = oracle_config(tmp, tiny_qwen_folder(tmp / "qwen", text_state))
    out = tmp / "model"
    rc = main(["import-weights", "--config", str(config_file), "--out", str(out), "--backbone", str(DATA / "backbone.pt"),
               "--combiner", str(DATA / "combiner.pt"), "--image-head", str(DATA / "siglip_head.pt"),
               "--text-lora", str(DATA / "text_lora.pt")])
    assert rc == 0
    return tmp, config_file, out


def test_import_writes_safetensors_and_a_manifest(imported):
    _, _, out = imported
    manifest = json.loads((out / "manifest.json").read_text())
    assert sorted(manifest["parts"]) == ["combiner", "image_head", "text", "window_encoder"]
    assert manifest["parts"]["window_encoder"] == {"file": "window_encoder.safetensors", "from": "backbone.pt"}
    assert manifest["text_base_checked"].endswith("qwen")  # the merged-LoRA check ran against the config's tower
    assert manifest["sources"]["text_lora.pt"] == hashlib.sha256((DATA / "text_lora.pt").read_bytes()).hexdigest()
    assert not list(out.glob("*.pt"))
    folded = load_file(str(out / "window_encoder.safetensors"))["patch_embed.proj.weight"]
    assert tuple(folded.shape) == (96, 1, 8, 8, 2)


@torch.no_grad()
def test_the_workflow_model_built_from_the_folder_gives_the_oracle_outputs(imported):
    _, config_file, out = imported
    config = yaml.safe_load(config_file.read_text())
    config["model"]["weights_dir"] = str(out)
    config["pretrain"]["enabled"] = False  # as the paper preset: SPECTRE's weights, no own pretraining
    assert model_config_problems(config) == []
    window = build_window_encoder(WindowEncoderSpec.from_config(config), config["seed"])
    assert float((window.forward_features(EXPECTED["folded_input"]) - EXPECTED["folded_tokens"]).abs().max()) < TOL
    model = CTVLPModel.from_config(config).eval()
    assert not model.standardize_features
    grid = ARCH["combiner"]["grid_size"]
    x = EXPECTED["combiner_input"]
    tokens = model.combiner(x, grid_index(tuple(grid))[None].expand(len(x), -1, -1), torch.tensor([grid] * len(x)))
    assert float((tokens - EXPECTED["combiner_tokens"]).abs().max()) < TOL
    for head in (model.image_head, model.image_copy_head):
        assert float((head(EXPECTED["head_input"]) - EXPECTED["head_output"]).abs().max()) < TOL
    assert model.image_copy_head is not model.image_head
    text = load_file(str(DATA / "text_expected.safetensors"))
    for side in ("left", "right"):
        pooled = model.text.tower(text[f"input_ids_{side}"], text[f"attention_mask_{side}"])
        assert float((pooled - text["last_token"]).abs().max()) < TOL


def test_a_config_whose_dims_do_not_fit_the_folder_is_named(imported):
    _, config_file, out = imported
    config = yaml.safe_load(config_file.read_text())
    config["model"]["weights_dir"] = str(out)
    config["pretrain"]["enabled"] = False  # as the paper preset: SPECTRE's weights, no own pretraining
    config["model"]["scan_encoder"]["depth"] = 3
    problems = model_config_problems(config)
    assert len(problems) == 1 and "combiner.depth = 3 does not fit the weights" in problems[0]
    config["model"]["window_encoder"]["heads"] = 8  # 96 / 8 = 12: fine for RoPE, but not the weights
    config["model"]["scan_encoder"]["heads"] = 5
    assert any("scan_encoder': dim 96 / heads 5" in p for p in model_config_problems(config))


class NotATensor:  # a pickled object of a class: code a weights_only load must refuse
    pass


def bad_files(tmp: Path) -> dict[str, tuple[dict, str]]:
    state = torch.load(DATA / "combiner.pt", weights_only=True)
    missing = dict(state)
    missing.pop("blocks.1.ls2.gamma")
    torch.save(missing, tmp / "missing.pt")
    raw = (DATA / "combiner.pt").read_bytes()
    (tmp / "truncated.pt").write_bytes(raw[: len(raw) // 2])
    torch.save({"cls_token": NotATensor()}, tmp / "code.pt")
    text = torch.load(DATA / "text_lora.pt", weights_only=True)
    scaling = TEXT_ARCH["lora"]["scaling"]
    merged = dict(text)
    for key in text:
        if key.endswith(".lora_A"):
            module = key[: -len(".lora_A")]
            merged[f"{module}.weight"] = text[f"{module}.weight"] + scaling * text[f"{module}.lora_B"] @ text[key]
    torch.save(merged, tmp / "merged.pt")
    return {"wrong architecture": ({"--combiner": DATA / "backbone.pt"}, r"backbone\.pt: weights do not fit"),
            "missing tensor": ({"--combiner": tmp / "missing.pt"}, r"missing\.pt: .*1 missing.*blocks\.1\.ls2\.gamma"),
            "truncated": ({"--combiner": tmp / "truncated.pt"}, r"truncated\.pt: not a readable torch file"),
            "pickle with code": ({"--combiner": tmp / "code.pt"}, r"code\.pt: the pickle needs code"),
            "merged lora": ({"--text-lora": tmp / "merged.pt"}, r"merged\.pt: its base weights already contain")}


@pytest.mark.parametrize("case", ["wrong architecture", "missing tensor", "truncated", "pickle with code", "merged lora"])
def test_bad_weight_files_stop_with_one_line_and_write_nothing(imported, case, capsys):
    tmp, config_file, _ = imported
    files, message = bad_files(tmp)[case]
    args = {"--backbone": DATA / "backbone.pt", "--combiner": DATA / "combiner.pt", **files}
    out = tmp / f"out_{case.replace(' ', '_')}"
    argv = ["import-weights", "--config", str(config_file), "--out", str(out)]
    for flag, path in args.items():
        argv += [flag, str(path)]
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert re.search(message, err), err
    assert not out.exists() and not list(tmp.glob(f".{out.name}.*"))


def test_radfinder_trained_model_imports_with_its_copy_heads_depth_projection_and_scale(imported):
    """RadFinder's export (one safetensors, keys ``model.<module>.``, torch's newer weight-norm names) brings
    trained copies, axis_patch_proj and logit scale; the workflow's model takes them instead of deriving them."""
    from safetensors.torch import save_file

    tmp, config_file, _ = imported
    torch.manual_seed(1)
    state = {f"model.backbone_image.{k}": v for k, v in torch.load(DATA / "backbone.pt", weights_only=True).items()}
    combiner = torch.load(DATA / "combiner.pt", weights_only=True)
    state.update({f"model.feature_comb_image.{k}": v for k, v in combiner.items()})
    axis = torch.randn(96, 96)
    state["model.feature_comb_image.axis_patch_proj.weight"] = axis
    state["model.feature_comb_image.axis_patch_proj.bias"] = torch.zeros(96)
    head = torch.load(DATA / "siglip_head.pt", weights_only=True)
    copy_head = {k: v + 0.01 * torch.randn_like(v) for k, v in head.items()}
    state.update({f"model.projection_image.{k}": v for k, v in head.items()})
    for k, v in copy_head.items():  # torch.nn.utils.parametrizations.weight_norm's names
        k = k.replace("weight_g", "parametrizations.weight.original0").replace("weight_v", "parametrizations.weight.original1")
        state[f"model.projection_image_copy.{k}"] = v
    state["model.criterion.t"], state["model.criterion.b"] = torch.tensor(2.5), torch.tensor(-9.0)
    source = tmp / "radfinder.safetensors"
    save_file({k: v.contiguous() for k, v in state.items()}, str(source))
    out = tmp / "radfinder_model"
    assert main(["import-weights", "--config", str(config_file), "--out", str(out), "--radfinder", str(source)]) == 0
    config = yaml.safe_load(config_file.read_text())
    config["model"]["weights_dir"] = str(out)
    config["pretrain"]["enabled"] = False  # as the paper preset: SPECTRE's weights, no own pretraining
    model = CTVLPModel.from_config(config).eval()
    assert torch.equal(model.combiner.axis_patch_proj.weight, axis)
    assert torch.equal(model.image_copy_head.last_layer.weight_v, copy_head["last_layer.weight_v"])
    assert torch.equal(model.image_head.last_layer.weight_v, head["last_layer.weight_v"])
    assert float(model.scale.t) == 2.5 and float(model.scale.b) == -9.0
    state["model.some_other.weight"] = torch.zeros(2)
    save_file({k: v.contiguous() for k, v in state.items()}, str(source))
    assert main(["import-weights", "--config", str(config_file), "--out", str(tmp / "bad"), "--radfinder", str(source)]) == 2
    assert not (tmp / "bad").exists()


def test_source_folder_is_read_by_the_published_file_names(imported):
    tmp, config_file, _ = imported
    source = tmp / "released"
    source.mkdir()
    for name, oracle in (("spectre_backbone_vit_large_patch16_128.pt", "backbone.pt"),
                         ("spectre_combiner_feature_vit_large.pt", "combiner.pt"),
                         ("SigLIP_projection_head_image.pt", "siglip_head.pt")):
        (source / name).write_bytes((DATA / oracle).read_bytes())
    out = tmp / "from_source"
    assert main(["import-weights", "--config", str(config_file), "--out", str(out), "--source", str(source)]) == 0
    parts = json.loads((out / "manifest.json").read_text())["parts"]
    assert {p: v["from"] for p, v in parts.items()} == {
        "window_encoder": "spectre_backbone_vit_large_patch16_128.pt",
        "combiner": "spectre_combiner_feature_vit_large.pt", "image_head": "SigLIP_projection_head_image.pt"}
