"""The demo's quality checks (``make test-demo``): they read the outputs of ``make demo`` (the whole workflow on
config/config.yaml: 160 patients, six ablation rows of 40 epochs), because AUC levels, the claims' verdicts and
localization accuracy mean something only at that size. The same mechanics are checked on the small test run by
the main suite (``make test``).

The outputs are looked for in CTVLP_DEMO_DIR (a folder holding results/, logs/ and demo_data/ of a demo run),
else in the repository itself, where ``make demo`` writes them. No outputs: every test here fails, saying so.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests"))  # the main suite's modules, whose tests tests/demo collects again


@pytest.fixture(scope="session")
def demo_run() -> Path:
    work = Path(os.environ.get("CTVLP_DEMO_DIR", REPO)).resolve()
    needed = [work / "results" / "tables" / "claims.md", work / "demo_data" / "ground_truth" / "cohort.json"]
    missing = [str(p) for p in needed if not p.is_file()]
    if missing:
        pytest.fail(f"no demo outputs ({', '.join(missing)} missing): run `make demo` first, or set CTVLP_DEMO_DIR "
                    "to the folder of a demo run")
    return work


@pytest.fixture(scope="session")
def demo_root(demo_run) -> Path:
    return demo_run / "demo_data"


# The main suite's data tests run here too, on the demo's cohort at its full size (their bounds scale with the
# cohort_settings they are given): tests/demo/test_demo_data.py collects them with these fixtures.
@pytest.fixture(scope="session")
def cohort_root(demo_root) -> Path:
    return demo_root


@pytest.fixture(scope="session")
def cohort_settings() -> dict:
    return yaml.safe_load((REPO / "config" / "config.yaml").read_text())["demo"]


@pytest.fixture(scope="session")
def test_run(demo_run) -> Path:
    """The main suite's tests that read workflow outputs, collected here, read the demo run's."""
    return demo_run


@pytest.fixture(scope="session")
def run_config() -> dict:
    return yaml.safe_load((REPO / "config" / "config.yaml").read_text())
