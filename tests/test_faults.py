"""The workflow on a small demo cohort plus the fault corpus (ctvlp.demo.faults), read from the session's test
run (.test/config has the corpus on): it completes, every bad item is quarantined in a QC table with its specific
reason, and accepted + rejected = inputs for every source."""

from __future__ import annotations

import csv
import io
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pydicom
import pytest
from safetensors.numpy import load_file

from ctvlp.models.window_encoder import WindowEncoderSpec, build_window_encoder

from conftest import small_config


@pytest.fixture(scope="module")
def fault_run(test_run) -> Path:
    """The session's test run (.test/config: the fault corpus is on; rule all through training, evaluation,
    tables and figures; its end_to_end row trains the window encoder end to end from the pretrained file)."""
    return test_run


def _table(work: Path, name: str) -> pd.DataFrame:
    return pd.read_parquet(work / "results" / "qc" / f"{name}.parquet")


def _holds(text: str, reason: str) -> bool:
    """``reason``'s parts (separated by " … ") all in ``text``, in order."""
    at = 0
    for part in reason.split(" … "):
        at = text.find(part, at)
        if at < 0:
            return False
        at += len(part)
    return True


def _found(work: Path, f) -> bool:
    """Whether the run shows the fault ``f`` (a faults.csv row) handled: a QC row with its reason (tables qc,
    text_qc, mining_qc), its text whole in the snippets and every figure drawn (snippets), its escaped reason
    in the QC summary (summary). Faults of a whole run (run) are tests/test_hostile_inputs.py's."""
    if f.table == "snippets":
        figures = [work / "results" / "figures" / f"{name}.png" for name in ("qualitative", "localization_errors")]
        snippets = pd.read_parquet(work / "results" / "text" / "snippets.parquet")
        return all(p.is_file() for p in figures) and snippets.snippet.map(lambda t: _holds(t, f.reason)).any()
    if f.table == "summary":
        return _holds((work / "results" / "qc" / "summary.md").read_text(), f.reason)
    table = _table(work, f.table)
    if f.reason.startswith("flag:"):
        hit = table[(table.dataset == f.dataset) & table["flags"].str.contains(f.reason[5:], regex=False)]
    else:
        rejected = table if f.table == "mining_qc" else table[table.status != "accepted"]
        if f.reason.startswith("fallback after"):  # the fallback series is accepted, saying what failed first
            rejected = table[table.status == "accepted"]
        hit = rejected[rejected.reason.map(lambda r: _holds(r, f.reason))]
        if "dataset" in table:
            hit = hit[hit.dataset == f.dataset]
    return not hit.empty


def test_every_fault_is_quarantined_with_its_reason(fault_run):
    faults = pd.read_csv(fault_run / "demo_data" / "ground_truth" / "faults.csv", dtype=str, keep_default_na=False)
    assert len(faults) >= 30 and faults.kind.is_unique
    cohort = faults[faults.table != "run"]
    missing = [f"{f.kind}: '{f.reason}' not found in {f.table}" for f in cohort.itertuples() if not _found(fault_run, f)]
    print(f"RELIABILITY fault kinds tried: {len(faults)} ({len(cohort)} in the test run's cohort, "
          f"{len(faults) - len(cohort)} whole-run faults in tests/test_hostile_inputs.py; + a patient in two splits, "
          "tests/test_ingest_pipeline.py)")
    print(f"RELIABILITY fault kinds quarantined with their reason: {len(cohort) - len(missing)} of {len(cohort)}")
    assert missing == []


def _dicom_inputs(root: Path) -> tuple[int, int]:
    """(files that are not readable image objects, distinct series) counted independently with pydicom."""
    bad, series = 0, set()
    for path in (p for p in root.rglob("*") if p.is_file()):
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True)
            series.add(str(ds.SeriesInstanceUID))
        except Exception:
            bad += 1
    return bad, len(series)


def test_accepted_plus_rejected_equals_inputs_for_every_source(fault_run):
    qc = _table(fault_run, "qc")
    demo = fault_run / "demo_data"
    bad_files, n_series = _dicom_inputs(demo / "hospital" / "DICOM")
    hosp = qc[qc.dataset == "hospital"]
    assert len(hosp) == bad_files + n_series and hosp.item.is_unique
    ctrate_files = list((demo / "ct_rate" / "dataset").glob("*_fixed/*/*/*.nii.gz"))
    assert len(qc[qc.dataset == "ct_rate"]) == len(ctrate_files)
    summary = pd.read_csv(demo / "rad_chestct" / "Summary_3630.csv")
    on_disk = {p.stem for p in (demo / "rad_chestct").glob("*.npz")}
    assert len(qc[qc.dataset == "rad_chestct"]) == len(set(summary.NoteAcc_DEID.astype(str)) | on_disk)
    assert set(qc.status) == {"accepted", "rejected"} and (qc[qc.status == "rejected"].reason != "").all()
    inputs = bad_files + n_series + len(ctrate_files) + len(set(summary.NoteAcc_DEID.astype(str)) | on_disk)
    counted = qc[qc.dataset.isin(["hospital", "ct_rate", "rad_chestct"])]  # the sources counted above
    print(f"RELIABILITY inputs: {inputs}, quarantined: {(counted.status == 'rejected').sum()}, "
          f"lost: {inputs - len(counted)} (hospital, CT-RATE, Rad-ChestCT counted here with pydicom and the file "
          "system; every source's lost column in results/qc/summary.md)")
    assert inputs == len(counted)
    rows = [line.split("|")[1:-1] for line in (fault_run / "results" / "qc" / "summary.md").read_text().split(
        "\n\n")[1].splitlines()[2:]]  # | dataset | inputs | accepted | rejected | lost |
    lost = {cells[0].strip(): int(cells[4]) for cells in rows}
    faults = pd.read_csv(demo / "ground_truth" / "faults.csv", dtype=str, keep_default_na=False)
    print(f"RELIABILITY fault corpus: {len(faults)} kinds, {sum(int(c[1]) for c in rows)} inputs over "
          f"{len(rows)} sources, {sum(int(c[3]) for c in rows)} quarantined, lost: {sum(lost.values())} "
          f"(results/qc/summary.md)")
    assert set(lost.values()) == {0}, lost
    raw = (demo / "hospital" / "reports" / "reports.csv").read_bytes().decode("utf-8", errors="surrogateescape")
    reports = list(csv.DictReader(io.StringIO(raw, newline="")))
    text_qc = _table(fault_run, "text_qc")
    assert len(text_qc[(text_qc.dataset == "hospital") & (text_qc.kind == "report")]) == len(reports)
    # the good part still went through: accepted volumes and resolved snippets exist
    assert (qc.status == "accepted").sum() >= 20
    assert len(pd.read_parquet(fault_run / "results" / "text" / "snippets.parquet")) >= 5
    assert (fault_run / "results" / "tables" / "main_results.md").is_file()  # the workflow went to the end


def test_qc_summary_counts_the_faults(fault_run):
    summary = (fault_run / "results" / "qc" / "summary.md").read_text()
    for reason in ("modality MR, expected CT", "gantry tilt", "mixed releases", "npz file missing"):
        assert reason in summary
    qc = _table(fault_run, "qc")
    counted = qc[qc.reason.str.contains("without pixel data")].reason.iloc[0]
    assert counted.split(": ")[-1].startswith(str(len(list((fault_run / "demo_data/hospital/DICOM/FAULTS/F00").iterdir()))))


def test_end_to_end_run_carries_its_encoder_into_embed_and_the_cli(fault_run, tmp_path):
    """An ablation row with model.window_encoder.trainable: its checkpoint holds a changed window encoder, and
    the workflow's embedding of a held-out scan equals the CLI's, so both encoded it with the run's encoder."""
    run = fault_run / "results" / "runs" / "end_to_end"
    weights = load_file(str(run / "best.safetensors"))
    config = {**small_config(), "results": str(fault_run / "results")}
    encoder = build_window_encoder(WindowEncoderSpec.from_config(config), config["seed"])  # pretrained
    # checkpoints hold parameters only (RoPE's periods buffer is rebuilt from the config)
    start = {k: v for k, v in encoder.state_dict().items() if k in dict(encoder.named_parameters())}
    window = {k.removeprefix("window."): v for k, v in weights.items() if k.startswith("window.")}
    assert window.keys() == start.keys()
    assert any(not np.array_equal(v, start[k].numpy()) for k, v in window.items())
    vols = pd.read_parquet(fault_run / "results" / "manifest" / "volumes.parquet")
    test = vols[(vols.dataset == "hospital") & (vols.split == "test") & (vols.status == "ok")].sort_values("volume_id")
    volume_id = test.volume_id.iloc[0]
    index = pd.read_parquet(fault_run / "results" / "ingest" / "dicom_index")  # partitioned dataset
    folder = fault_run / "demo_data" / "hospital" / "DICOM" / Path(  # the series read (a fallback's too)
        index[index.series_key == test.source.iloc[0]].path.iloc[0]).parent
    out = tmp_path / "emb.safetensors"
    proc = subprocess.run([sys.executable, "-m", "ctvlp.cli", "embed", "--checkpoint", str(run), "--scan",
                           str(folder), "--out", str(out)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    meta = pd.read_parquet(run / "embeddings.parquet")
    hosp = meta[meta.set == "hospital"].reset_index(drop=True)
    row = int(hosp.index[hosp.volume_id == volume_id][0])
    workflow = np.load(run / "embeddings.npz")["hospital/scan"][row]
    np.testing.assert_allclose(load_file(str(out))["scan"], workflow, atol=2e-4)
