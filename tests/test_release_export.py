"""``ctvlp export-hf`` and the released run kind: a trained run written in RadFinder's release layout and read back
(``load_release``, rule ``import_release``) gives the same embeddings (1e-5) and the same metrics.

The fast test builds a run folder from the demo config (random weights, non-trivial feature standardisation, which
the export folds into the projections); the workflow tests read the session's ``.test`` run, whose ``released``
row evaluates the export of its own ``full`` run without a training job."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from ctvlp.cli import main, merged_config
from ctvlp.core.config import resolve_model_path
from ctvlp.core.state_dict import save_tensors
from ctvlp.features.window import collate, volume_tokens
from ctvlp.models.ctvlp_model import CTVLPModel
from ctvlp.models.release import load_release
from ctvlp.models.window_encoder import WindowEncoderSpec, build_window_encoder

REPO = Path(__file__).resolve().parents[1]
ATOL = 1e-5


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """A run folder as rule train leaves it (config.json + best.safetensors), random weights."""
    run = tmp_path_factory.mktemp("runs") / "full"
    run.mkdir()
    config = merged_config([REPO / "config/config.yaml"])
    config["pretrain"]["enabled"] = False  # the seeded random window encoder: no pretraining file needed
    config["results"] = str(run.parent)
    torch.manual_seed(3)
    model = CTVLPModel.from_config(config, load_window_weights=False)
    d = model.combiner.spec.in_dim
    model.set_feature_stats((torch.randn(2 * d), torch.rand(2 * d) + 0.5), (torch.randn(d), torch.rand(d) + 0.5))
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(0.05 * torch.randn_like(p))
        model.scale.t.fill_(2.7)
    (run / "config.json").write_text(json.dumps(config))
    save_tensors(model.trainable_state(), run / "best.safetensors")
    (run / "metrics.json").write_text(json.dumps({"ct_rate": {"set": "ct_rate", "zero_shot": {"ensemble": {
        "macro_auc": {"value": 0.61, "ci_low": 0.5, "ci_high": 0.7}}}}}))
    return run


def windows(config: dict, grid: tuple[int, int, int], seed: int) -> torch.Tensor:
    wx, wy, wz = config["preprocess"]["window_voxels"]
    g = torch.Generator().manual_seed(seed)
    return torch.rand(int(np.prod(grid)), 1, wx, wy, wz, generator=g)


@pytest.mark.slow  # builds, exports and reloads a demo-size model with its MiniLM text tower
def test_export_round_trip(run_dir, tmp_path):
    from ctvlp.models.loading import load_trained_model

    out = tmp_path / "export"
    assert main(["export-hf", str(run_dir), str(out)]) == 0
    assert {p.name for p in out.iterdir()} == {"config.json", "model.safetensors", "preprocessor_config.json",
                                               "README.md"}
    card = (out / "README.md").read_text()
    assert "license: cc-by-nc-sa-4.0" in card and "ct_rate/zero-shot AUC" in card and "## Training data" in card
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["model_type"] == "radfinder" and "radfinder_model_config" in cfg

    model, config = load_trained_model(run_dir)
    release = load_release(out, resolve_model_path(cfg["ctvlp"]["text_model"]))  # the run's text tower folder
    encoder = build_window_encoder(WindowEncoderSpec.from_config(config), config["seed"])
    grids = [(2, 1, 3), (1, 2, 2)]
    px = [windows(config, g, i) for i, g in enumerate(grids)]
    with torch.no_grad():
        items = []
        for g, x in zip(grids, px):
            f = encoder(x)
            items.append(volume_tokens({k: v.reshape(*g, *v.shape[1:]) for k, v in f.items()}))
        views = model.encode_scan_views(collate(items))
        texts = ["Findings: a nodule in the right lower lobe.\nImpressions: nodule.\n", "Findings: normal.\n"]
        reports, snippets = model.encode_reports(texts), model.encode_snippets(texts)
    pixel_values, grid_size = torch.cat(px), torch.tensor(grids)
    tok = model.text.tokenizer(texts, padding=True, return_tensors="pt")
    slices, valid, snippet_emb = release.localize(pixel_values, grid_size, tok["input_ids"], tok["attention_mask"])
    pairs = {"scan": (release.encode_image_retrieval(pixel_values, grid_size), views["scan"]),
             "scan_prompt": (release.encode_image_disease(pixel_values, grid_size), views["scan_prompt"]),
             "report": (release.encode_text(tok["input_ids"], tok["attention_mask"]), reports),
             "snippet": (snippet_emb, snippets),
             "depth": (slices[valid], views["depth"][valid])}
    errors = {k: (a - b).abs().max().item() for k, (a, b) in pairs.items()}
    assert max(errors.values()) <= ATOL, errors
    assert release.model.scale.t.item() == pytest.approx(2.7)


def test_export_of_a_missing_run_is_one_line(tmp_path, capsys):
    assert main(["export-hf", str(tmp_path / "nothing"), str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("ctvlp export-hf: error:") and len(err.strip().splitlines()) == 1


# ---- the workflow's released row (.test/ablations.tsv: released = export of full) ------------------------------

def test_released_row_has_no_training_job(test_run):
    results, logs = test_run / "results", test_run / "logs"
    run = results / "runs" / "released"
    final = json.loads((run / "final.json").read_text())
    assert final["source"] == "released" and final["steps"] == 0 and final["release_run"] == "full"
    assert not (logs / "train" / "released.log").exists() and (logs / "import_release" / "released.log").is_file()
    assert not (run / "train_log.csv").exists() and not (run / "checkpoints").exists()
    assert (results / "export" / "full" / "model.safetensors").is_file()
    assert "released" in (results / "tables" / "ablations.md").read_text()


def test_released_row_reproduces_the_exported_run(test_run):
    """export -> import -> the same embeddings (1e-5) and the same metrics as the run that was exported."""
    runs = test_run / "results" / "runs"
    full, released = (np.load(runs / r / "embeddings.npz") for r in ("full", "released"))
    assert set(full.files) == set(released.files)
    worst = max((np.abs(full[k].astype(float) - released[k].astype(float)).max() if full[k].size else 0.0, k)
                for k in full.files if full[k].dtype.kind == "f")
    assert worst[0] <= ATOL, worst
    for k in full.files:
        if full[k].dtype.kind != "f":
            assert np.array_equal(full[k], released[k]), k
    m_full, m_rel = (json.loads((runs / r / "metrics.json").read_text()) for r in ("full", "released"))
    assert flat_numbers(m_full) == pytest.approx(flat_numbers(m_rel), abs=1e-4, nan_ok=True)


def flat_numbers(tree, prefix="") -> dict:
    out = {}
    if isinstance(tree, dict):
        for k, v in tree.items():
            out.update(flat_numbers(v, f"{prefix}/{k}"))
    elif isinstance(tree, list):
        for i, v in enumerate(tree):
            out.update(flat_numbers(v, f"{prefix}/{i}"))
    elif isinstance(tree, (int, float)) and not isinstance(tree, bool):
        out[prefix] = float(tree)
    return out


def test_the_cli_reads_the_released_run(test_run, tmp_path):
    """`ctvlp embed` on the released run answers as on the run it was exported from."""
    runs = test_run / "results" / "runs"
    cfg = json.loads((runs / "released" / "config.json").read_text())
    assert cfg["train"]["source"] == "released" and cfg["model"]["text_encoder"]["finetune"] == "frozen"
    scan = sorted((test_run / "demo_data" / "ct_rate").rglob("*.nii.gz"))[0]
    out = {}
    for run in ("full", "released"):
        assert main(["embed", "--checkpoint", str(runs / run), "--scan", str(scan), "--out",
                     str(tmp_path / f"{run}.npy")]) == 0
        out[run] = np.load(tmp_path / f"{run}.npy")
    assert np.abs(out["full"] - out["released"]).max() <= ATOL
