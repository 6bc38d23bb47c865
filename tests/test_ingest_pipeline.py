"""Manifest, splits, QC invariant and the preprocessed cache of the session's test run (.test/config, the fault
corpus on: its items are told apart by their FAULTS/ folder; tests/test_faults.py checks them, and
tests/demo/test_demo_ingest.py the same invariants on the demo run, which has no fault corpus)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ctvlp.io.volume import LPS_TO_RAS
from ctvlp.ingest.manifest import SplitLeakError, check_split_leaks
from ctvlp.features.cache import cache_file, read_cached
from ctvlp.preprocess.transform import PreprocessSpec, crop_or_pad


def fault_series(run) -> set[str]:
    """Keys (without their one-letter prefix) of the hospital series the fault corpus wrote: under FAULTS/, or
    added to a cohort study (another frame of reference): every series that is neither the ground truth's nor a
    scout. Empty without the corpus."""
    index = pd.read_parquet(run / "results" / "ingest" / "dicom_index")  # partitioned dataset
    truth = pd.read_csv(run / "demo_data" / "ground_truth" / "hospital_series.csv")
    cohort = {f.removeprefix("hospital/DICOM/") for f in truth.folder}
    folder = index.path.str.rsplit("/", n=1).str[0]
    added = ~folder.isin(cohort) & ~folder.str.endswith("/SE0000")
    return set(index[index.path.str.startswith("FAULTS/") | added].series_key.str[1:])


def cohort_items(run) -> pd.DataFrame:
    """The QC rows of the hospital's cohort, without the fault corpus's (tests/test_faults.py checks those)."""
    qc = pd.read_parquet(run / "results" / "qc" / "qc.parquet")
    hospital = qc[qc.dataset == "hospital"]
    return hospital[~hospital.item.str.startswith("FAULTS/") & ~hospital.item.str[1:].isin(fault_series(run))]


def test_qc_has_every_input_once_and_nothing_is_lost(test_run):
    qc = pd.read_parquet(test_run / "results" / "qc" / "qc.parquet")
    truth = test_run / "demo_data" / "ground_truth"
    series = pd.read_csv(truth / "hospital_series.csv")
    studies = pd.read_csv(truth / "hospital_studies.csv")
    hospital = cohort_items(test_run)
    assert (qc.dataset == "hospital").sum() > len(hospital)  # the fault corpus is on in the test run
    assert len(hospital) == len(series) + int(studies.has_scout.sum())
    assert (hospital.role == "volume").sum() == len(studies)
    assert hospital[hospital.status == "rejected"].reason.eq("localizer/scout images").all()
    ctrate_files = list((test_run / "demo_data" / "ct_rate" / "dataset").glob("*_fixed/*/*/*.nii.gz"))
    assert (qc.dataset == "ct_rate").sum() == len(ctrate_files)
    merlin_files = list((test_run / "demo_data" / "merlin" / "merlin_data").iterdir())
    assert (qc.dataset == "merlin").sum() == len(merlin_files) + 1  # + the report row without a volume
    inspect_files = list((test_run / "demo_data" / "inspect" / "full" / "CTPA").glob("*.nii.gz"))
    assert (qc.dataset == "inspect").sum() == len(inspect_files)
    assert qc[(qc.dataset == "inspect") & (qc.status == "rejected")].reason.str.startswith("known broken scan").all()
    assert not qc.duplicated(["dataset", "item"]).any()
    assert set(qc.status) <= {"accepted", "rejected"}
    summary = (test_run / "results" / "qc" / "summary.md").read_text()
    assert "| hospital | 121 |" in summary or "| hospital |" in summary
    for line in summary.splitlines()[4:7]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        assert int(cells[1]) == int(cells[2]) + int(cells[3]) and cells[4] == "0"


def test_manifest_splits_by_patient_and_ids_are_pseudonyms(test_run):
    volumes = pd.read_parquet(test_run / "results" / "manifest" / "volumes.parquet")
    faults = pd.read_csv(test_run / "demo_data" / "ground_truth" / "faults.csv", dtype=str, keep_default_na=False)
    failed = volumes[volumes.status != "ok"]  # the fault corpus's volumes only, each for one of its reasons
    assert all(any(r in " ".join(reasons) for r in faults.reason) for reasons in failed.failed_reasons), failed
    assert len(failed) < len(faults) and (volumes.status == "ok").sum() > 30
    volumes = volumes[volumes.status == "ok"]
    check_split_leaks(volumes)
    assert set(volumes[volumes.dataset == "hospital"].split) == {"train", "dev", "test"}
    assert set(volumes[volumes.dataset == "ct_rate"].split) == {"train", "dev", "test"}
    assert volumes.patient_id.str.match(r"^P[0-9a-f]{16}$").all()
    assert volumes.volume_id.is_unique


def test_planted_split_leak_stops_with_pseudonymous_id():
    manifest = pd.DataFrame({"patient_id": ["Pa", "Pb", "Pb"], "split": ["train", "train", "test"]})
    with pytest.raises(SplitLeakError, match="patient Pb appears in splits test, train"):
        check_split_leaks(manifest)


def test_cache_is_scaled_windowed_and_lesions_land_where_planted(test_run):
    volumes = pd.read_parquet(test_run / "results" / "manifest" / "volumes.parquet")
    series = pd.read_parquet(test_run / "results" / "ingest" / "hospital_series.parquet")
    lesions = pd.read_csv(test_run / "demo_data" / "ground_truth" / "hospital_lesions.csv")
    studies = pd.read_csv(test_run / "demo_data" / "ground_truth" / "hospital_studies.csv")
    window = (32, 32, 8)
    # map accession (ground truth) to the volume via the pseudonymized series table
    from ctvlp.core.ids import Pseudonymizer
    pseudo = Pseudonymizer(b"ctvlp-demo-salt")
    checked = 0
    for _, lesion in lesions[lesions.label.isin(["Lung nodule", "Medical material", "Lymphadenopathy"])].iterrows():
        key = pseudo("hospital", "accession", lesion.accession)
        chosen = series[(series.accession_key == key) & series.selected].iloc[0]
        vol = volumes[volumes.volume_id == "V" + chosen.series_key[1:]].iloc[0]
        data = read_cached(cache_file(test_run / "results" / "cache" / "volumes", vol.volume_id))
        assert cache_file(test_run / "results" / "cache" / "volumes", vol.volume_id).parent.name == vol.volume_id[1:3]
        assert data.dtype == np.float16 and all(n % w == 0 for n, w in zip(data.shape, window))
        affine = np.array(vol.affine).reshape(4, 4)
        ras = LPS_TO_RAS @ np.array([lesion.x, lesion.y, lesion.z, 1.0])
        ijk = np.rint(np.linalg.solve(affine, ras)[:3]).astype(int)
        if not all(0 <= i < n for i, n in zip(ijk, data.shape)):
            continue  # cropped away by the centre crop
        expected = 1.0 if lesion.label == "Medical material" else (45 + 1000) / 2000
        # within one voxel of the planted centre: a 5 mm nodule whose centre falls between two 6 mm slices is
        # partial-volumed in both, so the rounded voxel alone may sit halfway between lesion and lung
        near = data[tuple(slice(max(i - 1, 0), i + 2) for i in ijk)].astype(np.float32)
        value = float(near.flat[np.abs(near - expected).argmin()])
        assert abs(value - expected) < 0.12, (lesion.label, value)
        checked += 1
    assert checked >= (8 if len(studies) >= 40 else 2)  # the demo's 8 of its 210 studies: tests/demo
    hospital = volumes[volumes.dataset == "hospital"]
    assert len(studies) == (~hospital.volume_id.str[1:].isin(fault_series(test_run))).sum()


def test_crop_or_pad_keeps_world_coordinates():
    data = np.arange(10 * 3 * 20, dtype=np.float32).reshape(10, 3, 20)
    affine = np.diag([2.0, 2.0, 3.0, 1.0])
    affine[:3, 3] = [5, 6, 7]
    out, new = crop_or_pad(data, affine, (4, 8, 8))
    assert out.shape == (8, 8, 16)
    # every kept voxel keeps its world position: find the voxel holding data[1, 0, 2]
    src_world = affine @ np.array([1, 0, 2, 1.0])
    ijk = np.rint(np.linalg.solve(new, src_world)[:3]).astype(int)
    assert out[tuple(ijk)] == data[1, 0, 2]
    assert out[:, 0, :].sum() == 0  # padded rows are air (0)


def test_preprocess_spec_from_config():
    spec = PreprocessSpec.from_config({"spacing_mm": [1, 1, 2], "hu_range": [-1000, 1000],
                                       "window_voxels": [8, 8, 4]})
    assert spec.window_voxels == (8, 8, 4) and spec.hu_range == (-1000.0, 1000.0)


# Series choice on a small export written by the demo's DICOM writer (real files, real pydicom reads).
def _export(tmp_path):
    import pydicom
    from pydicom.encaps import encapsulate
    from pydicom.uid import JPEGBaseline8Bit

    from ctvlp.demo.dicom_writer import SeriesSpec, StudyInfo, write_series
    from ctvlp.demo.findings import sample_anatomy
    from ctvlp.demo.phantom import Phantom

    rng = np.random.default_rng(11)
    phantom = Phantom(sample_anatomy(rng))
    study = StudyInfo("Test^Pat", "PID7", "19700101", "F", "050Y", "ACC7", "20200101", "Inst", "Doc",
                      "1.2.3.7", "1.2.3.7.1", "SIEMENS")
    root = tmp_path / "export"
    specs = {"SE2": SeriesSpec(2, "Thorax 5.0 B31f", "B31f", 5.0, 24, 60.0, 48, 7.0),  # first choice, broken
             "SE3": SeriesSpec(3, "Thorax 2.5 B70f", "B70f", 2.5, 48, 60.0, 48, 7.0),  # the fallback
             "SE4": SeriesSpec(4, "MIP 10 mm", "B31f", 5.0, 24, 60.0, 48, 7.0)}  # a projection
    for name, spec in specs.items():
        write_series(phantom, study, spec, root / name, np.random.default_rng(0), 0.0, f"uid-{name}")
    for f in (root / "SE2").iterdir():  # compressed pixel data a decoder exists for, but damaged
        ds = pydicom.dcmread(f)
        ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
        ds.PixelData = encapsulate([b"\xff\xd8 damaged \xff\xd9"])
        ds["PixelData"].VR = "OB"
        ds.save_as(f)
    for f in (root / "SE4").iterdir():
        ds = pydicom.dcmread(f)
        ds.ImageType = ["DERIVED", "SECONDARY", "MIP"]
        ds.save_as(f)
    return root


def test_derived_series_stay_references_and_a_failed_first_choice_falls_back(tmp_path):
    from ctvlp.ingest.sources import IngestSettings, ingest
    from ctvlp.io.dicom import GeometryRules, index_dicom
    from ctvlp.io.selection import SelectionRules
    from ctvlp.ingest.manifest import SplitSpec
    from ctvlp.preprocess.shard import process_shard
    from ctvlp.ingest.qc import apply_preprocess_results, merge_results, summary_markdown

    root = _export(tmp_path)
    index = index_dicom(root, b"salt")
    settings = IngestSettings(GeometryRules(), SelectionRules(prefer_kernels=("B31",)), SplitSpec(), 1)
    manifest, series, qc, inputs = ingest({"hospital": {"dicom_root": str(root)}}, index, b"salt", settings)
    by_number = series.set_index("series_number")
    assert by_number.loc[4, "role"] == "reference" and "mip" in by_number.loc[4, "reason"]
    assert by_number.loc[2, "rank"] == 0 and by_number.loc[3, "rank"] == 1 and by_number.loc[4, "rank"] == -1
    assert len(manifest) == 1 and manifest.candidates.iloc[0] == [by_number.loc[2, "series_key"],
                                                                   by_number.loc[3, "series_key"]]
    spec = PreprocessSpec((7.0, 7.0, 5.0), (-1000.0, 1000.0), (8, 8, 4))
    results = process_shard(manifest, 0, {"hospital": {"dicom_root": str(root)}}, index, spec,
                            tmp_path / "cache", GeometryRules())
    r = results.iloc[0]
    assert r.status == "ok" and r.source == by_number.loc[3, "series_key"] and r.series_number == 3
    assert list(r.failed_sources) == [by_number.loc[2, "series_key"]]
    assert r.failed_reasons[0].startswith("cannot decode pixel data (JPEG Baseline")
    assert "fallback after" in r.reason and "cannot decode" in r.reason
    qc = apply_preprocess_results(qc, results).set_index("item")
    assert qc.loc[by_number.loc[2, "series_key"], "status"] == "rejected"
    assert qc.loc[by_number.loc[2, "series_key"], "stage"] == "preprocess"
    assert qc.loc[by_number.loc[3, "series_key"], "role"] == "volume"
    assert qc.loc[by_number.loc[3, "series_key"], "volume_id"] == manifest.volume_id.iloc[0]
    volumes = merge_results(manifest, results)
    assert volumes.source.iloc[0] == by_number.loc[3, "series_key"]
    # inputs are the files walked, counted apart from the QC rows: 24 + 48 + 24 files, none lost
    assert inputs == {"hospital": 96}
    assert "| hospital | 96 | 72 | 24 | 0 |" in summary_markdown(qc.reset_index(), inputs)
    assert "| hospital | 97 | 72 | 24 | 1 |" in summary_markdown(qc.reset_index(), {"hospital": 97})


def test_a_source_without_accepted_volumes_stops_with_reason_counts(tmp_path):
    from ctvlp.ingest.sources import IngestSettings, ingest
    from ctvlp.io.dicom import GeometryRules, index_dicom
    from ctvlp.io.selection import SelectionRules
    from ctvlp.ingest.manifest import SplitSpec
    from ctvlp.ingest.qc import EmptySourceError

    root = _export(tmp_path)
    index = index_dicom(root, b"salt")
    settings = IngestSettings(GeometryRules(), SelectionRules(min_slices=100), SplitSpec(), 1)
    with pytest.raises(EmptySourceError, match=r"hospital: 0 accepted volumes of 3 items \(3 x too few slices \(N < N\)\)"):
        ingest({"hospital": {"dicom_root": str(root)}}, index, b"salt", settings)


def test_the_resolver_refuses_a_series_number_two_series_share(tmp_path):
    from ctvlp.io.dicom import index_dicom
    from ctvlp.text.resolve import REASONS, StudyResolver

    root = _export(tmp_path)
    index = index_dicom(root, b"salt")
    index.loc[index.SeriesNumber == 4, "SeriesNumber"] = 3.0  # the MIP exported with the fallback's number
    from ctvlp.io.dicom import read_series

    read = read_series(root / "SE3")
    volume = pd.Series({"frame_key": index.frame_key.iloc[0], "affine": read.affine.ravel(), "shape": read.shape})
    resolver = StudyResolver(index, pd.DataFrame({"series_number": [3]}), volume, 4)
    code, target, used = resolver.resolve(3, 5)
    assert (code, target, REASONS[code]) == ("ambiguous_series_number", None, "ambiguous series number")
    assert resolver.resolve(2, 5)[0] == "ok"


def _norm(index):
    """Index rows in a fixed order, missing values alike (the parquet schema types what pandas leaves open)."""
    index = index.sort_values(["path_key", "frame"]).reset_index(drop=True)
    index["has_pixels"] = index.has_pixels.fillna(False).astype(bool)
    return index.astype(object).where(index.notna(), None)


def test_partitioned_index_equals_the_in_memory_one_and_incremental_rereads_only_changes(tmp_path):
    import os
    import shutil

    from ctvlp.io import index_store
    from ctvlp.io.dicom import index_dicom

    root = _export(tmp_path)
    (root / "notes.txt").write_text("not dicom")
    expected = _norm(index_dicom(root, b"salt"))
    out, state = tmp_path / "index", tmp_path / "state"
    counts = [index_store.write_part(root, b"salt", p, 3, out / f"part={p}", 4, chunk_files=10, state=state)
              for p in range(3)]
    assert sum(c["files"] for c in counts) == 97 and sum(c["reused"] for c in counts) == 0
    got = _norm(index_store.read_index(out))
    assert set(got.bucket) <= {0, 1, 2, 3} and got.groupby("study_key").bucket.nunique().max() == 1
    pd.testing.assert_frame_equal(got[expected.columns], expected, check_dtype=False)
    assert index_store.summarize(out, counts)["files_walked"] == 97
    # one bucket at a time holds whole studies; a shard reads only its series' paths
    assert sum(len(b) for b in index_store.iter_buckets(out, index_store.CLASSIFY_COLUMNS)) == len(expected)
    se3 = expected[expected.SeriesNumber == 3]
    files = index_store.series_files(out, [se3.series_key.iloc[0]], [se3.study_key.iloc[0]], 4)
    assert sorted(files.path) == sorted(se3.path) and set(files.columns) == set(index_store.SHARD_COLUMNS)
    # incremental: one file changed, one new, one removed; everything else comes from the last run
    changed = sorted((root / "SE3").iterdir())[0]
    changed.write_bytes(changed.read_bytes())
    os.utime(changed, ns=(1, 1))
    shutil.copy(changed, root / "SE3" / "IM9999")
    (root / "notes.txt").unlink()
    shutil.rmtree(out)
    counts = [index_store.write_part(root, b"salt", p, 3, out / f"part={p}", 4, chunk_files=10, state=state)
              for p in range(3)]
    assert sum(c["read"] for c in counts) == 2 and sum(c["reused"] for c in counts) == 95
    fresh, again = _norm(index_dicom(root, b"salt")), _norm(index_store.read_index(out))
    pd.testing.assert_frame_equal(again[fresh.columns], fresh, check_dtype=False)


def test_ingest_config_errors_stop_before_any_job(tmp_path):
    from ctvlp.core.config import ConfigError
    from ctvlp.ingest.inputs import check_inputs

    with pytest.raises(ConfigError, match=r"ingest.file_list': file '/nonexistent/list.txt' does not exist"):
        check_inputs({"ingest": {"file_list": "/nonexistent/list.txt"}, "demo": {"enabled": True}})
    with pytest.raises(ConfigError, match="keep_volumes': false needs a frozen window encoder"):
        check_inputs({"preprocess": {"keep_volumes": False}, "demo": {"enabled": True},
                      "model": {"window_encoder": {"trainable": True}}})
    folder = tmp_path / "ct_rate" / "train_fixed" / "train_1" / "train_1_a"
    folder.mkdir(parents=True)
    import nibabel as nib

    nib.save(nib.Nifti1Image(np.zeros((2, 2, 2), np.float32), np.diag([2.0, 2, 2, 1])), folder / "train_1_a_1.nii.gz")
    with pytest.raises(ConfigError, match=r"data.ct_rate.release': CT-RATE release mismatch: .*'raw' but .* holds "
                                          r"the 'fixed' release"):
        check_inputs({"demo": {"enabled": False}, "data": {"ct_rate": {"root": str(tmp_path / "ct_rate"),
                                                                       "release": "raw"}}})
