"""The paper preset walked as a GPU cluster runs it, at tiny dims on CPU (issue 26).

config/paper.yaml with every paper switch as it ships (keep_volumes: false, the frozen SPECTRE encoder from
``model.weights_dir``, a Qwen3 text tower with last-token pooling and LoRA with gradient checkpointing, gradient
caching with a global batch larger than the micro-batch, the RadFinder dev split, the paper_* tables); only the
sizes shrink: the demo cohort's data in the public layouts (tests/conftest.py's ``cohort_root``), SPECTRE-format
weights at the oracle's dims imported with ``ctvlp import-weights`` (tests/data/spectre), a text tower folder in
Hugging Face layout with a Qwen3 config and **bf16** safetensors (tests/hf_folders.py), one ablation row.

The workflow runs from a Python where ctvlp is not installed (tests/bare_env.py: as ``--sdm conda`` deploys
envs/gpu.yaml), and the train rule launches torchrun with 2 gloo processes there. Then the CLI classifies a scan
with the trained model.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from bare_env import bare_python, clean_env
from conftest import REPO, merged
from ctvlp.core.metrics import zero_shot_probabilities
from hf_folders import saved_dtypes, tiny_qwen3_folder

SPECTRE = REPO / "tests" / "data" / "spectre"
ARCH = json.loads((SPECTRE / "README.json").read_text())

pytestmark = [pytest.mark.workflow, pytest.mark.slow]


def journey_config(tmp: Path, cohort: Path, weights: Path, text: Path) -> dict:
    """config/paper.yaml's switches, the demo cohort's folders as the data roots, the oracle's dims."""
    head = ARCH["siglip_head"]
    rate = {name: str(cohort / name / "report_structuring" / "p0rate_en") for name in ("ct_rate", "merlin", "inspect")}
    return {
        "results": str(tmp / "results"), "logs": str(tmp / "logs"),
        "data": {"hospital": {"dicom_root": str(cohort / "hospital" / "DICOM"),
                              "reports_csv": str(cohort / "hospital" / "reports" / "reports.csv")},
                 "ct_rate": {"root": str(cohort / "ct_rate" / "dataset"), "release": "fixed",
                             "rate_labels": rate["ct_rate"]},
                 "rad_chestct": {"root": str(cohort / "rad_chestct")},
                 "merlin": {"root": str(cohort / "merlin"), "rate_labels": rate["merlin"]},
                 "inspect": {"root": str(cohort / "inspect"), "rate_labels": rate["inspect"]}},
        # the RATE question labels the paper trains with (its prompt groups rate_chest, rate_abdomen): the cohort's
        "text": {"rate": {"config_dir": str(cohort / "rate" / "modalities_en")}},
        "ingest": {"workers": 1, "index_parts": 2, "index_buckets": 4, "prefer_thickness_mm": 1.5, "min_slices": 8},
        "splits": {"hospital": [0.3, 0.25, 0.45]},
        "preprocess": {"spacing_mm": [3.0, 3.0, 6.0], "window_voxels": [32, 32, 8], "shards": 2},
        "model": {"weights_dir": str(weights),
                  "window_encoder": {"patch_voxels": [8, 8, 2], "dim": 96, "depth": 2, "heads": 4},
                  "scan_encoder": {"dim": 96, "depth": 2, "heads": 4},
                  "heads": {"hidden_dim": head["hidden_dim"], "bottleneck_dim": head["bottleneck_dim"]},
                  "embed_dim": head["output_dim"],
                  "text_encoder": {"path": str(text), "max_tokens": 64,
                                   "lora": {"r": 4, "alpha": 16, "dropout": 0.05,
                                            "target_modules": ["q_proj", "v_proj"]}}},
        # prompt_groups: the paper's {ct_rate, rate_chest, rate_abdomen} (once stopped training at its start: no
        # training input held the RATE prompts; now rule train reads them beside text/prompts.parquet)
        "train": {"ablations": str(tmp / "ablations.tsv"), "epochs": 1, "batch_size": 8, "micro_batch": 2,
                  "prompt_batch": 8, "loader_workers": 0, "checkpoint_every": 2},
        "compute": {"train_gpus": 2, "allow_cpu": True, "train_threads": 2},
        "evaluate": {"bootstrap_resamples": 20,
                     "paper": {"resamples": 20, "pool_sizes": [2, 4], "pool_ks": [1, 2], "pool_repeats": 5}},
    }


@pytest.fixture(scope="module")
def journey(tmp_path_factory, request):
    keep = os.environ.get("CTVLP_JOURNEY_RUN")  # a folder to keep and reuse between sessions (as CTVLP_TEST_RUN)
    tmp = Path(keep) if keep else tmp_path_factory.mktemp("paper_journey")
    tmp.mkdir(parents=True, exist_ok=True)
    if keep:  # its own copy of the cohort, so that the data roots (config values) stay the same
        cohort_root = tmp / "cohort"
        if not (cohort_root / "ground_truth" / "cohort.json").exists():
            from ctvlp.demo import generate_demo

            generate_demo(cohort_root, request.getfixturevalue("cohort_settings"), workers=2)
    else:
        cohort_root = request.getfixturevalue("cohort_root")
    text = tmp / "qwen3" if (tmp / "qwen3" / "config.json").exists() else tiny_qwen3_folder(tmp / "qwen3")
    assert saved_dtypes(text) == {"BF16"}  # as Qwen3-Embedding is published
    paper = merged(yaml.safe_load((REPO / "config/config.yaml").read_text()),
                   yaml.safe_load((REPO / "config/paper.yaml").read_text()))
    rows = (REPO / "config/ablations_paper.tsv").read_text().splitlines()  # the paper's first row alone
    (tmp / "ablations.tsv").write_text("\n".join(r for r in rows if r.startswith(("#", "run\t", "full\t"))) + "\n")
    override = journey_config(tmp, cohort_root, tmp / "weights", text)
    # the SPECTRE-format files into model.weights_dir, as docs/model-and-training.md tells a user to
    full = tmp / "full.yaml"  # config.yaml + paper.yaml + the override, as Snakemake merges them
    effective = merged(paper, override)
    full.write_text(yaml.safe_dump(effective))
    python = bare_python(tmp / "venv")
    ctvlp = [str(python), "-c", "import sys; sys.path.insert(0, sys.argv.pop(1)); from ctvlp.cli import main; "
             "sys.exit(main(sys.argv[1:]))", str(REPO / "src")]
    imported = subprocess.run([*ctvlp, "import-weights", "--config", str(full), "--out", str(tmp / "weights"),
                               "--backbone", str(SPECTRE / "backbone.pt"), "--combiner", str(SPECTRE / "combiner.pt"),
                               "--image-head", str(SPECTRE / "siglip_head.pt")],
                              capture_output=True, text=True, env=clean_env())
    assert imported.returncode == 0, imported.stdout + imported.stderr
    # the workflow from the Python without ctvlp: Snakemake, every rule script and torchrun's workers
    env = {**clean_env(), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    proc = subprocess.run([str(python), "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(tmp),
                           "--cores", "2", "--configfile", str(full)],
                          capture_output=True, text=True, env=env, cwd=tmp, timeout=1800)
    if proc.returncode != 0:
        logs = "\n".join(f"== {p}\n{p.read_text()[-3000:]}" for p in sorted((tmp / "logs").rglob("*.log"))
                         if "rror" in p.read_text())
        pytest.fail(f"paper journey failed:\n{proc.stderr[-6000:]}\n{logs[-8000:]}")
    return tmp, full, ctvlp, proc, cohort_root


def test_the_paper_preset_runs_from_a_python_without_ctvlp(journey):
    tmp, _, _, proc, _ = journey
    results = tmp / "results"
    # keep_volumes: false: the preprocessing jobs wrote the features (no window_features job); the volume cache holds
    # the held-out hospital volumes only (the qualitative figures), far fewer than the volumes with features
    assert not (tmp / "logs" / "window_features").exists()
    features = list((results / "features" / "volumes").glob("*.safetensors"))
    cached = list((results / "cache" / "volumes").rglob("*.npy"))
    assert features and len(cached) < len(features), (len(cached), len(features))
    train_log = (tmp / "logs" / "train" / "full.log").read_text()
    assert "torch.distributed.run" in train_log and "--nproc_per_node=2" in train_log, train_log[-2000:]
    assert "No module named 'ctvlp'" not in train_log
    final = json.loads((results / "runs" / "full" / "final.json").read_text())
    assert final["steps"] > 0 and final["test"], final  # the final test evaluation ran (outside autocast, bf16 files)
    config = json.loads((results / "runs" / "full" / "config.json").read_text())
    assert config["train"]["batch_size"] > config["train"]["micro_batch"]  # gradient caching
    assert config["model"]["text_encoder"]["finetune"] == "lora" and config["preprocess"]["keep_volumes"] is False
    # the paper's prompt groups, the RATE questions' included (the cohort has RATE labels)
    assert set(config["train"]["prompt_groups"]) == {"ct_rate", "rate_chest", "rate_abdomen"}, config["train"]


def test_the_evaluation_and_the_paper_tables(journey):
    tmp = journey[0]
    tables = tmp / "results" / "tables"
    for name in ("paper_results", "paper_zero_shot", "paper_retrieval", "paper_v2v", "paper_localization",
                 "paper_merlin", "paper_comparison"):
        text = (tables / f"{name}.md").read_text()
        assert text.count("|") > 8 and "| nan" not in text.lower(), f"{name}.md:\n{text[:800]}"
    metrics = json.loads((tmp / "results" / "runs" / "full" / "metrics.json").read_text())
    assert metrics, "empty metrics.json"


def test_the_cli_classifies_a_held_out_scan_as_the_evaluation_did(journey):
    """The CLI (outside autocast, the tower from bf16 files) on the trained run equals the evaluation's numbers."""
    tmp, _, ctvlp, _, cohort_root = journey
    run = tmp / "results" / "runs" / "full"
    meta = pd.read_parquet(run / "embeddings.parquet")
    hosp = meta[meta.set == "hospital"].reset_index(drop=True)
    index = pd.read_parquet(tmp / "results" / "ingest" / "dicom_index")
    i, volume = next((i, v) for i, v in enumerate(hosp.volume_id) if (index.series_key.str[1:] == v[1:]).any())
    path = index[index.series_key.str[1:] == volume[1:]].path.iloc[0]
    folder = cohort_root / "hospital" / "DICOM" / Path(path).parent
    out = subprocess.run([*ctvlp, "classify", "--checkpoint", str(run), "--scan", str(folder), "--json"],
                         capture_output=True, text=True, env=clean_env(), timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    probs = json.loads(out.stdout)
    emb = np.load(run / "embeddings.npz")
    scale = json.loads((run / "config.json").read_text())["train"]["prompt_scale"]
    expected = zero_shot_probabilities(emb["hospital/scan_prompt"][i:i + 1], emb["hospital/pos_ensemble"],
                                       emb["hospital/neg_ensemble"], scale)[0]
    np.testing.assert_allclose(list(probs.values()), expected, atol=1e-3)
