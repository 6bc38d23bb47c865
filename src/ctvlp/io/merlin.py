"""Merlin (abdominal CT, Stanford): ``merlin_data/<study id>.nii.gz`` (or ``.nii``) and ``reports_final.xlsx``.

Layout and columns as distributed and as RadFinder reads them (lmb-freiburg/radfinder @7c6ab92,
src/radfinder/data/merlin.py): the report sheet has ``study id`` (= the file name without its suffix),
``Findings`` (the whole report body: findings and impressions in one text) and ``Split`` (``train`` /
``val`` / ``test``, the official split). The report is cut into findings and impressions by RadFinder's rule
(``split_report``). The sheet has no patient column, so the study is the split unit: Merlin's official split
is used as given and the study id stands in for the patient in our manifest (see ``patient_key``).
"""

from __future__ import annotations

import re
from pathlib import Path

import nibabel as nib
import numpy as np
import openpyxl  # noqa: F401  (pandas reads .xlsx through it; imported so the environments carry it)
import pandas as pd

from ctvlp.io.volume import Volume

DATA_DIR = "merlin_data"
REPORTS = "reports_final.xlsx"
COLUMNS = ("study id", "Findings", "Split")
SPLITS = {"train": "train", "val": "dev", "test": "test"}  # Merlin's value -> our split
SUFFIXES = (".nii.gz", ".nii")
IMPRESSION_HEADER = re.compile(r"\s+IMPRESSIONS?\s*:", re.IGNORECASE)
ITEM_ONE = re.compile(r"(?:\n|   )\s*1[.,]\s+")
ITEM_TWO = re.compile(r"(?:\n|   )\s*2[.,]\s+")


def simple_decap(text: str) -> str:
    """An all-uppercase text becomes sentence case (each ". "-separated sentence capitalised), as RadFinder."""
    if not text.isupper():
        return text
    return ". ".join(s.capitalize() for s in text.split(". "))


def split_report(text: str) -> tuple[str, str]:
    """(findings, impressions) of one Merlin report by RadFinder's rule.

    1. An ``IMPRESSION(S):`` header after whitespace, any case: before it / after its colon.
    2. Else numbered conclusions: the candidates "newline or three spaces, ``1.`` or ``1,``" are tried from the
       last to the first; a candidate splits when a ``2.``/``2,`` item follows it, or when it starts after 60 %
       of the text; the impressions keep their leading "1.".
    3. Else the whole text is findings and the impressions are empty.
    Then the prefixes ``FINDINGS: `` / ``IMPRESSION: `` are removed and all-uppercase texts are decapitalised.
    """
    text = str(text)
    match = IMPRESSION_HEADER.search(text)
    if match:
        findings, impressions = text[: match.start()].strip(), text[match.end():].strip()
    else:
        findings, impressions = text.strip(), ""
        for m in reversed(list(ITEM_ONE.finditer(text))):
            if ITEM_TWO.search(text[m.end():]) or m.start() > 0.6 * len(text):
                findings, impressions = text[: m.start()].strip(), text[m.start():].strip()
                break
    findings = simple_decap(findings.removeprefix("FINDINGS: "))
    impressions = simple_decap(impressions.removeprefix("IMPRESSION: "))
    return findings, impressions


def study_of(path: Path) -> str:
    name = path.name
    return next((name[: -len(s)] for s in SUFFIXES if name.endswith(s)), path.stem)


def patient_key(study_id: str) -> str:
    """The sheet has no patient column: the study is the unit our split check sees."""
    return study_id


def read_reports(root: str | Path) -> pd.DataFrame:
    """The report sheet with its published column names; raises ValueError naming the file when one is missing."""
    path = Path(root) / REPORTS
    table = pd.read_excel(path, dtype=str)
    missing = [c for c in COLUMNS if c not in table.columns]
    if missing:
        raise ValueError(f"{path}: lacks column(s) {', '.join(missing)} (expected {', '.join(COLUMNS)})")
    return table.fillna("")


def discover(root: str | Path) -> pd.DataFrame:
    """Every volume file and every report row, each once, with status and reason (nothing dropped)."""
    root = Path(root)
    reports = read_reports(root)
    by_study = {str(r["study id"]).strip(): r for _, r in reports.iterrows()}
    files = sorted(p for p in (root / DATA_DIR).iterdir() if p.name.endswith(SUFFIXES))
    rows, seen = [], set()
    for path in files:
        study = study_of(path)
        row = {"source": str(path.relative_to(root)), "name": study, "split": "", "status": "ok", "reason": ""}
        if study in seen:
            row.update(status="rejected", reason="second file for the same study id (.nii and .nii.gz)")
        elif study not in by_study:
            row.update(status="rejected", reason=f"no row in {REPORTS}")
        else:
            raw = str(by_study[study]["Split"]).strip()
            if raw not in SPLITS:
                row.update(status="rejected", reason=f"Split value '{raw}' is not train, val or test")
            else:
                row["split"] = SPLITS[raw]
        seen.add(study)
        rows.append(row)
    for study in sorted(set(by_study) - seen):
        rows.append({"source": f"{DATA_DIR}/{study}.nii.gz", "name": study, "split": "", "status": "rejected",
                     "reason": f"listed in {REPORTS} but no volume file"})
    return pd.DataFrame(rows, columns=["source", "name", "split", "status", "reason"])


def load_nifti(root: str | Path, source: str) -> Volume:
    """HU volume and voxel-to-RAS affine of a public NIfTI (stored HU, header geometry); a 4-D or 2-D file
    raises ValueError naming it."""
    img = nib.load(Path(root) / source)
    if len(img.shape) != 3:
        raise ValueError(f"{source}: expected a 3-D volume, got {len(img.shape)}-D shape {tuple(img.shape)}")
    return Volume(hu=np.asarray(img.dataobj, dtype=np.float32), affine=img.affine.copy())


load_volume = load_nifti


def reports_table(root: str | Path) -> pd.DataFrame:
    """study id -> findings, impressions (RadFinder's split rule), split as published."""
    rows = []
    for _, r in read_reports(root).iterrows():
        findings, impressions = split_report(r["Findings"])
        rows.append({"name": str(r["study id"]).strip(), "findings": findings, "impressions": impressions,
                     "split_raw": str(r["Split"]).strip()})
    return pd.DataFrame(rows, columns=["name", "findings", "impressions", "split_raw"])
