"""Manifest, splits, QC invariant and the preprocessed cache of the demo run (no fault corpus: every rejection
of the hospital's is a scout; 210 studies: at least 8 planted lesions found in the cache).

Moved here from tests/test_ingest_pipeline.py (issue 28): the same checks, on the outputs of ``make demo``
(tests/demo/conftest.py). The main suite checks them on the small test run, its fault corpus set apart."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ctvlp.features.cache import cache_file, read_cached
from ctvlp.ingest.manifest import check_split_leaks
from ctvlp.io.volume import LPS_TO_RAS

pytestmark = pytest.mark.demo


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


def test_cache_is_scaled_windowed_and_lesions_land_where_planted(demo_run):
    volumes = pd.read_parquet(demo_run / "results" / "manifest" / "volumes.parquet")
    series = pd.read_parquet(demo_run / "results" / "ingest" / "hospital_series.parquet")
    lesions = pd.read_csv(demo_run / "demo_data" / "ground_truth" / "hospital_lesions.csv")
    studies = pd.read_csv(demo_run / "demo_data" / "ground_truth" / "hospital_studies.csv")
    window = (32, 32, 8)
    # map accession (ground truth) to the volume via the pseudonymized series table
    from ctvlp.core.ids import Pseudonymizer
    pseudo = Pseudonymizer(b"ctvlp-demo-salt")
    checked = 0
    for _, lesion in lesions[lesions.label.isin(["Lung nodule", "Medical material", "Lymphadenopathy"])].iterrows():
        key = pseudo("hospital", "accession", lesion.accession)
        chosen = series[(series.accession_key == key) & series.selected].iloc[0]
        vol = volumes[volumes.volume_id == "V" + chosen.series_key[1:]].iloc[0]
        data = read_cached(cache_file(demo_run / "results" / "cache" / "volumes", vol.volume_id))
        assert cache_file(demo_run / "results" / "cache" / "volumes", vol.volume_id).parent.name == vol.volume_id[1:3]
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
    assert checked >= 8
    assert len(studies) == (volumes.dataset == "hospital").sum()
