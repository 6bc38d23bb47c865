"""Config validation and dry runs: a typo or a missing root stops the run with one clear line."""

from __future__ import annotations


import pytest

from conftest import REPO, run_snakemake, write_config
from ctvlp.core.config import ConfigError, validate_config
from ctvlp.ingest.inputs import check_inputs
from paper_roots import fake_paper_roots, load, merged

SCHEMA = REPO / "workflow" / "schemas" / "config.schema.yaml"


def test_the_schema_ships_with_the_package_and_the_workflow_reads_the_same_file():
    """The trainer takes its defaults from the schema, also from an installed wheel (the GPU image), so the
    schema is package data; the workflow's conventional path links to that one file."""
    from ctvlp.train.settings import SCHEMA_FILE

    assert SCHEMA_FILE.is_file() and SCHEMA_FILE.parent.name == "resources"
    assert SCHEMA.resolve() == SCHEMA_FILE.resolve()
    package_data = (REPO / "pyproject.toml").read_text()
    assert '"resources/*.yaml"' in package_data


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


def test_dry_runs_of_demo_and_paper_configs(tmp_path):
    demo = run_snakemake(tmp_path, "-n", "--cores", "1")
    assert demo.returncode == 0, demo.stderr
    assert "demo_cohort" in demo.stdout
    paper = write_config(tmp_path / "paper_roots.yaml", fake_paper_roots(tmp_path))
    proc = run_snakemake(tmp_path, "-n", "--cores", "1", "--configfile", str(REPO / "config/config.yaml"),
                         str(REPO / "config/paper.yaml"), str(paper))
    assert proc.returncode == 0, proc.stderr
    assert "demo_cohort" not in proc.stdout
    # the paper's 4,096-pair batch on 4 GPUs, printed before any job
    assert "train: contrastive batch 4096 pairs per optimiser step = 4 process(es) x 64 micro-batch(es) x 16" \
        in proc.stderr, proc.stderr[-2000:]
    other = write_config(tmp_path / "other_dims.yaml", {"model": {"scan_encoder": {"depth": 6}}})
    proc = run_snakemake(tmp_path, "-n", "--cores", "1", "--configfile", str(REPO / "config/config.yaml"),
                         str(REPO / "config/paper.yaml"), str(paper), str(other))
    assert proc.returncode != 0
    assert "config key 'model': combiner.depth = 6 does not fit the weights" in proc.stdout + proc.stderr


def test_workflow_stops_before_any_job_on_bad_config(tmp_path):
    bad = write_config(tmp_path / "bad.yaml", {"preprocess": {"shard": 3}})
    proc = run_snakemake(tmp_path, "-n", "--cores", "1", "--configfile", str(REPO / "config/config.yaml"),
                         str(bad))
    assert proc.returncode != 0
    assert "config key 'preprocess.shard': unknown key" in proc.stdout + proc.stderr
    uneven = write_config(tmp_path / "uneven.yaml", {"train": {"batch_size": 20}})  # micro_batch 16
    proc = run_snakemake(tmp_path, "-n", "--cores", "1", "--configfile", str(REPO / "config/config.yaml"),
                         str(uneven))
    assert proc.returncode != 0
    assert ("config key 'train.batch_size': 20 is not a multiple of train.micro_batch x processes = 16 x 1 = 16"
            in proc.stdout + proc.stderr), (proc.stdout + proc.stderr)[-2000:]
    missing = run_snakemake(tmp_path, "-n", "--cores", "1", "--configfile", str(REPO / "config/config.yaml"),
                            str(REPO / "config/paper.yaml"))
    assert missing.returncode != 0
    assert ("config key 'data.hospital.dicom_root': directory '/data/hospital/dicom' does not exist"
            in missing.stdout + missing.stderr)


def test_workflow_stops_before_any_job_when_merlin_lacks_its_files(tmp_path):
    roots = fake_paper_roots(tmp_path)
    (tmp_path / "merlin" / "reports_final.xlsx").unlink()
    cfg = write_config(tmp_path / "roots.yaml", roots)
    proc = run_snakemake(tmp_path, "-n", "--cores", "1", "--configfile", str(REPO / "config/config.yaml"),
                         str(REPO / "config/paper.yaml"), str(cfg))
    assert proc.returncode != 0 and "rule " not in proc.stdout
    assert (f"config key 'data.merlin.root': file '{tmp_path}/merlin/reports_final.xlsx' does not exist"
            in proc.stdout + proc.stderr)


def test_paper_preset_dry_runs_on_the_slurm_profile_with_gpu_resources(tmp_path, monkeypatch):
    """The dry run shows per job the partition, account, GPUs, CPUs per GPU, memory and runtime it will ask for."""
    for name, value in {"CTVLP_SLURM_CPU_PARTITION": "cpu", "CTVLP_SLURM_GPU_PARTITION": "gpu",
                        "CTVLP_SLURM_CPU_ACCOUNT": "lab", "CTVLP_GPU_MODEL": "a100"}.items():
        monkeypatch.setenv(name, value)
    paper = write_config(tmp_path / "paper_roots.yaml", fake_paper_roots(tmp_path))
    proc = run_snakemake(tmp_path, "-n", "--workflow-profile", str(REPO / "profiles/slurm"), "--configfile",
                         str(REPO / "config/config.yaml"), str(REPO / "config/paper.yaml"), str(paper),
                         "--printshellcmds")
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    blocks = {}
    for block in out.split("\nrule ")[1:]:
        blocks.setdefault(block.split(":", 1)[0], block.split("\n\n")[0])
    assert {"preprocess_features", "train", "embed", "dicom_index"} <= set(blocks) and "window_features" not in blocks
    for rule in ("preprocess_features", "train", "embed"):
        res = blocks[rule].split("resources:")[1]
        assert "slurm_partition=gpu" in res and "slurm_account=lab" in res and "gpu_model=a100" in res, res
        assert "cpus_per_gpu=8" in res and "cpus_per_task" not in res, res
    assert "gpu=4," in blocks["train"] and "mem_mb=128000" in blocks["train"] and "runtime=2880" in blocks["train"]
    # keep_volumes: false (paper preset): the preprocessing jobs extract the window features on the GPU
    assert "gpu=1," in blocks["preprocess_features"] and "features/shard_" in blocks["preprocess_features"]
    for rule in ("dicom_index", "manifest", "report_text", "mine_snippets"):
        res = blocks[rule].split("resources:")[1]
        assert "slurm_partition=cpu" in res and "gpu" not in res, (rule, res)
    assert "mem_mb=64000" in blocks["preprocess_features"] and "runtime=720" in blocks["preprocess_features"]
    assert "gres" not in out and "tasks=" not in out  # never gres next to gpu, no tasks in default resources


def test_lint_is_clean(tmp_path):
    proc = run_snakemake(tmp_path, "--lint", "--configfile", str(REPO / "config/config.yaml"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Lints for" not in proc.stdout + proc.stderr, (proc.stdout + proc.stderr)[-3000:]


def test_rule_files_are_snakefmt_formatted():
    """`make lint` runs snakefmt --check too (line length 120 from pyproject.toml)."""
    import subprocess

    proc = subprocess.run([str(REPO / ".venv" / "bin" / "snakefmt"), "--check", "Snakefile", "workflow/rules"],
                          capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:] + "\nrun: snakefmt Snakefile workflow/rules"


def test_a_report_column_the_export_lacks_stops_before_any_job(tmp_path):
    roots = fake_paper_roots(tmp_path)
    (tmp_path / "reports.csv").write_text("Accession;Befundtext\n")
    cfg = write_config(tmp_path / "roots.yaml", roots)
    proc = run_snakemake(tmp_path, "-n", "--cores", "1", "--configfile", str(REPO / "config/config.yaml"),
                         str(REPO / "config/paper.yaml"), str(cfg))
    assert proc.returncode != 0 and "rule " not in proc.stdout
    out = proc.stdout + proc.stderr  # Snakemake 9 prints the ConfigError on stdout
    assert ("config key 'text.report_columns'" in out and "no column 'AccessionNumber'" in out
            and "'Accession', 'Befundtext'" in out), out[-2000:]
