"""A text tower published in bf16 (as Qwen3-Embedding is) works on every path that runs outside autocast.

transformers 5 loads a checkpoint in its files' dtype, so before the fix the tower came up bf16 under
float32 heads: training and the dev pass (under autocast) worked and the final test evaluation of a run,
rule ``embed`` and the CLI stopped with ``mat1 and mat2 must have the same dtype``. These tests build the
model from a folder with **bf16** safetensors (tests/hf_folders.py) and run those paths on CPU in float32.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from ctvlp.core.config import ConfigError
from ctvlp.core.label_set import CTRATE_LABELS
from ctvlp.core.state_dict import save_tensors
from ctvlp.features.window import volume_tokens
from ctvlp.inference.embedding import embed_samples, evaluate_samples
from ctvlp.inference.scan import Prepared, ScanModel
from ctvlp.io.volume import Volume
from ctvlp.models.ctvlp_model import CTVLPModel
from ctvlp.models.text_encoder import TextEncoder, TextEncoderSpec
from ctvlp.train.data import Sample
from hf_folders import saved_dtypes, tiny_qwen3_folder

REPO = Path(__file__).resolve().parents[1]
GRID = (2, 2, 3)  # windows per axis of the fake scans


@pytest.fixture(scope="module")
def bf16_folder(tmp_path_factory) -> Path:
    folder = tiny_qwen3_folder(tmp_path_factory.mktemp("qwen3") / "tiny-qwen3")
    assert saved_dtypes(folder) == {"BF16"}  # the files are what a Qwen3-Embedding download holds
    return folder


def small_config(text_path: Path) -> dict:
    """The demo config with the tiny bf16 Qwen3 tower (LoRA on q/v, last-token pooling) and no pretraining."""
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    config["pretrain"]["enabled"] = False
    config["model"]["text_encoder"].update(path=str(text_path), pooling="last_token", finetune="lora", max_tokens=32,
                                           lora={"r": 4, "alpha": 8, "dropout": 0.0,
                                                 "target_modules": ["q_proj", "v_proj"]})
    return config


class FakeFeatures:
    """Window features of random scans in the feature files' layout (``FeatureSet.tokens``'s output)."""

    def __init__(self, dim: int, depth_per_window: int):
        self.dim, self.gz = dim, depth_per_window

    def tokens(self, volume_id: str) -> dict[str, torch.Tensor]:
        g = torch.Generator().manual_seed(int(volume_id[1:]))
        nx, ny, nz = GRID
        return volume_tokens({"cls": torch.randn(nx, ny, nz, self.dim, generator=g),
                              "mean": torch.randn(nx, ny, nz, self.dim, generator=g),
                              "depth": torch.randn(nx, ny, nz, self.gz, self.dim, generator=g)})


def fake_features(config: dict) -> FakeFeatures:
    w = config["model"]["window_encoder"]
    return FakeFeatures(w["dim"], config["preprocess"]["window_voxels"][2] // w["patch_voxels"][2])


def samples(n: int = 4) -> list[Sample]:
    texts = ["small nodule in the left upper lobe", "no pleural effusion", "large effusion right", "mild opacity"]
    labels = np.random.default_rng(0).integers(0, 2, (n, len(CTRATE_LABELS)))
    return [Sample(f"V{i}", "test", "ct_rate", f"P{i}", texts[i % 4], labels[i], [(texts[i % 4], i % 3)])
            for i in range(n)]


PROMPTS = {"positive": [[f"there is {name.lower()}"] for name in CTRATE_LABELS],
           "negative": [[f"no {name.lower()}"] for name in CTRATE_LABELS]}


def test_tower_loads_float32_from_bf16_files_and_bf16_only_when_frozen(bf16_folder):
    spec = TextEncoderSpec(str(bf16_folder), "last_token", 32, "lora", target_modules=("q_proj", "v_proj"))
    tower = TextEncoder(spec)
    assert {p.dtype for p in tower.model.parameters()} == {torch.float32}
    assert tower(["no effusion"]).dtype == torch.float32
    frozen = TextEncoder(TextEncoderSpec(str(bf16_folder), "last_token", 32, "frozen", dtype="bfloat16"))
    assert {p.dtype for p in frozen.model.parameters()} == {torch.bfloat16}
    out = frozen(["no effusion"])
    assert out.dtype == torch.float32  # the heads take it as it is
    assert torch.allclose(out, tower(["no effusion"]), atol=0.05 * float(out.abs().max()))
    with pytest.raises(ConfigError, match="bfloat16 needs finetune: frozen"):
        TextEncoder(TextEncoderSpec(str(bf16_folder), "last_token", 32, "lora", dtype="bfloat16"))


def test_final_evaluation_and_embedding_run_outside_autocast(bf16_folder):
    """``evaluate_samples`` (the run's final test evaluation) and ``embed_samples`` (rules embed / paper_embed)
    in plain float32, as they run after training."""
    config = small_config(bf16_folder)
    torch.manual_seed(0)
    model = CTVLPModel.from_config(config)
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    features, test = fake_features(config), samples()
    emb = embed_samples(model, test, features, PROMPTS)
    assert emb["report"].dtype == np.float32 and np.isfinite(emb["report"]).all()
    assert emb["scan"].shape[0] == len(test) and len(emb["depth"]) == len(test)
    metrics = evaluate_samples(model, test, features, PROMPTS, bin_mm=12.0)
    assert metrics["n"] == len(test) and np.isfinite(metrics["retrieval"]["mean_rank"])


def test_cli_scan_model_classifies_and_localizes_with_a_bf16_tower(bf16_folder, tmp_path):
    """The CLI's ``ScanModel`` on a run folder (config.json + best.safetensors) whose tower files are bf16."""
    config = small_config(bf16_folder)
    torch.manual_seed(0)
    model = CTVLPModel.from_config(config)
    run = tmp_path / "results" / "runs" / "full"
    run.mkdir(parents=True)
    config["train"]["prompt_scale"] = 10.0  # a finished run's config.json holds the resolved scale
    (run / "config.json").write_text(json.dumps(config))
    save_tensors(model.trainable_state(), run / "best.safetensors")
    scan = ScanModel(run)
    tokens = fake_features(config).tokens("V7")
    prepared = Prepared(Volume(hu=np.zeros((4, 4, 4), np.float32), affine=np.eye(4)), np.zeros((1, 1, 1), np.float16),
                        np.eye(4), tokens)
    probabilities = scan.classify(prepared)
    assert probabilities and all(0.0 <= p <= 1.0 for p in probabilities.values())
    found = scan.localize(prepared, "small nodule in the left upper lobe")
    assert found["n_bins"] == int(tokens["n_bins"]) and np.isfinite(found["profile"]).all()
