"""Empty data roots in the public layouts the paper preset checks, for dry runs (pytest and the Slurm test).

The paper preset refuses to start unless every data root exists with the files its adapters read, and its
``model.weights_dir`` holds an import manifest of the preset's architecture. A dry run needs no data, so these
are empty stand-ins; one helper so the pytest dry runs and ``tests/slurm/readme_part.sh`` agree on the layout.

    python tests/paper_roots.py FOLDER OUT.yaml   # writes the roots under FOLDER and the override to OUT.yaml
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from ctvlp.models.weights_dir import FORMAT, MANIFEST, architecture  # noqa: E402


def load(name: str) -> dict:
    return yaml.safe_load((REPO / "config" / name).read_text())


def merged(base: dict, over: dict) -> dict:
    out = dict(base)
    for key, value in over.items():
        out[key] = merged(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def fake_paper_roots(tmp_path: Path) -> dict:
    """Create the empty roots under ``tmp_path`` and return the config override that points at them."""
    roots = {"dicom": tmp_path / "dicom", "ctrate": tmp_path / "ctrate", "rad": tmp_path / "rad"}
    for path in roots.values():
        path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "reports.csv").write_text("AccessionNumber,ReportText\n")
    weights = tmp_path / "weights"  # what `ctvlp import-weights` writes besides the tensors: the manifest
    weights.mkdir(exist_ok=True)
    paper = merged(load("config.yaml"), load("paper.yaml"))
    (weights / MANIFEST).write_text(json.dumps({"format": FORMAT, "architecture": architecture(paper)}))
    (tmp_path / "merlin" / "merlin_data").mkdir(parents=True, exist_ok=True)  # the public layouts the adapters read
    (tmp_path / "merlin" / "reports_final.xlsx").write_bytes(b"")
    (tmp_path / "inspect" / "full" / "CTPA").mkdir(parents=True, exist_ok=True)
    for prefix in ("study_mapping", "impressions", "splits"):
        (tmp_path / "inspect" / "full" / f"{prefix}_20250611.tsv").write_text("impression_id\n")
    release = tmp_path / "radfinder"  # RadFinder's release folder (config/release.yaml's train.release_dir)
    release.mkdir(exist_ok=True)
    for name in ("config.json", "model.safetensors"):
        (release / name).write_bytes(b"")
    return {"results": str(tmp_path / "results"), "logs": str(tmp_path / "logs"), "model": {"weights_dir": str(weights)},
            "train": {"release_dir": str(release)},
            "data": {"hospital": {"dicom_root": str(roots["dicom"]), "reports_csv": str(tmp_path / "reports.csv")},
                     "ct_rate": {"root": str(roots["ctrate"]), "release": "fixed"},
                     "rad_chestct": {"root": str(roots["rad"])},
                     "merlin": {"root": str(tmp_path / "merlin")}, "inspect": {"root": str(tmp_path / "inspect")}}}


if __name__ == "__main__":
    folder, out = Path(sys.argv[1]), Path(sys.argv[2])
    out.write_text(yaml.safe_dump(fake_paper_roots(folder)))
