"""The demo cohort: deterministic, real DICOM whose geometry matches the ground truth."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pydicom
import pytest

from ctvlp.demo import generate_demo
from ctvlp.demo.cohort import DemoConfig
from ctvlp.demo.findings import SIMULATED_LABELS
from ctvlp.core.label_set import CTRATE_LABELS

TINY = {"seed": 7, "n_patients": 3, "second_study_fraction": 0.5, "extent_mm": 80.0, "matrix": 48,
        "pixel_spacing": 7.0, "minis": {"ctrate_train_patients": 2, "ctrate_valid_patients": 3,
                                        "radchest_scans": 3}}


def tree_digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.slow
def test_same_seed_same_bytes_and_other_seed_differs(tmp_path):
    generate_demo(tmp_path / "a", TINY)
    generate_demo(tmp_path / "b", TINY)
    generate_demo(tmp_path / "c", {**TINY, "seed": 8})
    a, b, c = (tree_digest(tmp_path / x) for x in "abc")
    assert len(a) > 50
    assert a == b
    assert a != c


def test_every_dicom_reads_back_with_geometry_of_ground_truth(cohort_root):
    truth = pd.read_csv(cohort_root / "ground_truth" / "hospital_series.csv")
    cfg = DemoConfig()
    assert len(truth) == 2 * len(pd.read_csv(cohort_root / "ground_truth" / "hospital_studies.csv"))
    for _, row in truth.iterrows():
        files = sorted((cohort_root / row.folder).iterdir())
        assert len(files) == row.n_slices
        positions = {}
        for f in files:
            ds = pydicom.dcmread(f)
            assert ds.Modality == "CT" and ds.SeriesNumber == row.series_number
            assert [float(v) for v in ds.PixelSpacing] == [cfg.pixel_spacing] * 2
            assert float(ds.SliceThickness) == row.thickness
            row_dir = [-1.0, 0.0, 0.0] if row.feet_first else [1.0, 0.0, 0.0]
            assert [float(v) for v in ds.ImageOrientationPatient] == row_dir + [0.0, 1.0, 0.0]
            assert ds.PatientPosition == ("FFS" if row.feet_first else "HFS")
            positions[int(ds.InstanceNumber)] = float(ds.ImagePositionPatient[2])
        z = np.array([positions[i] for i in sorted(positions)])
        expected_step = row.thickness if (row.feet_first != row.reversed_numbering) else -row.thickness
        assert np.allclose(np.diff(z), expected_step)
        assert np.isclose(max(z), row.z_top)


def test_lesions_are_visible_at_their_planted_position(cohort_root):
    """Read the slice nearest each focal lesion and check the HU at its centre pixel."""
    lesions = pd.read_csv(cohort_root / "ground_truth" / "hospital_lesions.csv")
    series = pd.read_csv(cohort_root / "ground_truth" / "hospital_series.csv")
    expected = {"Lung nodule": (20, 80), "Lymphadenopathy": (20, 80), "Medical material": (1500, 3100),
                "Consolidation": (0, 60)}
    checked = 0
    for _, lesion in lesions[lesions.label.isin(list(expected))].iterrows():
        folder = cohort_root / series[series.accession == lesion.accession].iloc[1].folder  # thin series
        slices = [pydicom.dcmread(f) for f in folder.iterdir()]
        ds = min(slices, key=lambda d: abs(float(d.ImagePositionPatient[2]) - lesion.z))
        x0, y0 = float(ds.ImagePositionPatient[0]), float(ds.ImagePositionPatient[1])
        sx = float(ds.ImageOrientationPatient[0])
        col = int(round((lesion.x - x0) / (sx * float(ds.PixelSpacing[1]))))
        row = int(round((lesion.y - y0) / float(ds.PixelSpacing[0])))
        hu = ds.pixel_array.astype(float) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
        value = np.median(hu[row - 1:row + 2, col - 1:col + 2])
        lo, hi = expected[lesion.label]
        assert lo <= value <= hi, (lesion.label, value)
        checked += 1
    assert checked >= 10


def test_headers_carry_the_planted_phi_and_ground_truth_lists_it(cohort_root):
    canaries = json.loads((cohort_root / "ground_truth" / "phi_canaries.json").read_text())["strings"]
    f = next((cohort_root / "hospital" / "DICOM").rglob("IM*"))
    ds = pydicom.dcmread(f)
    for value in (str(ds.PatientID), str(ds.AccessionNumber), str(ds.PatientBirthDate),
                  str(ds.PatientName), str(ds.InstitutionName)):
        assert value in canaries
    reports = pd.read_csv(cohort_root / "hospital" / "reports" / "reports.csv")
    assert reports.ReportText.str.contains("|".join(canaries[:5])).any()


def test_cohort_size_labels_and_languages(cohort_root, cohort_settings):
    studies = pd.read_csv(cohort_root / "ground_truth" / "hospital_studies.csv")
    summary = json.loads((cohort_root / "ground_truth" / "cohort.json").read_text())
    n_patients = cohort_settings["n_patients"]
    assert studies.patient_id.nunique() == n_patients
    demo_size = n_patients >= 40  # tests/demo runs this on the demo's cohort (160 patients): the full bounds
    if demo_size:  # the minis' fixed size dominates a small cohort
        assert summary["bytes"] <= 7.5e6 * n_patients  # ~270 MB for 40 patients
    assert set(studies.language) == {"de", "en"}
    prevalence = studies[list(SIMULATED_LABELS)].sum()
    assert (prevalence >= (5 if demo_size else 1)).all() and len(SIMULATED_LABELS) >= 8
    absent = [label for label in CTRATE_LABELS if label not in SIMULATED_LABELS]
    assert (studies[absent] == 0).all().all()
    refs = pd.read_csv(cohort_root / "ground_truth" / "hospital_references.csv")
    assert {"ok", "image_out_of_range", "unknown_series", "ambiguous_series"} <= set(refs.expected)
    assert refs["style"].nunique() >= 8
    reports = pd.read_csv(cohort_root / "hospital" / "reports" / "reports.csv")
    no_refs = ~reports.ReportText.str.contains(r"(?:image|Bild|Im|Bi\.?) \d", regex=True)
    assert no_refs.sum() >= 3
    # some studies with a scout, some feet-first, some with reversed numbering
    series = pd.read_csv(cohort_root / "ground_truth" / "hospital_series.csv")
    assert studies.has_scout.any() and series.feet_first.any() and series.reversed_numbering.any()


def test_scouts_are_localizers(cohort_root):
    scouts = list((cohort_root / "hospital" / "DICOM").rglob("SE0000/IM*"))
    assert scouts
    ds = pydicom.dcmread(scouts[0])
    assert "LOCALIZER" in ds.ImageType
    assert [float(v) for v in ds.ImageOrientationPatient] == [1, 0, 0, 0, 0, -1]
