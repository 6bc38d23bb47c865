"""Merlin and INSPECT adapters (exact public layouts), the paper's CT-RATE dev list, the RATE label files."""

from __future__ import annotations

import pandas as pd

from ctvlp.ids import Pseudonymizer
from ctvlp.io import ctrate
from ctvlp.manifest import SplitSpec, ctrate_rows


def test_ctrate_dev_list_is_the_papers_1301_patients():
    ids = ctrate.traindev_patients()
    assert len(ids) == 1301 and {"train_11", "train_20", "train_19981"} <= ids and "train_1" not in ids
    found = pd.DataFrame([{"source": f"train_fixed/{p}/{p}_a/{p}_a_1.nii.gz", "name": f"{p}_a_1", "split": "train",
                           "release": "fixed", "status": "ok", "reason": ""} for p in ("train_11", "train_1")]
                         + [{"source": "valid_fixed/valid_1/valid_1_a/valid_1_a_1.nii.gz", "name": "valid_1_a_1",
                             "split": "valid", "release": "fixed", "status": "ok", "reason": ""}])
    salt = b"test"
    rows = ctrate_rows(found, Pseudonymizer(salt), salt, SplitSpec(ctrate_dev="radfinder"))
    assert rows.set_index("source").split.tolist() == ["dev", "train", "test"]


import nibabel as nib
import numpy as np
import pytest

from ctvlp.config import ConfigError, check_inputs
from ctvlp.demo.public_minis import INSPECT_BROKEN_DEMO_ID, MiniConfig, generate_inspect, generate_merlin
from ctvlp.ingest import IngestSettings, ingest
from ctvlp.io import inspect_ct, merlin
from ctvlp.text.public_reports import inspect_reports, merlin_reports


@pytest.fixture(scope="module")
def minis(tmp_path_factory):
    root = tmp_path_factory.mktemp("minis")
    cfg = MiniConfig(merlin_scans=8, inspect_scans=5)
    return root, generate_merlin(root / "merlin", cfg), generate_inspect(root / "inspect", cfg)


@pytest.mark.parametrize("text, findings, impressions", [
    ("FINDINGS: Liver normal.\n \nIMPRESSION: No acute process.", "Liver normal.", "No acute process."),
    ("Liver normal.   impressions : cyst", "Liver normal.", "cyst"),  # any case, spaces before the colon
    ("Liver normal. Spleen normal.\n1. Cyst.\n2. No fluid.", "Liver normal. Spleen normal.", "1. Cyst.\n2. No fluid."),
    # a lone "1." counts only after 60 % of the text; earlier, with no "2." after it, the report stays whole
    ("Short.\n1. " + "x" * 50, "Short.\n1. " + "x" * 50, ""),
    ("A" * 50 + " findings text.\n1, Single conclusion.", "A" * 50 + " findings text.", "1, Single conclusion."),
    ("FINDINGS: LIVER NORMAL. SPLEEN NORMAL.\n IMPRESSION: NO ACUTE PROCESS.", "Liver normal. Spleen normal.",
     "No acute process."),
    ("Liver normal without a boundary.", "Liver normal without a boundary.", ""),
])
def test_merlin_findings_impressions_rule(text, findings, impressions):
    assert merlin.split_report(text) == (findings, impressions)


def test_merlin_adapter_on_the_demo_mini(minis):
    root, table, _ = minis
    found = merlin.discover(root / "merlin").set_index("name")
    ok = found[found.status == "ok"]
    assert len(ok) == 8 and set(ok.split) == {"train", "dev", "test"}
    assert found.loc["ACffffffff", "reason"] == "listed in reports_final.xlsx but no volume file"
    assert any(s.endswith(".nii") for s in ok.source)  # the card's .nii as well as RadFinder's .nii.gz
    sheet = pd.read_excel(root / "merlin" / "reports_final.xlsx")
    assert list(sheet.columns) == ["study id", "Findings", "Split"]
    expected = dict(zip(sheet["study id"], sheet["Split"].map({"train": "train", "val": "dev", "test": "test"})))
    assert all(expected[name] == row.split for name, row in ok.iterrows())
    first = ok.index[0]
    vol = merlin.load_volume(root / "merlin", ok.loc[first, "source"])
    img = nib.load(root / "merlin" / ok.loc[first, "source"])
    assert np.array_equal(vol.hu, np.asarray(img.dataobj)) and np.allclose(vol.affine, img.affine)
    reports = merlin.reports_table(root / "merlin").set_index("name")
    assert reports.loc[first, "impressions"] != "" and not reports.loc[first, "findings"].startswith("FINDINGS")


def test_inspect_adapter_on_the_demo_mini(minis):
    root, _, table = minis
    found = inspect_ct.discover(root / "inspect").set_index("name")
    assert found.loc[INSPECT_BROKEN_DEMO_ID, "status"] == "rejected"
    assert found.loc[INSPECT_BROKEN_DEMO_ID, "reason"].startswith("known broken scan: 4-D volume")
    ok = found[found.status == "ok"]
    assert len(ok) == 5 and set(ok.split) <= {"train", "dev", "test"}
    # the newest study_mapping wins over the older release beside it
    assert inspect_ct.newest_tsv(root / "inspect", "study_mapping").name == "study_mapping_20250611.tsv"
    reports = inspect_ct.reports_table(root / "inspect").set_index("name")
    text = reports.loc[ok.index[0], "impressions"]
    assert text.startswith("1. No pulmonary embolism") and "IMPRESSION" not in text
    upper = table.iloc[2]
    decap = reports.loc[upper.image_id, "impressions"]  # all uppercase in the TSV: sentence case per ". " part
    assert upper.impressions.isupper() and decap.startswith("1. No pulmonary embolism. 2. ") and not decap.isupper()
    with pytest.raises(ValueError, match="expected a 3-D volume"):
        inspect_ct.load_volume(root / "inspect", f"CTPA/{INSPECT_BROKEN_DEMO_ID}.nii.gz")


def test_hand_written_rows_with_the_published_column_names(tmp_path):
    """A few rows written by hand (not by the demo generator), as the releases name their columns."""
    m = tmp_path / "merlin"
    (m / "merlin_data").mkdir(parents=True)
    affine = np.diag([1.5, 1.5, 3.0, 1.0])
    for study in ("AC001", "AC002", "AC003"):
        nib.save(nib.Nifti1Image(np.zeros((4, 4, 3), np.int16), affine), m / "merlin_data" / f"{study}.nii.gz")
    pd.DataFrame({"study id": ["AC001", "AC002", "AC003"],
                  "Findings": ["FINDINGS: Normal liver. IMPRESSION: Normal.", "Cyst.", "Stone."],
                  "Split": ["train", "val", "Test"]}).to_excel(m / "reports_final.xlsx", index=False)
    found = merlin.discover(m).set_index("name")
    assert found.split.to_dict() == {"AC001": "train", "AC002": "dev", "AC003": ""}
    assert found.loc["AC003", "reason"] == "Split value 'Test' is not train, val or test"  # compared exactly
    i = tmp_path / "inspect" / "full"
    (i / "CTPA").mkdir(parents=True)
    for image_id in ("PEaaa", "PEbbb", "PE9f4c0d"):
        nib.save(nib.Nifti1Image(np.zeros((4, 4, 3), np.int16), affine), i / "CTPA" / f"{image_id}.nii.gz")
    (i / "study_mapping_20250611.tsv").write_text("impression_id\timage_id\n1\tPEaaa\n2\tPEbbb\n3\tPE9f4c0d\n")
    (i / "impressions_20250611.tsv").write_text("impression_id\timpressions\n1\tIMPRESSION: No PE.\n2\t\n")
    (i / "splits_20250611.tsv").write_text("impression_id\tsplit\n1\ttrain\n2\tval\n3\ttest\n")
    found = inspect_ct.discover(tmp_path / "inspect").set_index("name")
    assert found.split.to_dict() == {"PEaaa": "train", "PEbbb": "dev", "PE9f4c0d": ""}
    assert "orientation" in found.loc["PE9f4c0d", "reason"]
    reports = inspect_ct.reports_table(tmp_path / "inspect").set_index("name")
    assert reports.impressions.to_dict() == {"PEaaa": "No PE.", "PEbbb": "", "PE9f4c0d": ""}
    (m / "reports_final.xlsx").unlink()
    pd.DataFrame({"study": ["AC001"], "Findings": ["x"], "Split": ["train"]}).to_excel(m / "reports_final.xlsx",
                                                                                        index=False)
    with pytest.raises(ValueError, match=r"reports_final.xlsx: lacks column\(s\) study id"):
        merlin.discover(m)


def test_merlin_and_inspect_join_the_manifest_qc_and_reports(minis):
    root, _, _ = minis
    sources = {"merlin": {"root": str(root / "merlin")}, "inspect": {"root": str(root / "inspect")}}
    cfg = {"ingest": {"axial_tolerance_deg": 10, "tilt_tolerance_deg": 0.5, "gap_factor": 1.5,
                      "spacing_tolerance": 0.1, "min_slices": 20, "prefer_kernels": [], "prefer_thickness_mm": 5},
           "splits": {"hospital": [0.7, 0.1, 0.2], "ctrate_dev_fraction": 0.1}, "preprocess": {"shards": 2}}
    manifest, _, qc = ingest(sources, None, b"salt", IngestSettings.from_config(cfg))
    assert manifest.groupby("dataset").size().to_dict() == {"inspect": 5, "merlin": 8}
    assert set(manifest.source_kind) == {"merlin_nifti", "inspect_nifti"}
    assert (qc.groupby("dataset").size() == pd.Series({"inspect": 6, "merlin": 9})).all()  # every input once
    assert (qc.status == "rejected").sum() == 2
    volumes = manifest.assign(status="ok")
    rep, rows = merlin_reports(root / "merlin", volumes, b"salt")
    assert len(rep) == 8 and (rep.dataset == "merlin").all() and len(rows) == 9  # the orphan row is rejected
    assert set(rep.split) == set(manifest[manifest.dataset == "merlin"].split)
    rep, rows = inspect_reports(root / "inspect", volumes, b"salt")
    assert len(rep) == 5 and (rep.findings == "").all() and rep.impression.str.len().min() > 0


def test_a_config_naming_merlin_without_its_files_stops(tmp_path):
    cfg = {"demo": {"enabled": False}, "data": {"merlin": {"root": str(tmp_path / "nowhere")}}}
    with pytest.raises(ConfigError, match=r"config key 'data.merlin.root': directory .* does not exist"):
        check_inputs(cfg)
    (tmp_path / "merlin" / "merlin_data").mkdir(parents=True)
    cfg["data"]["merlin"]["root"] = str(tmp_path / "merlin")
    with pytest.raises(ConfigError, match=r"config key 'data.merlin.root': file .*reports_final.xlsx' does not exist"):
        check_inputs(cfg)
    cfg["data"] = {"inspect": {"root": str(tmp_path)}}
    with pytest.raises(ConfigError, match=r"config key 'data.inspect.root': directory .*full/CTPA' does not exist"):
        check_inputs(cfg)
