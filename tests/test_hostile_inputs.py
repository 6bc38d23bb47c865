"""Hostile and awkward input (issue 27), fed through the real rules: report text that matplotlib would read as
math, salts that are missing, changed or could be left on disk, reports that join nothing or could leave the
site, QC that must keep the reason.

The fast tests run dry runs (the configuration checks happen while the workflow is parsed) and the library parts
on small inputs; the `workflow` tests read the session's test run (its cohort carries the fault corpus,
``ctvlp.demo.faults``, hostile kinds included) or run Snakemake on copies of it.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pydicom
import pytest
import yaml

from conftest import REPO, SNAKEMAKE, TEST_CONFIG, run_configfiles, run_snakemake, write_config
from ctvlp.privacy.phi_scan import find_identifiers

HOSTILE = "Kosten $5, Notiz $x^$ <b>a|b</b> *c* _d_ \\frac{ $"
DEMO_SALT = yaml.safe_load((REPO / "config" / "config.yaml").read_text())["privacy"]["salt"]


# ---- figures: text drawn as plain text ----------------------------------------------------------------------
def test_every_figure_draws_math_and_markup_as_plain_text(tmp_path):
    """Labels, run names, snippets and the CLI's sentence holding `$...$`, a lone `$`, TeX and HTML: every
    figure function draws them (matplotlib's default would stop at the math parser: checked first)."""
    import matplotlib.pyplot as plt

    from ctvlp.evaluate import figures

    fig, ax = plt.subplots()
    ax.set_title(HOSTILE)
    with pytest.raises(ValueError):  # the input is hostile indeed: matplotlib's default parses it as math
        fig.savefig(tmp_path / "default.png")
    plt.close(fig)

    run = f"run {HOSTILE}"
    auc = {"value": 0.7, "ci_low": 0.6, "ci_high": 0.8}
    metrics = {run: {"hospital": {
        "zero_shot": {"p": {"per_label": {HOSTILE: {"auc": auc}}}},
        "retrieval": {"t2i_scans": {"pool": 4, "recall_curve": [25.0, 50.0, 75.0, 100.0]}},
        "localization": {"model": {"errors_mm": [1.0, 2.0]}, "middle_bin": {"errors_mm": [3.0]},
                         "random_bin": {"errors_mm": [4.0]}}}}}
    out = tmp_path / "figures"
    made = figures.per_label_auc(metrics, "hospital", "p", out)
    made += figures.recall_curves(metrics, "hospital", "t2i_scans", out)
    made += figures.localization_errors(metrics, out)
    made += figures.training_curves({run: pd.DataFrame({"step": [1, 2], "contrastive": [1.0, 0.5]})}, out)
    volume = np.zeros((8, 8, 16), np.float32)
    example = {"volume": volume, "true_bin": 1, "pred_bin": 2, "profile": [0.1, 0.2, 0.3, 0.1], "label": HOSTILE}
    made += figures.qualitative_panel([example], 4, 1.0, HOSTILE, out)
    made.append(figures.localize_figure(volume, {"bin": 2, "z_mm": 10.0, "profile": [0.1, 0.2, 0.3, 0.1]}, 4, 1.0,
                                        HOSTILE, tmp_path / "cli.png"))
    assert len(made) == 11 and all(p.stat().st_size > 1000 for p in made)
    assert plt.rcParams["text.parse_math"]  # the caller's settings are left as they were


# ---- configuration checks before any job --------------------------------------------------------------------
def _paper_dry_run(tmp_path: Path, *extra: str, env: dict | None = None) -> subprocess.CompletedProcess:
    from paper_roots import fake_paper_roots

    roots = write_config(tmp_path / "paper_roots.yaml", fake_paper_roots(tmp_path))
    cmd = [str(SNAKEMAKE), "-s", str(REPO / "Snakefile"), "-d", str(tmp_path), "-n", "--cores", "1", "--configfile",
           str(REPO / "config/config.yaml"), str(REPO / "config/paper.yaml"), str(roots), *extra]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=tmp_path,
                          env={**(env if env is not None else os.environ), "HF_HUB_OFFLINE": "1"})


def test_a_missing_salt_stops_a_paper_like_run_while_parsing(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "CTVLP_SALT"}
    proc = _paper_dry_run(tmp_path, env=env)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "rule " not in proc.stdout and "dicom_index_part" not in proc.stdout
    assert "ConfigError" in out and "ctvlp: privacy: no pseudonymization salt: export CTVLP_SALT" in out, out[-2000:]
    assert "Traceback" not in out


def test_an_llm_endpoint_off_the_site_is_refused_before_any_job(tmp_path):
    """Report text goes to text.llm.base_url when the labeler is llm or translation is on: a public address is
    refused while parsing, unless text.llm.allow_remote: true; a private one passes."""
    remote = write_config(tmp_path / "remote.yaml", {"text": {"labeler": "llm", "llm": {
        "base_url": "http://8.8.8.8:8000/v1", "model": "m"}}})
    proc = run_snakemake(tmp_path, "-n", "--cores", "1", "--configfile", str(REPO / "config/config.yaml"), str(remote))
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "rule " not in proc.stdout
    assert "text.llm.base_url host '8.8.8.8' resolves to 8.8.8.8, not a loopback or private address" in out
    allowed = write_config(tmp_path / "allowed.yaml", {"text": {"translate": {"from": "de", "to": "en"}, "llm": {
        "base_url": "http://8.8.8.8:8000/v1", "model": "m", "allow_remote": True}}})
    proc = run_snakemake(tmp_path, "-n", "--cores", "1", "--configfile", str(REPO / "config/config.yaml"), str(allowed))
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-2000:]  # private addresses: the next test


def test_endpoint_check_reads_every_address_the_host_resolves_to():
    from ctvlp.text.llm import endpoint_problem

    assert endpoint_problem({"base_url": "http://localhost:8000/v1"}) is None
    assert endpoint_problem({"base_url": "http://[::1]:8000/v1"}) is None
    assert endpoint_problem({"base_url": "http://192.168.1.5/v1"}) is None
    assert "not a loopback or private" in endpoint_problem({"base_url": "https://1.1.1.1/v1"})
    assert "does not resolve" in endpoint_problem({"base_url": "http://no-such-host.invalid/v1"})
    assert "not an http(s) URL" in endpoint_problem({"base_url": "file:///etc/hosts"})


# ---- QC reasons (library level; the run's rows are checked below and in tests/test_faults.py) -----------------
def _a_dicom_series(folder: Path, n: int = 6) -> list[Path]:
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    folder.mkdir(parents=True)
    series, paths = generate_uid(), []
    for i in range(n):
        ds = pydicom.Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID = generate_uid()
        ds.Modality, ds.SeriesInstanceUID, ds.StudyInstanceUID = "CT", series, "1.2.3"
        ds.ImagePositionPatient, ds.ImageOrientationPatient = [0, 0, float(i)], [1, 0, 0, 0, 1, 0]
        ds.PixelSpacing, ds.SliceThickness, ds.InstanceNumber = [1, 1], 1.0, i + 1
        ds.Rows = ds.Columns = 64  # pixel data: most of the file, so half the file cuts into it
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.PixelData = np.full((64, 64), i, np.int16).tobytes()
        paths.append(folder / f"IM{i:04d}")
        ds.save_as(paths[-1], enforce_file_format=True)
    return paths


def test_a_cut_dicom_names_the_damage(tmp_path):
    from ctvlp.io.dicom import SeriesError, read_header, read_series

    paths = _a_dicom_series(tmp_path / "s")
    whole = paths[0].read_bytes()
    short = tmp_path / "short"
    short.write_bytes(whole[:100])
    assert read_header(str(short), str(tmp_path), b"s")[0]["reason"].startswith("truncated file (100 bytes")
    notes = tmp_path / "notes.txt"
    notes.write_text("export notes\n")
    assert read_header(str(notes), str(tmp_path), b"s")[0]["reason"] == "not a DICOM file"
    paths[3].write_bytes(paths[3].read_bytes()[: len(paths[3].read_bytes()) // 2])
    with pytest.raises(SeriesError) as err:
        read_series(tmp_path / "s", name="R1")
    assert "bytes of pixel data is less than expected" in str(err.value) and "in file IM0003" in str(err.value)
    assert str(tmp_path) not in str(err.value)  # the file's name, never its path


def test_qc_summary_cells_escape_header_values():
    from ctvlp.ingest.qc import build_qc, summary_markdown

    qc = build_qc([{"dataset": "hospital", "kind": "series", "item": "R1", "volume_id": "", "status": "rejected",
                    "role": "", "stage": "ingest", "reason": "modality M|R<i>\nX, expected CT", "n_inputs": 3}])
    md = summary_markdown(qc)
    row = next(line for line in md.splitlines() if "expected CT" in line)
    assert row == "| hospital | ingest | modality M\\|R&lt;i&gt; X, expected CT | 1 |"
    cells = [c for c in row.replace("\\|", "").split("|")]
    assert len(cells) == 6  # four cells between the outer bars


def test_a_fallback_is_counted_in_the_shard_line():
    from ctvlp.preprocess.shard import shard_counts

    results = pd.DataFrame({"status": ["ok", "ok", "rejected"], "cached": [True, True, False],
                            "failed_sources": [["R1"], [], ["R2", "R3"]]})
    assert shard_counts(results) == "2 ok (1 after a fallback), 1 rejected, 2 cached; 3 series failed"


def test_an_unfinished_jobs_log_is_kept_beside_the_rerun(tmp_path):
    from ctvlp.core.logs import DONE, START, keep_unfinished_logs, logged

    log = tmp_path / "rule.log"
    log.write_text("reading part 3 ...\n")  # what a SIGKILLed job leaves
    with logged(log) as logger:
        logger.info("second attempt")
    assert (tmp_path / "rule.attempt-1.log").read_text() == "reading part 3 ...\n"
    assert log.read_text().rstrip().endswith(DONE) and "rule.attempt-1.log" in log.read_text()
    with logged(log) as logger:  # a finished job's log is replaced, not kept
        logger.info("third")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rule.attempt-1.log", "rule.log"]
    # at a run's start (Snakemake deletes a job's log before rerunning it): only logs of logged() that did not end
    log.write_text(f"{START}\nkilled here\n")
    (tmp_path / "shell.log").write_text("a shell rule's log\n")
    assert keep_unfinished_logs(tmp_path) == [tmp_path / "rule.attempt-2.log"]
    assert (tmp_path / "shell.log").exists() and not log.exists()


# ---- reports that join nothing; a changed salt (library level) ----------------------------------------------
def test_no_report_joining_says_so_and_names_a_changed_salt(tmp_path):
    from ctvlp.core.salt import fingerprint, salt_changed
    from ctvlp.text.stage import ReportsJoinError, check_reports_joined

    rows = [{"kind": "report", "reason": "no study with this accession number"}] * 3
    with pytest.raises(ReportsJoinError, match=r"hospital: 0 of 3 reports in r\.csv joined a study of the index "
                                               r"\(3 x no study with this accession number\)$"):
        check_reports_joined(rows, 0, tmp_path / "r.csv")
    with pytest.raises(ReportsJoinError, match=r"0 of 0 reports .* only its header"):
        check_reports_joined([], 0, "r.csv")
    note = salt_changed(fingerprint(b"salt-A-7f3"), fingerprint(b"salt-B-9c1"), "the DICOM index")
    with pytest.raises(ReportsJoinError, match="the salt changed since ingestion"):
        check_reports_joined(rows, 0, "r.csv", note)
    check_reports_joined(rows, 2, "r.csv")  # some joined, same salt: goes on
    assert "salt-A" not in note and "salt-B" not in note and fingerprint(b"salt-A-7f3") in note


# ---- through the real rules, on copies of the session's test run ----------------------------------------------
def _copy_run(test_run: Path, work: Path) -> list[str]:
    """The test run's results and cohort as hard links in ``work`` (no .snakemake: no params are recorded
    there, so nothing reruns unless an input is newer), and the configfile arguments that point at them."""
    for name in ("results", "demo_data"):
        subprocess.run(["cp", "-al", str(test_run / name), str(work / name)], check=True)
    cfg = write_config(work / "override.yaml", {"results": str(work / "results"), "logs": str(work / "logs"),
                                                "demo": {"root": str(work / "demo_data")}})
    return ["--configfile", str(REPO / "config/config.yaml"), str(TEST_CONFIG), str(cfg)]


def _replace(path: Path, source: Path) -> None:
    path.unlink()  # a hard link: the test run's own file stays as it is
    shutil.copyfile(source, path)


@pytest.mark.parametrize("fault", ["reports file that joins no study", "reports file with only its header"])
def test_a_reports_file_that_joins_nothing_stops_the_text_stage_with_the_count(test_run, tmp_path, fault):
    args = _copy_run(test_run, tmp_path)
    faults = pd.read_csv(tmp_path / "demo_data/ground_truth/faults.csv", dtype=str, keep_default_na=False)
    f = faults[faults.kind == fault].iloc[0]
    _replace(tmp_path / "demo_data/hospital/reports/reports.csv", tmp_path / "demo_data" / f.input)
    proc = run_snakemake(tmp_path, str(tmp_path / "results/text/labels.parquet"), "--cores", "1", *args)
    assert proc.returncode != 0
    assert "rule report_text:" in proc.stdout + proc.stderr and "rule dicom_index_part" not in proc.stdout + proc.stderr
    log = (tmp_path / "logs" / "report_text.log").read_text()
    # the export's own name: the file was put in its place
    assert f"ReportsJoinError: {f.reason.replace(Path(f.input).name, 'reports.csv')}" in log, log[-2000:]
    assert "No objects to concatenate" not in log


def test_a_changed_salt_is_named_before_any_job_and_in_the_text_stage(test_run, tmp_path):
    other = write_config(tmp_path / "salt.yaml", {"privacy": {"salt": "a-salt-other-than-the-index-one"}})
    # a dry run over the test run: said while parsing; the salt is a param of the index, which is redone
    proc = run_snakemake(test_run, "-n", "--cores", "1", *run_configfiles(test_run), str(other))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "ctvlp: privacy: the salt changed since ingestion" in proc.stderr.split("rule ")[0], proc.stderr[-2000:]
    assert "dicom_index_part" in proc.stdout
    args = _copy_run(test_run, tmp_path)
    # the text stage run on its own with another salt (no params recorded here: the index is not redone)
    proc = run_snakemake(tmp_path, str(tmp_path / "results/text/labels.parquet"), "--forcerun", "report_text",
                         "--cores", "1", *args, str(other))
    assert proc.returncode != 0 and "the salt changed since ingestion" in proc.stderr  # said while parsing
    log = (tmp_path / "logs" / "report_text.log").read_text()
    assert "ReportsJoinError: hospital: 0 of " in log and "; the salt changed since ingestion" in log, log[-2000:]
    assert "a-salt-other" not in log and DEMO_SALT not in log


def test_the_run_carries_the_hostile_text_into_snippets_figures_and_the_cli(test_run, tmp_path):
    marker = "$x^$ a|b *c* _d_ \\frac{ $"  # ctvlp.demo.faults.HOSTILE_TEXT once scrubbing dropped its HTML tags
    reports = pd.read_parquet(test_run / "results" / "text" / "reports.parquet")
    hosp = reports[reports.dataset == "hospital"]
    assert hosp.findings.str.contains(marker, regex=False).any()
    assert hosp.impression.str.contains(marker, regex=False).any()
    snippets = pd.read_parquet(test_run / "results" / "text" / "snippets.parquet")
    assert snippets.snippet.str.contains("$x^$", regex=False).any()
    figures = sorted((test_run / "results" / "figures").glob("*.png"))
    assert {"qualitative.png", "localization_errors.png", "training_curves.png"} <= {p.name for p in figures}
    # the CLI's sentence: drawn as it is
    vols = pd.read_parquet(test_run / "results" / "manifest" / "volumes.parquet")
    test_ids = set(vols[(vols.dataset == "hospital") & (vols.split == "test") & (vols.status == "ok")].volume_id)
    used = vols[vols.volume_id == sorted(test_ids)[0]].source.iloc[0]  # the series read (a fallback's too)
    index = pd.read_parquet(test_run / "results" / "ingest" / "dicom_index", columns=["series_key", "path"])
    path = index[index.series_key == used].path.iloc[0]
    folder = test_run / "demo_data" / "hospital" / "DICOM" / Path(path).parent
    fig = tmp_path / "where.png"
    proc = subprocess.run([sys.executable, "-m", "ctvlp.cli", "localize", "--checkpoint",
                           str(test_run / "results" / "runs" / "full"), "--scan", str(folder), "--text",
                           f"Rundherd {HOSTILE}", "--figure", str(fig)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert fig.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_run_keeps_the_qc_reasons_of_the_hostile_dicom(test_run):
    from ctvlp.demo.faults import HOSTILE_MODALITY

    qc = pd.read_parquet(test_run / "results" / "qc" / "qc.parquet")
    reasons = qc[qc.dataset == "hospital"].reason
    assert reasons.str.startswith("truncated file (100 bytes").sum() == 1
    cut = reasons[reasons.str.contains("bytes of pixel data is less than expected", regex=False)]
    assert len(cut) >= 1 and cut.str.contains(r"in file IM\d{4}").all()
    assert reasons.str.contains(f"modality {HOSTILE_MODALITY}, expected CT", regex=False).sum() == 1
    summary = (test_run / "results" / "qc" / "summary.md").read_text()
    assert "<i>" not in summary and "M|R" not in summary
    counts, reasons_table = summary.split("| dataset | stage |")
    for table, bars in ((counts, 6), (reasons_table, 5)):  # every row keeps its header's cells
        rows = [line for line in table.splitlines() if line.startswith("|")]
        assert rows and all(line.replace("\\|", "").count("|") == bars for line in rows), rows
    logs = "\n".join(p.read_text() for p in sorted((test_run / "logs").rglob("preprocess*/*.log")))
    lines = [line for line in logs.splitlines() if "after a fallback)" in line]
    assert any("(1 after a fallback)" in line and "0 series failed" not in line for line in lines), lines


# ---- the salt on disk after a killed and resumed run ----------------------------------------------------------
def _salted_files(work: Path, salt: str) -> list[str]:
    """Every file under ``work`` holding the salt (raw bytes, or inside compressed or embedded content)."""
    raw = [str(p) for p in work.rglob("*") if p.is_file() and salt.encode() in p.read_bytes()]
    return sorted(set(raw) | {f for f, _ in find_identifiers([work], [salt], min_length=1)})


def test_a_killed_and_resumed_run_writes_the_salt_nowhere(test_run, tmp_path):
    """A fresh ingestion of the test cohort, SIGKILLed while a script rule runs (its pickled-config script is
    left in .snakemake/scripts), then --rerun-incomplete to the end: no file under the working directory holds
    the salt, the scanner finds it where it is planted, and the killed job's log is kept beside the rerun's."""
    from ctvlp.core.logs import DONE, START

    work = tmp_path / "work"
    work.mkdir()
    cfg = write_config(work / "override.yaml", {"results": str(work / "results"), "logs": str(work / "logs"),
                                                "demo": {"root": str(test_run / "demo_data")}})
    target = str(work / "results" / "qc" / "summary.md")
    args = [target, "--cores", "1", "--configfile", str(REPO / "config/config.yaml"), str(TEST_CONFIG), str(cfg)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    job = subprocess.Popen([str(SNAKEMAKE), "-s", str(REPO / "Snakefile"), "-d", str(work), *args], cwd=work,
                           env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    scripts = work / ".snakemake" / "scripts"

    def running() -> bool:  # an index job (a script rule) is under way: its script exists, its log is unfinished
        logs = list((work / "logs" / "dicom_index").glob("part_*.log"))
        texts = [p.read_text(errors="replace") for p in logs]
        return bool(list(scripts.glob("tmp*.py"))) and any(START in t and DONE not in t for t in texts)

    deadline = time.time() + 600
    while time.time() < deadline and job.poll() is None and not running():
        time.sleep(0.02)
    os.killpg(job.pid, signal.SIGKILL)
    job.wait()
    left = list(scripts.glob("tmp*.py"))
    assert left, "no script rule was running when the run was killed"
    left_over = left[0].read_bytes()  # the pickled config of a killed job's script
    assert _salted_files(work, DEMO_SALT) == []  # what the killed run left
    killed_logs = {p.relative_to(work / "logs") for p in (work / "logs" / "dicom_index").glob("part_*.log")
                   if START in (t := p.read_text(errors="replace")) and DONE not in t}
    assert run_snakemake(work, "--unlock", *args).returncode == 0
    again = run_snakemake(work, *args, "--rerun-incomplete")
    assert again.returncode == 0, again.stderr[-3000:]
    assert _salted_files(work, DEMO_SALT) == []  # and everything after the resumed run
    kept = {p.with_name(p.name.replace(".attempt-1", "")).relative_to(work / "logs")
            for p in (work / "logs").rglob("*.attempt-1.log")}
    assert killed_logs and killed_logs <= kept, (killed_logs, kept)  # the killed job's log, beside the rerun's
    # the scanner finds the salt where it is planted: as text, and pickled into a copy of a left-over script
    planted = work / ".snakemake" / "scripts" / "planted.py"
    planted.write_bytes(left_over + f"\n# {DEMO_SALT}\n".encode())
    import pickle

    (work / "logs" / "planted.pkl").write_bytes(pickle.dumps({"privacy": {"salt": DEMO_SALT}}))
    assert _salted_files(work, DEMO_SALT) == sorted([str(planted), str(work / "logs" / "planted.pkl")])
