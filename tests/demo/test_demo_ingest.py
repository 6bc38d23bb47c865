"""Manifest, splits, QC invariant and the preprocessed cache of the demo run (no fault corpus: every rejection
of the hospital's is a scout; 210 studies: at least 8 planted lesions found in the cache).

Moved here from tests/test_ingest_pipeline.py (issue 28): the same checks, on the outputs of ``make demo``
(tests/demo/conftest.py). The main suite checks them on the small test run, its fault corpus set apart; its cache
test holds at both sizes and is collected here again."""

from __future__ import annotations

import pandas as pd
import pytest

from ctvlp.ingest.manifest import check_split_leaks
from test_ingest_pipeline import (  # noqa: F401  (collected again on the demo's outputs: its bounds scale)
    test_cache_is_scaled_windowed_and_lesions_land_where_planted,
)

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
