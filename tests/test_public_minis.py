"""The CT-RATE and Rad-ChestCT minis have exactly the documented names, columns and encodings."""

from __future__ import annotations

import re

import nibabel as nib
import numpy as np
import pandas as pd

from ctvlp.core.label_set import CTRATE_LABELS

NAME = re.compile(r"^(train|valid)_(\d+)_([a-z])_(\d+)\.nii\.gz$")
REPORT_COLUMNS = ["VolumeName", "ClinicalInformation_EN", "Technique_EN", "Findings_EN", "Impressions_EN"]
METADATA_COLUMNS = ["VolumeName", "Manufacturer", "SeriesDescription", "PatientSex", "PatientAge",
                    "ImagePositionPatient", "ImageOrientationPatient", "Rows", "Columns", "XYSpacing",
                    "RescaleIntercept", "RescaleSlope", "NumberofSlices", "ZSpacing", "StudyDate"]


def test_ctrate_layout_and_tables(cohort_root, cohort_settings):
    ds = cohort_root / "ct_rate" / "dataset"
    volumes = sorted((ds / "train_fixed").rglob("*.nii.gz")) + sorted((ds / "valid_fixed").rglob("*.nii.gz"))
    minis = cohort_settings["minis"]  # the test cohort's 3 + 3 patients hold 18 volumes; tests/demo runs this on
    demo_size = minis["ctrate_train_patients"] + minis["ctrate_valid_patients"] >= 10  # the demo's minis: full bounds
    assert len(volumes) >= (20 if demo_size else 12)
    for path in volumes:
        m = NAME.match(path.name)
        assert m, path.name
        split, pid, scan, _ = m.groups()
        assert path.parent.name == f"{split}_{pid}_{scan}" and path.parent.parent.name == f"{split}_{pid}"
    files = {"train": ("train_reports.csv", "train_predicted_labels.csv", "train_metadata.csv"),
             "valid": ("validation_reports.csv", "valid_predicted_labels.csv", "validation_metadata.csv")}
    for split, (reports, labels, metadata) in files.items():
        rep = pd.read_csv(ds / "radiology_text_reports" / reports)
        lab = pd.read_csv(ds / "multi_abnormality_labels" / labels)
        meta = pd.read_csv(ds / "metadata" / metadata)
        assert list(rep.columns) == REPORT_COLUMNS
        assert list(lab.columns) == ["VolumeName", *CTRATE_LABELS] and len(CTRATE_LABELS) == 18
        assert list(meta.columns) == METADATA_COLUMNS
        names = {p.name for p in volumes if p.name.startswith(split)}
        assert set(rep.VolumeName) == set(lab.VolumeName) == set(meta.VolumeName) == names
        assert set(np.unique(lab[list(CTRATE_LABELS)].values)) <= {0, 1}
        assert meta.PatientAge.str.fullmatch(r"\d{3}Y").all()
        assert meta.XYSpacing.str.fullmatch(r"\[[\d.]+, [\d.]+\]").all()
        assert (rep == "Not given.").any().any() or split == "valid" or not demo_size  # 40 % of reports: 6 may miss
    assert (ds / "metadata" / "no_chest_train.txt").exists()
    assert (ds / "train_fixed" / "train_1267" / "train_1267_a" / "train_1267_a_4.nii.gz").exists()


def test_ctrate_v1_is_raw_with_blank_header_and_v2_is_hu(cohort_root):
    ds = cohort_root / "ct_rate" / "dataset"
    v1 = sorted((ds / "valid").rglob("*.nii.gz"))
    assert len(v1) >= 2
    for raw_path in v1:
        fixed = nib.load(ds / "valid_fixed" / raw_path.parent.parent.name / raw_path.parent.name / raw_path.name)
        raw = nib.load(raw_path)
        assert np.allclose(raw.affine, np.eye(4))
        assert not np.allclose(fixed.affine, np.eye(4))
        hu = np.asarray(fixed.dataobj)
        assert hu.min() < -900  # air in HU
        assert np.array_equal(np.asarray(raw.dataobj).astype(np.int32) - 1024, hu.astype(np.int32))


def test_radchestct_layout(cohort_root):
    root = cohort_root / "rad_chestct"
    summary = pd.read_csv(root / "Summary_3630.csv")
    assert list(summary.columns) == ["MRN_DEID", "NoteAcc_DEID", "Set_Assigned", "Subset_Assigned"]
    assert set(summary.Set_Assigned) == {"imgtrain", "imgvalid", "imgtest"}
    prefix = {"imgtrain": "trn", "imgvalid": "val", "imgtest": "tst"}
    for _, row in summary.iterrows():
        assert row.NoteAcc_DEID.startswith(prefix[row.Set_Assigned])
        with np.load(root / f"{row.NoteAcc_DEID}.npz") as npz:
            assert list(npz.keys()) == ["ct"]
            ct = npz["ct"]
        assert ct.dtype == np.int16 and ct.ndim == 3
        assert ct.min() >= -1000 and ct.max() <= 1000
    for subset in prefix:
        labels = pd.read_csv(root / f"{subset}_Abnormality_and_Location_Labels.csv")
        assert labels.columns[0] == "NoteAcc_DEID"
        assert all("*" in c for c in labels.columns[1:])
        assert set(labels.NoteAcc_DEID) == set(summary[summary.Set_Assigned == subset].NoteAcc_DEID)
