"""INSPECT (CT pulmonary angiography, Stanford): ``full/CTPA/<image_id>.nii.gz`` and versioned TSVs.

Layout and columns as RadFinder reads them (lmb-freiburg/radfinder @7c6ab92, src/radfinder/data/inspect.py):
for each prefix ``study_mapping`` (``impression_id``, ``image_id``), ``impressions`` (``impression_id``,
``impressions``) and ``splits`` (``impression_id``, ``split``: ``train`` / ``valid`` / ``test``, ``val`` read as
``valid``) the last ``full/<prefix>_*.tsv`` in sorted order (the newest release) is read. Reports are impressions
only (the prefix ``IMPRESSION: `` removed, all-uppercase text decapitalised). The 20 scans RadFinder excludes
are quarantined with its reason (resources/inspect_broken_scans.yaml). The module is not named ``inspect``
so that it never shadows the standard library's.
"""

from __future__ import annotations

from functools import lru_cache
from importlib import resources
from pathlib import Path

import pandas as pd
import yaml

from ctvlp.io.merlin import load_nifti, simple_decap
from ctvlp.io.volume import Volume

PREFIXES = {"study_mapping": ("impression_id", "image_id"), "impressions": ("impression_id", "impressions"),
            "splits": ("impression_id", "split")}
SPLITS = {"train": "train", "valid": "dev", "val": "dev", "test": "test"}


def full_dir(root: str | Path) -> Path:
    """``root`` may be the INSPECT folder (holding ``full/``) or ``full/`` itself."""
    root = Path(root)
    return root / "full" if (root / "full").is_dir() else root


@lru_cache(maxsize=1)
def broken_scans() -> dict[str, str]:
    """image_id -> reason, for the scans RadFinder excludes."""
    data = yaml.safe_load(resources.files("ctvlp.resources").joinpath("inspect_broken_scans.yaml").read_text())
    return {image_id: f"known broken scan: {reason}" for reason, ids in data.items() for image_id in ids}


def newest_tsv(root: str | Path, prefix: str) -> Path:
    """The last ``<prefix>_*.tsv`` in sorted order; ValueError naming the folder when there is none."""
    folder = full_dir(root)
    found = sorted(folder.glob(f"{prefix}_*.tsv"))
    if not found:
        raise ValueError(f"{folder}: no {prefix}_*.tsv")
    return found[-1]


def read_tables(root: str | Path) -> dict[str, pd.DataFrame]:
    """The three TSVs with their published columns checked (ValueError naming the file otherwise)."""
    out = {}
    for prefix, columns in PREFIXES.items():
        path = newest_tsv(root, prefix)
        table = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)
        missing = [c for c in columns if c not in table.columns]
        if missing:
            raise ValueError(f"{path}: lacks column(s) {', '.join(missing)}")
        out[prefix] = table
    return out


def discover(root: str | Path) -> pd.DataFrame:
    """Every CTPA volume file and every mapped image id, each once, with split, impression id, status, reason."""
    folder = full_dir(root)
    tables = read_tables(root)
    mapping = tables["study_mapping"].drop_duplicates("image_id").set_index("image_id")["impression_id"]
    splits = tables["splits"].drop_duplicates("impression_id").set_index("impression_id")["split"]
    broken = broken_scans()
    files = {p.name[: -len(".nii.gz")]: p for p in sorted((folder / "CTPA").glob("*.nii.gz"))}
    rows = []
    for image_id, path in files.items():
        row = {"source": str(path.relative_to(folder)), "name": image_id, "impression_id": "", "split": "",
               "status": "ok", "reason": ""}
        if image_id in broken:
            row.update(status="rejected", reason=broken[image_id])
        elif image_id not in mapping.index:
            row.update(status="rejected", reason="image_id not in study_mapping")
        else:
            impression = str(mapping[image_id])
            raw = str(splits.get(impression, "")).strip()
            row["impression_id"] = impression
            if raw not in SPLITS:
                row.update(status="rejected", reason=f"split '{raw}' is not train, valid or test" if raw
                           else "impression_id not in splits")
            else:
                row["split"] = SPLITS[raw]
        rows.append(row)
    for image_id in sorted(set(mapping.index) - set(files)):
        rows.append({"source": f"CTPA/{image_id}.nii.gz", "name": image_id, "impression_id": str(mapping[image_id]),
                     "split": "", "status": "rejected", "reason": "listed in study_mapping but no volume file"})
    return pd.DataFrame(rows, columns=["source", "name", "impression_id", "split", "status", "reason"])


def load_volume(root: str | Path, source: str) -> Volume:
    return load_nifti(full_dir(root), source)


def impression_text(raw: str) -> str:
    """The impression as RadFinder trains on it: prefix ``IMPRESSION: `` removed, decapitalised; missing = ""."""
    return simple_decap(str(raw or "").removeprefix("IMPRESSION: "))


def reports_table(root: str | Path) -> pd.DataFrame:
    """image_id -> impressions (findings are always empty in INSPECT)."""
    tables = read_tables(root)
    text = tables["impressions"].drop_duplicates("impression_id").set_index("impression_id")["impressions"]
    rows = [{"name": r.image_id, "impression_id": r.impression_id,
             "impressions": impression_text(text.get(r.impression_id, ""))}
            for r in tables["study_mapping"].drop_duplicates("image_id").itertuples()]
    return pd.DataFrame(rows, columns=["name", "impression_id", "impressions"])
