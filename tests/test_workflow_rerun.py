"""Workflow hygiene and reruns that mean what they say.

Every rule passes the config keys it reads as params (canonical: ctvlp.core.params), so after a run a changed
value reruns the jobs that read it (and what follows from their outputs), a reordered or job-shaping-only change
reruns nothing, and the salt never reaches Snakemake's metadata. Parsing the workflow imports no torch, and no
rule file stops the run with sys.exit. The rerun checks are dry runs on the test run (``test_run``), measured
against its own dry run with the unchanged config.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml

from conftest import REPO, TEST_ABLATIONS, TEST_CONFIG, run_configfiles, run_snakemake, write_config
from ctvlp.core.params import canonical, select
from paper_roots import fake_paper_roots

RULE_FILES = [REPO / "Snakefile", *sorted((REPO / "workflow" / "rules").glob("*.smk"))]
SCRIPTS = sorted((REPO / "workflow" / "scripts").glob("*.py"))


def reordered(value):
    """The same value with every mapping's keys in reverse order (a config saved with its keys reordered)."""
    if isinstance(value, dict):
        return {k: reordered(value[k]) for k in reversed(list(value))}
    return value


# ---- without a run -----------------------------------------------------------------------------------------------
def test_params_are_canonical_and_hold_only_the_selected_keys():
    config = yaml.safe_load((REPO / "config/config.yaml").read_text())
    keys = ["seed", "evaluate.paper", "evaluate.ci", "model.window_encoder"]
    assert repr(select(config, keys)) == repr(select(reordered(config), keys[::-1]))  # what Snakemake compares
    assert select(config, ["evaluate.ci"]) == {"evaluate": {"ci": config["evaluate"]["ci"]}}
    assert list(select(config, ["model"])["model"]) == sorted(config["model"])
    assert canonical({"b": (1, {"d": 1, "c": 2}), "a": None}) == {"a": None, "b": [1, {"c": 2, "d": 1}]}
    with pytest.raises(KeyError, match="config key 'evaluate.cii' is missing"):
        select(config, ["evaluate.cii"])
    assert select(config, ["evaluate.cii", "seed"], missing_ok=True) == {"seed": config["seed"]}
    with pytest.raises(ValueError, match="privacy"):
        select(config, ["privacy.salt_env"])


def test_no_sys_exit_and_scripts_read_config_only_through_params():
    for path in RULE_FILES:
        assert "sys.exit" not in path.read_text(), f"{path.name}: raise ConfigError instead of sys.exit"
    for path in SCRIPTS:
        # the salt is the one thing read from snakemake.config: params are written to .snakemake/metadata
        reads = re.findall(r"snakemake\.config\b(\[\"\w+\"\])?", path.read_text())
        assert set(reads) <= {'["privacy"]'}, f"{path.name} reads snakemake.config{reads}: pass it as params"


def test_pretrained_encoder_path_agrees_with_the_library():
    """common.smk writes the path out (ctvlp.models.window_encoder imports torch, which parsing must not)."""
    from ctvlp.models.window_encoder import PRETRAINED_FILE

    assert f'PRETRAINED = f"{{RESULTS}}/{PRETRAINED_FILE}"' in (REPO / "workflow/rules/common.smk").read_text()


def _imports_of_parsing(workdir: Path, *configfiles: str) -> tuple[subprocess.CompletedProcess, set[str]]:
    """A dry run under `python -X importtime`: every module the Snakemake process imported (no job runs)."""
    cmd = [sys.executable, "-X", "importtime", "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(workdir),
           "-n", "--cores", "1", "--configfile", str(REPO / "config/config.yaml"), *configfiles]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=workdir, timeout=600,
                          env={**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"})
    modules = {line.rsplit("|", 1)[1].strip() for line in proc.stderr.splitlines() if line.startswith("import time:")}
    return proc, modules


@pytest.mark.slow  # two dry runs under -X importtime (~15 s)
def test_parsing_the_workflow_imports_no_torch(tmp_path):
    demo, modules = _imports_of_parsing(tmp_path)
    assert demo.returncode == 0, demo.stdout[-2000:]
    assert "ctvlp.train.launch" in modules and "snakemake.dag" in modules  # the measure sees the workflow's imports
    heavy = sorted(m for m in modules if m.split(".")[0] in ("torch", "transformers", "peft", "safetensors"))
    assert not heavy, f"parsing the demo workflow imported {heavy[:5]}"
    paper = write_config(tmp_path / "paper_roots.yaml", fake_paper_roots(tmp_path))
    proc, modules = _imports_of_parsing(tmp_path, str(REPO / "config/paper.yaml"), str(paper))
    assert proc.returncode == 0, proc.stdout[-2000:]
    heavy = sorted(m for m in modules if m.split(".")[0] in ("torch", "transformers", "peft", "safetensors"))
    assert not heavy, f"parsing the paper preset imported {heavy[:5]}"


def test_a_config_error_stops_the_run_with_the_key_before_any_job(tmp_path):
    """Raised, not sys.exit: Snakemake prints `ConfigError in file ...` and the one line naming the key."""
    rows = tmp_path / "ablations.tsv"
    rows.write_text("run\tpretrain.enabled\nfull\t\npretrained\ttrue\n")
    frozen = write_config(tmp_path / "frozen.yaml", {"preprocess": {"keep_volumes": False},
                                                      "pretrain": {"enabled": False}, "train": {"ablations": str(rows)}})
    proc = run_snakemake(tmp_path, "-n", "--cores", "1", "--configfile", str(REPO / "config/config.yaml"), str(frozen))
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "rule " not in proc.stdout, out[-2000:]
    assert "ConfigError in file" in out and "Traceback" not in out, out[-2000:]
    # a row that turns pretraining on reads the volume cache, which keep_volumes: false does not write
    line = next(line for line in out.splitlines() if line.startswith("ctvlp: "))
    assert "config key 'preprocess.keep_volumes': ablation run 'pretrained' sets pretrain.enabled: True" in line


# ---- after the test run ----------------------------------------------------------------------------------------
def _jobs(work: Path, *args: str) -> list[tuple[str, str]]:
    """(rule, wildcards) of every job a dry run would start."""
    proc = run_snakemake(work, "-n", "--cores", "1", *args)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    jobs = []
    for block in re.split(r"^(?=(?:local)?rule \w+:)", proc.stdout, flags=re.M)[1:]:
        rule = re.match(r"(?:local)?rule (\w+):", block).group(1)
        wildcards = re.search(r"^\s+wildcards: (.*)$", block.split("\n\n")[0], re.M)
        jobs.append((rule, wildcards.group(1) if wildcards else ""))
    return sorted(jobs)


def _workflow_copy(path: Path, config: dict) -> Path:
    """The workflow in ``path`` with ``config`` as its config/config.yaml (everything else linked to the repo)."""
    path.mkdir()
    shutil.copy(REPO / "Snakefile", path / "Snakefile")  # a copy: its folder is WORKFLOW_DIR
    for name in ("workflow", "src", "envs", ".test"):
        (path / name).symlink_to(REPO / name)
    (path / "config").mkdir()
    for item in (REPO / "config").iterdir():
        (path / "config" / item.name).symlink_to(item)
    (path / "config" / "config.yaml").unlink()
    (path / "config" / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return path


@pytest.mark.workflow
def test_reruns_follow_the_keys_each_rule_reads(test_run, tmp_path):
    work = test_run
    snapshot = tmp_path / "test_config.yaml"  # every case reads the same test config, even if it is edited meanwhile
    shutil.copy(TEST_CONFIG, snapshot)
    files = [str(snapshot) if f == str(TEST_CONFIG) else f for f in run_configfiles(work)]

    def changed(name: str, overrides: dict) -> list[str]:
        return [*files, str(write_config(tmp_path / f"{name}.yaml", overrides))]

    ablations = tmp_path / "ablations.tsv"  # one row changed: random_encoder's localization weight
    rows = TEST_ABLATIONS.read_text().splitlines()
    ablations.write_text("\n".join(re.sub(r"^random_encoder\t0\.0\t", "random_encoder\t0.5\t", r) for r in rows) + "\n")
    assert "random_encoder\t0.5\t" in ablations.read_text()
    copy = _workflow_copy(tmp_path / "reordered", reordered(yaml.safe_load((REPO / "config/config.yaml").read_text())))
    config = yaml.safe_load((REPO / "config/config.yaml").read_text())
    cases = {
        "unchanged": files,
        "reordered": ["-s", str(copy / "Snakefile"), *files],  # run_snakemake's own -s is overridden by the later one
        "workers": changed("workers", {"ingest": {"workers": 1}}),  # threads only: no output differs
        "lr": changed("lr", {"train": {"lr": 2 * config["train"]["lr"]}}),
        "resamples": changed("resamples", {"evaluate": {"bootstrap_resamples": 60}}),
        "row": changed("row", {"train": {"ablations": str(ablations)}}),
        "salt": changed("salt", {"privacy": {"salt": "another-salt"}}),
    }
    with ThreadPoolExecutor(3) as pool:
        jobs = dict(zip(cases, pool.map(lambda args: _jobs(work, *args), cases.values())))
    # base: what the unchanged config would run; empty unless the run's files or code changed since test_run (in a
    # shared tree others' commits do): each case is judged by what it adds to base, and jobs base already holds are
    # only checked to be in the case's plan too.
    base = set(jobs["unchanged"])

    def new(case: str) -> set[tuple[str, str]]:
        return set(jobs[case]) - base

    def rules(case: str) -> set[str]:
        return {rule for rule, _ in jobs[case]}

    assert new("reordered") == set() and new("workers") == set(), (jobs["reordered"], jobs["workers"])
    runs = {wc for rule, wc in jobs["lr"] if rule == "train"}
    assert runs == {"run=full", "run=random_encoder", "run=end_to_end"}, jobs["lr"]  # every trained row
    downstream = {"train", "embed", "evaluate", "compare", "tables", "figures", "claims", "provenance", "export_hf",
                  "import_release", "linear_probe", "all"}
    assert {rule for rule, _ in new("lr")} <= downstream, new("lr")
    # an evaluation key reruns the evaluation only (the workflow's export of a trained run for a released row carries
    # no metrics, so it is not redone)
    evaluation = {"evaluate", "compare", "tables", "figures", "claims", "all"}
    assert {rule for rule, _ in new("resamples")} <= evaluation, new("resamples")
    assert rules("resamples") >= {"evaluate", "compare", "tables"}, jobs["resamples"]
    row = new("row")
    assert ("train", "run=random_encoder") in jobs["row"] and not {j for j in row if j[0] == "train"} - {
        ("train", "run=random_encoder")}, row
    assert {rule for rule, _ in row} <= downstream and ("evaluate", "run=full") not in row, row
    assert {"dicom_index_part", "manifest", "report_text", "data_provenance"} <= rules("salt"), jobs["salt"]
    assert {"dicom_index_part", "manifest", "data_provenance"} & {rule for rule, _ in new("salt")}, new("salt")


@pytest.mark.workflow
def test_the_salt_never_reaches_snakemakes_metadata(test_run):
    """Nor any other file under .snakemake: the scripts of jobs killed in the run (test_reliability's resume test
    SIGKILLs one) stay in .snakemake/scripts with the config pickled into them."""
    salt = yaml.safe_load((REPO / "config/config.yaml").read_text())["privacy"]["salt"].encode()
    files = [p for p in (test_run / ".snakemake").rglob("*") if p.is_file() and "conda" not in p.parts]
    assert any("metadata" in p.parts for p in files)
    assert [str(p) for p in files if salt in p.read_bytes()] == []


def _reasons(work: Path, *args: str) -> dict[str, str]:
    """{rule: reason} of the jobs a dry run would start (the last job's reason per rule)."""
    proc = run_snakemake(work, "-n", "--cores", "1", *args)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    found = {}
    for block in re.split(r"^(?=(?:local)?rule \w+:)", proc.stdout, flags=re.M)[1:]:
        rule = re.match(r"(?:local)?rule (\w+):", block).group(1)
        reason = re.search(r"^\s+reason: (.*)$", block, re.M)
        found[rule] = reason.group(1) if reason else ""
    return found


@pytest.mark.workflow
def test_an_edited_report_reruns_the_text_stage_and_what_follows(test_run):
    """The reports export is an input of report_text: edited in place, the text stage reruns because of it and so
    does everything made from its tables (mining, training, evaluation), never the ingest or the preprocessing."""
    work = test_run
    reports = work / "demo_data" / "hospital" / "reports" / "reports.csv"
    before = set(_jobs(work, *run_configfiles(work)))
    data, stat = reports.read_bytes(), reports.stat()
    try:
        reports.write_bytes(data + b"\n")  # an edit (a blank line: the tables it makes stay the same)
        reasons = _reasons(work, *run_configfiles(work))
        jobs = set(_jobs(work, *run_configfiles(work)))
    finally:
        reports.write_bytes(data)
        os.utime(reports, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert "reports.csv" in reasons.get("report_text", ""), reasons.get("report_text")  # rerun because of the edit
    rules = {rule for rule, _ in jobs}
    assert {"report_text", "mine_snippets", "train", "embed", "evaluate", "tables"} <= rules, jobs
    assert not {rule for rule, _ in jobs - before} & {"demo_cohort", "dicom_index_part", "dicom_index", "manifest",
                                                      "preprocess", "window_features", "rate_labels",
                                                      "data_provenance"}, jobs - before
    assert "reports.csv" not in _reasons(work, *run_configfiles(work)).get("report_text", "")  # restored
