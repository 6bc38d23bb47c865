"""Merlin and INSPECT adapters (exact public layouts), the paper's CT-RATE dev list, the RATE label files."""

from __future__ import annotations

import pandas as pd

from ctvlp.core.ids import Pseudonymizer
from ctvlp.io import ctrate
from ctvlp.ingest.manifest import SplitSpec, ctrate_rows


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

from ctvlp.core.config import ConfigError
from ctvlp.ingest.inputs import check_inputs
from ctvlp.demo.public_minis import INSPECT_BROKEN_DEMO_ID, MiniConfig, generate_inspect, generate_merlin
from ctvlp.ingest.sources import IngestSettings, ingest
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


def test_merlin_and_inspect_minis_are_byte_reproducible(tmp_path):
    import hashlib

    cfg = MiniConfig(merlin_scans=3, inspect_scans=2)
    digests = []
    for name in ("a", "b"):
        generate_merlin(tmp_path / name / "merlin", cfg)
        generate_inspect(tmp_path / name / "inspect", cfg)
        digests.append({str(p.relative_to(tmp_path / name)): hashlib.sha256(p.read_bytes()).hexdigest()
                        for p in sorted((tmp_path / name).rglob("*")) if p.is_file()})
    assert digests[0] == digests[1] and any(k.endswith("reports_final.xlsx") for k in digests[0])
    import zipfile

    with zipfile.ZipFile(tmp_path / "a" / "merlin" / "reports_final.xlsx") as z:  # no clock in the file
        assert {i.date_time for i in z.infolist()} == {(2020, 1, 1, 0, 0, 0)}
        assert b"2020-01-01T00:00:00Z" in z.read("docProps/core.xml")


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
    manifest, _, qc, _ = ingest(sources, None, b"salt", IngestSettings.from_config(cfg))
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
    # preprocessing reads both through the manifest's source kind, at the demo's grid
    from ctvlp.io.dicom import GeometryRules
    from ctvlp.preprocess.shard import process_shard
    from ctvlp.preprocess.transform import PreprocessSpec

    spec = PreprocessSpec((3.0, 3.0, 6.0), (-1000.0, 1000.0), (32, 32, 8))
    done = process_shard(manifest.assign(shard=0), 0, sources, None, spec, root / "cache", GeometryRules())
    assert (done.status == "ok").all() and len(done) == 13
    assert all(shape[0] % 32 == 0 and shape[2] % 8 == 0 for shape in done["shape"])
    assert set(done.source_orientation) == {"LPS"}  # as the minis store them (DICOM-like axes in a RAS world)


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


from ctvlp.text.rate_labels import RateLabelError, answer_value, label_groups, rate_labels


def _rate_config(root):
    """A question map and prompt file in RadFinder's layout, written by hand (two questions per modality)."""
    maps = root / "question_maps"
    maps.mkdir(parents=True)
    (maps / "question_map_chest.csv").write_text(
        "qid,category,question\nq0227,Heart,Is there cardiomegaly?\nq0228,Devices,Is there a debice in the chest?\n")
    (maps / "question_map_abdomen.csv").write_text(
        "qid,category,question\nq0001,Liver,Is there a liver cyst?\nq0002,Spleen,is there splenomegaly?\n")
    prompts = root / "prompts_abdomen_chest_ct"
    prompts.mkdir()
    entries = []
    for q in ("Is there cardiomegaly?", "Is there a device in the chest?", "Is there a liver cyst?",
              "Is there splenomegaly?"):
        entries.append({"question": q, "positive": [f"{q} yes {i}" for i in range(3)],
                        "negative": [f"{q} no {i}" for i in range(3)]})
    import yaml
    (prompts / "all.yaml").write_text(yaml.safe_dump({"category": "x", "description": "y", "prompts": entries}))


def test_rate_answers_are_mapped_as_the_authors_do():
    assert [answer_value(a) for a in ("Yes", " yes.", "YES", "No", "no.", "Maybe", "", "yes, small")] == \
        [1, 1, 1, 0, 0, 0, 0, 0]


def test_rate_label_files_become_a_label_table_with_groups(tmp_path):
    _rate_config(tmp_path / "cfg")
    ct = tmp_path / "ctrate_p0rate_en"
    ct.mkdir()
    (ct / "questions_chest_train.csv").write_text(
        "report_id,category,question,answer\n"
        "train_1_a,Heart,Is there cardiomegaly?,Yes.\n"
        "train_1_a,Devices,Is there a debice in the chest?,No\n"
        "train_2_a,Heart,Is there cardiomegaly?,no\n"          # the device question missing: 0
        "train_9_a,Heart,Is there cardiomegaly?,yes\n")        # no such volume: QC rejected
    (ct / "questions_chest_val.csv").write_text("report_id,category,question,answer\nvalid_1_a,Heart,"
                                                "Is there cardiomegaly?, YES\n")  # _val read for valid
    merlin_dir = tmp_path / "merlin_p0rate_en"
    merlin_dir.mkdir()
    (merlin_dir / "questions_abdomen_train.csv").write_text(
        "report_id,category,question,answer\nAC001,Liver,Is there a liver cyst?,Yes\n")
    salt = b"s"
    pseudo = Pseudonymizer(salt)
    volumes = pd.DataFrame([
        {"volume_id": "V1", "dataset": "ct_rate", "status": "ok", "accession_key": "",
         "source": "train_fixed/train_1/train_1_a/train_1_a_1.nii.gz"},
        {"volume_id": "V2", "dataset": "ct_rate", "status": "ok", "accession_key": "",
         "source": "train_fixed/train_1/train_1_a/train_1_a_2.nii.gz"},
        {"volume_id": "V3", "dataset": "ct_rate", "status": "ok", "accession_key": "",
         "source": "train_fixed/train_2/train_2_a/train_2_a_1.nii.gz"},
        {"volume_id": "V4", "dataset": "ct_rate", "status": "ok", "accession_key": "",
         "source": "valid_fixed/valid_1/valid_1_a/valid_1_a_1.nii.gz"},
        {"volume_id": pseudo("merlin", "volume", "AC001"), "dataset": "merlin", "status": "ok", "accession_key": "",
         "source": "merlin_data/AC001.nii.gz"}])
    labels, prompts, qc = rate_labels({"ct_rate": ct, "merlin": merlin_dir}, volumes, salt, tmp_path / "cfg")
    t = labels.set_index("volume_id")
    assert list(labels.columns[4:]) == ["q0001", "q0002", "q0227", "q0228"]  # abdomen first, then chest
    assert t.loc["V1", ["q0227", "q0228"]].tolist() == [1, 0] and t.loc["V2", ["q0227", "q0228"]].tolist() == [1, 0]
    assert t.loc["V3", ["q0227", "q0228"]].tolist() == [0, 0]
    assert t.loc["V1", ["q0001", "q0002"]].tolist() == [-1, -1]  # the other modality: unknown
    assert t.loc["V4", "q0227"] == 1 and t.loc["V4", "labeler_version"] == "questions_chest_val.csv"
    m = t.loc[pseudo("merlin", "volume", "AC001")]
    assert m[["q0001", "q0002", "q0227"]].tolist() == [1, 0, -1]
    assert [r["reason"] for r in qc if r["status"] == "rejected"] == ["report matches no volume"]
    # prompts matched through the authors' spelling fixes (debice -> device, first letter capitalised)
    assert prompts[prompts.label == "q0228"].prompt.iloc[0] == "Is there a device in the chest? yes 0"
    assert len(prompts[prompts.label == "q0002"]) == 6
    groups = label_groups(prompts, ["Cardiomegaly"])
    assert groups == {"abdomen": {"labels": ["q0001", "q0002"], "weight": 1.0},
                      "chest": {"labels": ["q0227", "q0228"], "weight": 1.0},
                      "ctrate": {"labels": ["Cardiomegaly"], "weight": 5.0}}
    (ct / "questions_chest_test.csv").write_text("report_id,category,question,answer\nx,H,Is there a goitre?,yes\n")
    with pytest.raises(RateLabelError, match=r"questions_chest_test.csv: 1 question\(s\) not in the question map"):
        rate_labels({"ct_rate": ct}, volumes, salt, tmp_path / "cfg")


def test_the_authors_question_sets_have_93_chest_and_226_abdomen_questions():
    """Checked against a RadFinder checkout when one is configured (CTVLP_RADFINDER_RATE_CONFIG); the project
    does not ship the authors' question texts."""
    import os

    config_dir = os.environ.get("CTVLP_RADFINDER_RATE_CONFIG")
    if not config_dir:
        pytest.skip("set CTVLP_RADFINDER_RATE_CONFIG to radfinder/configs/rate/modalities_en")
    from ctvlp.text.rate_labels import read_prompts, read_question_map

    chest, abdomen = read_question_map(config_dir, "chest"), read_question_map(config_dir, "abdomen")
    assert len(chest) == 93 and chest.qid.iloc[0] == "q0227" and chest.qid.iloc[-1] == "q0319"
    assert len(abdomen) == 226 and abdomen.qid.iloc[0] == "q0001" and abdomen.qid.iloc[-1] == "q0226"
    prompts = read_prompts(config_dir, pd.concat([abdomen, chest]))
    assert prompts.label.nunique() == 319 and len(prompts) == 319 * 6


def test_demo_minis_carry_rate_files_the_reader_turns_into_labels(tmp_path):
    from ctvlp.demo.findings import SIMULATED_LABELS
    from ctvlp.demo.public_minis import generate_ctrate, generate_rate_minis

    cfg = MiniConfig(ctrate_train_patients=2, ctrate_valid_patients=3, merlin_scans=4, inspect_scans=3,
                     rate_labels=True)
    ct = generate_ctrate(tmp_path / "ct_rate", cfg)
    m, i = generate_merlin(tmp_path / "merlin", cfg), generate_inspect(tmp_path / "inspect", cfg)
    generate_rate_minis(tmp_path, ct, m, i)
    folder = tmp_path / "ct_rate" / "report_structuring" / "p0rate_en"
    assert sorted(p.name for p in folder.iterdir()) == ["questions_chest_train.csv", "questions_chest_valid.csv"]
    assert list(pd.read_csv(folder / "questions_chest_train.csv").columns) == ["report_id", "category", "question",
                                                                               "answer"]
    sources = {"ct_rate": {"root": str(tmp_path / "ct_rate" / "dataset"), "release": "fixed"},
               "merlin": {"root": str(tmp_path / "merlin")}, "inspect": {"root": str(tmp_path / "inspect")}}
    settings = {"ingest": {"axial_tolerance_deg": 10, "tilt_tolerance_deg": 0.5, "gap_factor": 1.5,
                           "spacing_tolerance": 0.1, "min_slices": 20, "prefer_kernels": [], "prefer_thickness_mm": 5},
                "splits": {"hospital": [0.7, 0.1, 0.2], "ctrate_dev_fraction": 0.3}, "preprocess": {"shards": 1}}
    manifest, _, _, _ = ingest(sources, None, b"salt", IngestSettings.from_config(settings))
    folders = {name: tmp_path / name / "report_structuring" / "p0rate_en" for name in ("ct_rate", "merlin", "inspect")}
    labels, prompts, qc = rate_labels(folders, manifest.assign(status="ok"), b"salt",
                                      tmp_path / "rate" / "modalities_en")
    assert prompts.label.nunique() == 3 + len(SIMULATED_LABELS) and all(r["status"] == "accepted" for r in qc)
    t = labels.set_index("volume_id")
    pseudo = Pseudonymizer(b"salt")
    q_cardio = f"q{227 + SIMULATED_LABELS.index('Cardiomegaly'):04d}"
    for _, r in ct.iterrows():
        vid = pseudo("ct_rate", "volume", r["name"])
        if vid in t.index:  # every reconstruction of a scan gets its report's answers
            assert t.loc[vid, q_cardio] == r["Cardiomegaly"] and t.loc[vid, "q0001"] == -1
    merlin_rows = t[t.dataset == "merlin"]
    assert len(merlin_rows) == 4 and (merlin_rows[["q0001", "q0002", "q0003"]] == 0).all().all()
    assert (merlin_rows[q_cardio] == -1).all()
    assert set(t.dataset) == {"ct_rate", "merlin", "inspect"}
