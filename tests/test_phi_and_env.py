"""No planted identifier reaches results/ or logs/; the conda env cannot drift from the lock."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from conftest import REPO

sys.path.insert(0, str(REPO / "tools"))
from lock_to_env import HEADER, lock_pins  # noqa: E402


def phi_hits(folders: list[Path], canaries: list[str]) -> list[tuple[str, str]]:
    """(file, canary) pairs for every canary found as bytes in any file under the folders."""
    needles = [(c, c.encode()) for c in canaries if len(c) >= 5]
    hits = []
    for folder in folders:
        for path in folder.rglob("*"):
            if path.is_file():
                data = path.read_bytes()
                hits += [(str(path), c) for c, b in needles if b in data]
    return hits


def test_no_phi_canary_in_results_or_logs(demo_run):
    canaries = json.loads((demo_run / "demo_data" / "ground_truth" / "phi_canaries.json").read_text())["strings"]
    assert len(canaries) >= 200
    folders = [demo_run / "results", demo_run / "logs"]
    assert any(p.is_file() for f in folders if f.exists() for p in f.rglob("*"))
    assert phi_hits([f for f in folders if f.exists()], canaries) == []


def test_phi_scanner_finds_a_planted_leak(tmp_path):
    (tmp_path / "leak.txt").write_text("patient Quenzlmayr^Hildegard")
    assert phi_hits([tmp_path], ["Quenzlmayr^Hildegard"]) == [(str(tmp_path / "leak.txt"), "Quenzlmayr^Hildegard")]


def test_env_file_matches_lock():
    env_pins = [line.strip()[2:] for line in (REPO / "envs" / "ctvlp.yaml").read_text().splitlines()
                if line.startswith("      - ")]
    assert env_pins == lock_pins(REPO / "requirements.lock")
    assert (REPO / "envs" / "ctvlp.yaml").read_text().startswith(HEADER)
    assert "torch==2.13.0" in env_pins
