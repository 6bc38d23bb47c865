"""Shared fixtures: the test workflow run (``.test/config``), run once per session, and a generated cohort.

- ``test_run``: the whole workflow (every rule) on the small test configuration ``.test/config/config.yaml``
  merged over ``config/config.yaml`` (~10 patients, minis of 3, three 2-epoch ablation rows, a few pretraining
  steps, the fault corpus on). Snakemake costs seconds to start, so it runs once and many tests read its outputs;
  a test that needs another config adds targets or runs a dry run of its own.
- ``cohort_root``: the demo generator alone (no Snakemake) at the test size, for tests that read data only.

The demo's quality at its real size (AUC levels, claims, the demo's own figures) is checked by ``tests/demo/``
(``make test-demo``) against the outputs of ``make demo``; see tests/demo/conftest.py.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
# A site's salt for the paper-preset dry runs (the demo config carries its own): without one the workflow stops
# while parsing (tests/test_hostile_inputs.py runs it without).
os.environ.setdefault("CTVLP_SALT", "ctvlp-test-site-salt")
SNAKEMAKE = Path(sys.executable).parent / "snakemake"
TEST_CONFIG = REPO / ".test" / "config" / "config.yaml"
TEST_ABLATIONS = REPO / ".test" / "ablations.tsv"


def run_snakemake(workdir: Path, *args: str, timeout: int = 3000) -> subprocess.CompletedProcess:
    """Run the repository's Snakefile in ``workdir`` (results, logs and demo data land there)."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    cmd = [str(SNAKEMAKE), "-s", str(REPO / "Snakefile"), "-d", str(workdir), *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, cwd=workdir)


def write_config(path: Path, overrides: dict) -> Path:
    path.write_text(yaml.safe_dump(overrides))
    return path


def merged(base: dict, over: dict) -> dict:
    """``over`` merged into ``base`` key by key (as Snakemake merges --configfile files)."""
    out = dict(base)
    for key, value in over.items():
        out[key] = merged(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def small_config() -> dict:
    """The test run's configuration as the workflow sees it (before the run's own folder override)."""
    return merged(yaml.safe_load((REPO / "config/config.yaml").read_text()), yaml.safe_load(TEST_CONFIG.read_text()))


def run_configfiles(work: Path) -> list[str]:
    """``--configfile`` arguments of the test run in ``work`` (its override.yaml points results, logs, data there)."""
    return ["--configfile", str(REPO / "config/config.yaml"), str(TEST_CONFIG), str(work / "override.yaml")]


@pytest.fixture(scope="session")
def test_run(tmp_path_factory) -> Path:
    """The whole workflow on the test configuration, run once for real; returns its working directory
    (results/, logs/, demo_data/ and override.yaml in it).

    Developers may set CTVLP_TEST_RUN to a folder to keep (and reuse) the run between sessions; it is brought up
    to date by the same Snakemake call, so a stale folder is rebuilt, never trusted blindly.
    """
    keep = os.environ.get("CTVLP_TEST_RUN")
    work = Path(keep) if keep else tmp_path_factory.mktemp("test_run")
    work.mkdir(parents=True, exist_ok=True)
    write_config(work / "override.yaml", {"results": str(work / "results"), "logs": str(work / "logs"),
                                          "demo": {"root": str(work / "demo_data")}})
    cores = os.environ.get("CTVLP_TEST_CORES", "2")
    proc = run_snakemake(work, "--cores", cores, *run_configfiles(work))
    if proc.returncode != 0:
        pytest.fail(f"test workflow failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-8000:]}")
    return work


@pytest.fixture(scope="session")
def cohort_root(tmp_path_factory, cohort_settings) -> Path:
    """The demo cohort at the test size (the test config's demo section, without the fault corpus), written by
    the generator alone: for tests that read data, not workflow outputs."""
    from ctvlp.demo import generate_demo

    root = tmp_path_factory.mktemp("cohort")
    generate_demo(root, cohort_settings, workers=2)
    return root


@pytest.fixture(scope="session")
def cohort_settings() -> dict:
    """The demo section the cohort of ``cohort_root`` was generated from."""
    return {**small_config()["demo"], "faults": False}


def pytest_collection_modifyitems(config, items):
    """Every test reading the session's workflow run is a `workflow` and `slow` test (it waits for the run); one
    reading the generated cohort is `slow` (it waits for the generator). Cluster and demo tests are deselected
    unless the -m expression names them."""
    for item in items:
        fixtures = getattr(item, "fixturenames", ())
        if "test_run" in fixtures:
            item.add_marker(pytest.mark.workflow)
        if "test_run" in fixtures or "cohort_root" in fixtures:
            item.add_marker(pytest.mark.slow)
    # gpu tests need CUDA: skipped (with the reason shown) on a machine without it; make gpu-check runs them
    if any(item.get_closest_marker("gpu") for item in items):
        import torch

        if not torch.cuda.is_available():
            skip = pytest.mark.skip(reason="gpu test: no CUDA here (benchmarks/gpu_check.sh runs it on a GPU)")
            for item in items:
                if item.get_closest_marker("gpu"):
                    item.add_marker(skip)
    # cluster and demo tests run only when the -m expression names them (make test-cluster, make test-demo): a plain
    # `pytest`, or `pytest -m "not slow"`, is the main suite
    expr = config.getoption("markexpr") or ""
    dropped = [item for item in items
               if any(item.get_closest_marker(name) and name not in expr for name in ("cluster", "demo"))]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = [item for item in items if item not in dropped]


@pytest.fixture(scope="session")
def run_config() -> dict:
    """The configuration of the run that ``test_run`` returns (tests/demo: the demo's)."""
    return small_config()
