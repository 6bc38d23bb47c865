"""Config validation and dry runs: a typo or a missing root stops the run with one clear line."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from conftest import REPO, run_snakemake, write_config
from ctvlp.config import ConfigError, check_inputs, validate_config

SCHEMA = REPO / "workflow" / "schemas" / "config.schema.yaml"


def load(name: str) -> dict:
    return yaml.safe_load((REPO / "config" / name).read_text())


def merged(base: dict, over: dict) -> dict:
    out = dict(base)
    for key, value in over.items():
        out[key] = merged(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def test_demo_and_paper_configs_validate():
    base = load("config.yaml")
    validate_config(base, SCHEMA)
    validate_config(merged(base, load("paper.yaml")), SCHEMA)


@pytest.mark.parametrize("mutate, key", [
    (lambda c: c["preprocess"].update(spacng_mm=[1, 1, 1]), "preprocess.spacng_mm"),
    (lambda c: c["model"]["text_encoder"].update(pooling="max"), "model.text_encoder.pooling"),
    (lambda c: c["preprocess"].update(window_voxels=[32, 32]), "preprocess.window_voxels"),
    (lambda c: c.update(sede=1), "sede"),
])
def test_schema_names_the_bad_key(mutate, key):
    cfg = load("config.yaml")
    mutate(cfg)
    with pytest.raises(ConfigError, match=rf"config key '{key}'"):
        validate_config(cfg, SCHEMA)


def test_missing_data_root_is_named(tmp_path):
    cfg = merged(load("config.yaml"), load("paper.yaml"))
    with pytest.raises(ConfigError, match=r"data\.hospital\.dicom_root.*does not exist"):
        check_inputs(cfg)


def fake_paper_roots(tmp_path: Path) -> dict:
    roots = {"dicom": tmp_path / "dicom", "ctrate": tmp_path / "ctrate", "rad": tmp_path / "rad"}
    for path in roots.values():
        path.mkdir()
    (tmp_path / "reports.csv").write_text("AccessionNumber,ReportText\n")
    return {"results": str(tmp_path / "results"), "logs": str(tmp_path / "logs"),
            "data": {"hospital": {"dicom_root": str(roots["dicom"]), "reports_csv": str(tmp_path / "reports.csv")},
                     "ct_rate": {"root": str(roots["ctrate"]), "release": "fixed"},
                     "rad_chestct": {"root": str(roots["rad"])}}}


def test_dry_runs_of_demo_and_paper_configs(tmp_path):
    demo = run_snakemake(tmp_path, "-n", "--cores", "1")
    assert demo.returncode == 0, demo.stderr
    assert "demo_cohort" in demo.stdout
    paper = write_config(tmp_path / "paper_roots.yaml", fake_paper_roots(tmp_path))
    proc = run_snakemake(tmp_path, "-n", "--cores", "1", "--configfile", str(REPO / "config/config.yaml"),
                         str(REPO / "config/paper.yaml"), str(paper))
    assert proc.returncode == 0, proc.stderr
    assert "demo_cohort" not in proc.stdout


def test_workflow_stops_before_any_job_on_bad_config(tmp_path):
    bad = write_config(tmp_path / "bad.yaml", {"preprocess": {"shard": 3}})
    proc = run_snakemake(tmp_path, "-n", "--cores", "1", "--configfile", str(REPO / "config/config.yaml"),
                         str(bad))
    assert proc.returncode != 0
    assert "config key 'preprocess.shard': unknown key" in proc.stderr
    missing = run_snakemake(tmp_path, "-n", "--cores", "1", "--configfile", str(REPO / "config/config.yaml"),
                            str(REPO / "config/paper.yaml"))
    assert missing.returncode != 0
    assert "config key 'data.hospital.dicom_root': directory '/data/hospital/dicom' does not exist" in missing.stderr


def test_paper_preset_dry_runs_on_the_slurm_profile_with_gpu_resources(tmp_path):
    paper = write_config(tmp_path / "paper_roots.yaml", fake_paper_roots(tmp_path))
    proc = run_snakemake(tmp_path, "-n", "--workflow-profile", str(REPO / "profiles/slurm"), "--configfile",
                         str(REPO / "config/config.yaml"), str(REPO / "config/paper.yaml"), str(paper),
                         "--printshellcmds")
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    # paper preset: keep_volumes false, so the preprocessing jobs extract the window features on the GPU
    assert "rule window_features:" not in out and "rule train:" in out
    preprocess_block = out.split("rule preprocess:")[1].split("\n\n")[0]
    assert "gpu=1" in preprocess_block and "features/shard_" in preprocess_block, preprocess_block
    train_block = out.split("rule train:")[1].split("\n\n")[0]
    assert "gpu=4" in train_block and "cpus_per_gpu=8" in train_block, train_block
    assert "gres" not in out and "tasks=" not in out  # never gres next to gpu, no tasks in default resources


def test_lint_is_clean(tmp_path):
    proc = run_snakemake(tmp_path, "--lint", "--configfile", str(REPO / "config/config.yaml"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Lints for" not in proc.stdout + proc.stderr, (proc.stdout + proc.stderr)[-3000:]
