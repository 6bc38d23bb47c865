"""Manifest, splits, QC invariant and the preprocessed cache of the demo workflow run."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ctvlp.io.volume import LPS_TO_RAS
from ctvlp.manifest import SplitLeakError, check_split_leaks
from ctvlp.preprocess.cache import read_cached
from ctvlp.preprocess.transform import PreprocessSpec, crop_or_pad


def test_qc_has_every_input_once_and_nothing_is_lost(demo_run):
    qc = pd.read_parquet(demo_run / "results" / "qc" / "qc.parquet")
    truth = demo_run / "demo_data" / "ground_truth"
    series = pd.read_csv(truth / "hospital_series.csv")
    studies = pd.read_csv(truth / "hospital_studies.csv")
    hospital = qc[qc.dataset == "hospital"]
    assert len(hospital) == len(series) + int(studies.has_scout.sum())
    assert (hospital.role == "volume").sum() == len(studies)
    assert hospital[hospital.status == "rejected"].reason.eq("localizer/scout images").all()
    ctrate_files = list((demo_run / "demo_data" / "ct_rate" / "dataset").glob("*_fixed/*/*/*.nii.gz"))
    assert (qc.dataset == "ct_rate").sum() == len(ctrate_files)
    merlin_files = list((demo_run / "demo_data" / "merlin" / "merlin_data").iterdir())
    assert (qc.dataset == "merlin").sum() == len(merlin_files) + 1  # + the report row without a volume
    inspect_files = list((demo_run / "demo_data" / "inspect" / "full" / "CTPA").glob("*.nii.gz"))
    assert (qc.dataset == "inspect").sum() == len(inspect_files)
    assert qc[(qc.dataset == "inspect") & (qc.status == "rejected")].reason.str.startswith("known broken scan").all()
    assert not qc.duplicated(["dataset", "item"]).any()
    assert set(qc.status) <= {"accepted", "rejected"}
    summary = (demo_run / "results" / "qc" / "summary.md").read_text()
    assert "| hospital | 121 |" in summary or "| hospital |" in summary
    for line in summary.splitlines()[4:7]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        assert int(cells[1]) == int(cells[2]) + int(cells[3]) and cells[4] == "0"


def test_manifest_splits_by_patient_and_ids_are_pseudonyms(demo_run):
    volumes = pd.read_parquet(demo_run / "results" / "manifest" / "volumes.parquet")
    assert (volumes.status == "ok").all()
    check_split_leaks(volumes)
    assert set(volumes[volumes.dataset == "hospital"].split) == {"train", "dev", "test"}
    assert set(volumes[volumes.dataset == "ct_rate"].split) == {"train", "dev", "test"}
    assert volumes.patient_id.str.match(r"^P[0-9a-f]{16}$").all()
    assert volumes.volume_id.is_unique


def test_planted_split_leak_stops_with_pseudonymous_id():
    manifest = pd.DataFrame({"patient_id": ["Pa", "Pb", "Pb"], "split": ["train", "train", "test"]})
    with pytest.raises(SplitLeakError, match="patient Pb appears in splits test, train"):
        check_split_leaks(manifest)


def test_cache_is_scaled_windowed_and_lesions_land_where_planted(demo_run):
    volumes = pd.read_parquet(demo_run / "results" / "manifest" / "volumes.parquet")
    series = pd.read_parquet(demo_run / "results" / "ingest" / "hospital_series.parquet")
    lesions = pd.read_csv(demo_run / "demo_data" / "ground_truth" / "hospital_lesions.csv")
    studies = pd.read_csv(demo_run / "demo_data" / "ground_truth" / "hospital_studies.csv")
    window = (32, 32, 8)
    # map accession (ground truth) to the volume via the pseudonymized series table
    from ctvlp.ids import Pseudonymizer
    pseudo = Pseudonymizer(b"ctvlp-demo-salt")
    checked = 0
    for _, lesion in lesions[lesions.label.isin(["Lung nodule", "Medical material", "Lymphadenopathy"])].iterrows():
        key = pseudo("hospital", "accession", lesion.accession)
        chosen = series[(series.accession_key == key) & series.selected].iloc[0]
        vol = volumes[volumes.volume_id == "V" + chosen.series_key[1:]].iloc[0]
        data = read_cached(demo_run / "results" / "cache" / "volumes" / f"{vol.volume_id}.npy")
        assert data.dtype == np.float16 and all(n % w == 0 for n, w in zip(data.shape, window))
        affine = np.array(vol.affine).reshape(4, 4)
        ras = LPS_TO_RAS @ np.array([lesion.x, lesion.y, lesion.z, 1.0])
        ijk = np.rint(np.linalg.solve(affine, ras)[:3]).astype(int)
        if not all(0 <= i < n for i, n in zip(ijk, data.shape)):
            continue  # cropped away by the centre crop
        value = float(data[tuple(ijk)])
        expected = 1.0 if lesion.label == "Medical material" else (45 + 1000) / 2000
        assert abs(value - expected) < 0.12, (lesion.label, value)
        checked += 1
    assert checked >= 8
    assert len(studies) == (volumes.dataset == "hospital").sum()


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
