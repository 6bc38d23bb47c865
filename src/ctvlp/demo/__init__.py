"""The demo cohort: a synthetic hospital DICOM export plus CT-RATE, Rad-ChestCT, Merlin and INSPECT minis.

``generate_demo`` is the single entry point (rule ``demo_cohort``); it is deterministic from the
seed, so tests can compare bytes and ground truth never drifts from the files it describes.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd

from ctvlp.demo.cohort import DemoConfig, generate_hospital
from ctvlp.demo.faults import add_fault_corpus
from ctvlp.demo.public_minis import (MiniConfig, generate_ctrate, generate_inspect, generate_merlin,
                                     generate_radchestct, generate_rate_minis)

__all__ = ["DemoConfig", "MiniConfig", "generate_demo"]


def generate_demo(root: Path, settings: dict, workers: int = 1) -> dict:
    """Write the whole demo under ``root``; return a summary (counts and bytes) also saved as JSON."""
    root = Path(root)
    for stale in ("hospital", "ct_rate", "rad_chestct", "merlin", "inspect", "rate", "ground_truth"):
        shutil.rmtree(root / stale, ignore_errors=True)  # a rerun never mixes two cohorts
    hospital = generate_hospital(root, DemoConfig.from_mapping(settings), workers)
    mini = MiniConfig(**{k: v for k, v in settings.get("minis", {}).items()},
                      seed=int(settings.get("seed", 42)))
    ctrate = generate_ctrate(root / "ct_rate", mini, workers)
    radchest = generate_radchestct(root / "rad_chestct", mini, workers)
    merlin = generate_merlin(root / "merlin", mini) if mini.merlin_scans else []
    inspect = generate_inspect(root / "inspect", mini) if mini.inspect_scans else []
    if mini.rate_labels:
        generate_rate_minis(root, ctrate, pd.DataFrame(merlin), pd.DataFrame(inspect))
    faults = add_fault_corpus(root) if settings.get("faults") else None
    summary = {
        "patients": int(hospital["studies"]["patient_id"].nunique()),
        "studies": len(hospital["studies"]),
        "series": len(hospital["series"]),
        "planted_references": len(hospital["references"]),
        "ctrate_volumes": len(ctrate),
        "radchestct_scans": len(radchest),
        "merlin_scans": len(merlin),
        "inspect_scans": len(inspect),
        "faults": 0 if faults is None else len(faults),
        "bytes": sum(p.stat().st_size for p in root.rglob("*") if p.is_file()),
    }
    (root / "ground_truth" / "cohort.json").write_text(json.dumps(summary, indent=1) + "\n")
    return summary
