"""Report exports as sites write them, joining reports to studies, sections, and identifiers in bodies."""

from __future__ import annotations

import pandas as pd
import pytest

from ctvlp.core.ids import Pseudonymizer
from ctvlp.text.deidentify import identifiers_of, scrub
from ctvlp.text.pipeline import hospital_reports
from ctvlp.text.report_io import ReportFileError, read_report_table
from ctvlp.text.sections import sections_and_flags

SALT = b"test-salt"
P = Pseudonymizer(SALT)
CFG = {"report_columns": {"accession": "AccessionNumber", "text": "ReportText", "patient_id": "PatientID",
                          "study_date": "ReportDate", "study_uid": "StudyInstanceUID"},
       "join_fallback": ["study_uid", "patient_date"]}


def _volumes(studies: list[tuple[str, str, str]]) -> pd.DataFrame:
    """(accession, study uid, patient id) per study -> a volumes table as the manifest writes it."""
    rows = []
    for i, (acc, uid, pid) in enumerate(studies):
        rows.append({"volume_id": f"V{i:03d}", "scan_id": "C" + P("hospital", "study", uid)[1:],
                     "patient_id": P("hospital", "patient", pid), "dataset": "hospital", "split": "train",
                     "accession_key": P("hospital", "accession", acc), "status": "ok"})
    return pd.DataFrame(rows)


def _write(path, rows: list[dict], sep: str = ",", encoding: str = "utf-8", bom: bool = False) -> None:
    text = pd.DataFrame(rows).to_csv(index=False, sep=sep, lineterminator="\r\n")
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + text.encode(encoding))


REPORT = "Befund:\nKein Pleuraerguss. Rundherd rechts (Serie 2, Bild 30).\nBeurteilung:\nRundherd."


@pytest.mark.parametrize("sep, encoding, bom, suffix", [(",", "utf-8", True, ".csv"), (";", "utf-8", False, ".csv"),
                                                         ("\t", "utf-8", False, ".tsv"), (";", "cp1252", False, ".csv")])
def test_exports_with_bom_delimiters_quoted_newlines_and_encodings(tmp_path, sep, encoding, bom, suffix):
    path = tmp_path / f"reports{suffix}"
    rows = [{"AccessionNumber": "A1", "ReportText": REPORT + " Größe; stabil,\n\"zitiert\"", "PatientID": "P1",
             "ReportDate": "20200101", "StudyInstanceUID": "1.2.3"}] * 1 + [
            {"AccessionNumber": "A2", "ReportText": "Befund: Kein Erguss; Herz normal groß.", "PatientID": "P2",
             "ReportDate": "20200102", "StudyInstanceUID": "1.2.4"}] * 30
    _write(path, rows, sep, encoding, bom)
    table, facts = read_report_table(path, CFG["report_columns"])
    assert len(table) == 31 and table[0]["accession"] == "A1"
    assert table[0]["text"] == rows[0]["ReportText"] and table[1]["text"].endswith("groß.")
    assert "Größe; stabil" in table[0]["text"] and facts["delimiter"] == sep


def test_excel_export(tmp_path):
    path = tmp_path / "reports.xlsx"
    pd.DataFrame([{"AccessionNumber": "A1", "ReportText": REPORT, "PatientID": "P1", "ReportDate": "1",
                   "StudyInstanceUID": "1.2.3"}]).to_excel(path, index=False)
    table, _ = read_report_table(path, CFG["report_columns"])
    assert table[0]["text"] == REPORT


def test_wrong_column_name_is_one_line_naming_file_key_and_columns(tmp_path):
    path = tmp_path / "reports.csv"
    _write(path, [{"Accession": "A1", "ReportText": REPORT, "PatientID": "P", "ReportDate": "1",
                   "StudyInstanceUID": "1"}])
    with pytest.raises(ReportFileError) as err:
        read_report_table(path, CFG["report_columns"])
    message = str(err.value)
    assert "\n" not in message and "reports.csv" in message and "text.report_columns.accession" in message
    assert "'Accession'" in message


def test_duplicate_and_blank_accessions_are_quarantined_or_joined_by_fallback(tmp_path):
    volumes = _volumes([("A1", "1.1", "P1"), ("SHARED", "2.1", "P2"), ("SHARED", "2.2", "P3"), ("A4", "4.1", "P4"),
                        ("A5", "5.1", "P5"), ("A6", "6.1", "P6"), ("A6b", "6.2", "P6")])
    rows = [
        {"AccessionNumber": "A1", "StudyInstanceUID": "", "PatientID": "P1"},       # unique accession
        {"AccessionNumber": "SHARED", "StudyInstanceUID": "2.1", "PatientID": "P2"},  # two studies: by study UID
        {"AccessionNumber": "SHARED", "StudyInstanceUID": "", "PatientID": "P3"},   # repeated: by patient
        {"AccessionNumber": "", "StudyInstanceUID": "", "PatientID": "P4"},         # blank: by patient
        {"AccessionNumber": "", "StudyInstanceUID": "", "PatientID": ""},           # blank, nothing to fall back on
        {"AccessionNumber": "", "StudyInstanceUID": "", "PatientID": "P6"},         # patient has two studies
        {"AccessionNumber": "A5", "StudyInstanceUID": "", "PatientID": "P5"},       # two reports, one study
        {"AccessionNumber": "", "StudyInstanceUID": "5.1", "PatientID": "P5"},
    ]
    path = tmp_path / "reports.csv"
    _write(path, [{**r, "ReportText": REPORT, "ReportDate": ""} for r in rows])
    reports, qc = hospital_reports(path, volumes, SALT, CFG)
    assert len(qc) == len(rows)  # every report once, used or rejected
    assert sorted(reports.volume_id) == ["V000", "V001", "V002", "V003"]
    rejected = [q["reason"] for q in qc if q["status"] == "rejected"]
    assert rejected[0].startswith("blank accession number") and "no single study by patient_date" in rejected[1]
    assert rejected[2:] == ["2 reports join one study", "2 reports join one study"]
    assert "joined_by_study_uid" in reports.set_index("volume_id").loc["V001", "flags"]


def test_report_without_headings_is_kept_and_flagged():
    sections, flags = sections_and_flags("Kein Erguss. Rundherd rechts.")
    assert sections["findings"] == "Kein Erguss. Rundherd rechts." and flags == ["no_headings"]


@pytest.mark.parametrize("text, findings, impression", [
    ("Befund und Beurteilung: Kein Erguss, Rundherd.", "Kein Erguss, Rundherd.", ""),
    ("BEFUND\nKein Erguss.\nBEURTEILUNG\n1. Emphysem.\n2. Rundherd.", "Kein Erguss.", "1. Emphysem.\n2. Rundherd."),
    ("Name: X\nFINDINGS: The heart is enlarged.\nIMPRESSION: Cardiomegaly.", "The heart is enlarged.", "Cardiomegaly."),
    ("Indication: cough\nComparison: none\nFindings - nodule.\nConclusion - nodule", "nodule.", "nodule"),
])
def test_heading_variants(text, findings, impression):
    sections, flags = sections_and_flags(text)
    assert (sections["findings"], sections["impression"], flags) == (findings, impression, [])


def test_scrubbing_is_case_and_diacritics_insensitive_with_typed_placeholders():
    known = identifiers_of("Müller^Hans-Jürgen", "PID123456", "ACC998877", "19500201")
    text = ("Herr MUELLER (Hans-Jürgen Muller, geb. 1.2.1950, PID123456), Auftrag ACC998877. Hans wurde am "
            "12.03.2019 informiert, Tel. 0761 270-12345, dr.x@klinik.de. Rundherd (Serie 3, Bild 45), 187/312.")
    out, counts = scrub(text, known)
    for leaked in ("Müller", "MUELLER", "Muller", "Hans", "Jürgen", "1.2.1950", "PID123456", "ACC998877",
                   "12.03.2019", "270-12345", "klinik.de"):
        assert leaked.lower() not in out.lower(), leaked
    assert {"NAME", "BIRTHDATE", "ID", "ACCESSION", "DATE", "PHONE", "EMAIL"} <= set(counts)
    assert "(Serie 3, Bild 45), 187/312" in out  # references survive


def test_planted_name_in_the_body_never_reaches_the_reports_table(tmp_path):
    volumes = _volumes([("A1", "1.1", "P1")])
    path = tmp_path / "reports.csv"
    body = "Befund:\nFrau Roswitha Quenzhagen (geb. 03.04.1951) klagt. Kein Erguss.\nBeurteilung:\nQuenzhagen unauffällig."
    _write(path, [{"AccessionNumber": "A1", "ReportText": body, "PatientID": "P1", "ReportDate": "",
                   "StudyInstanceUID": "", "PatientName": "Quenzhagen^Roswitha", "PatientBirthDate": "19510403"}])
    cfg = {**CFG, "report_columns": {**CFG["report_columns"], "patient_name": "PatientName",
                                     "birth_date": "PatientBirthDate"}}
    reports, _ = hospital_reports(path, volumes, SALT, cfg)
    text = " ".join(reports.text) + " ".join(reports.findings) + " ".join(reports.impression)
    assert "Quenzhagen" not in text and "Roswitha" not in text and "1951" not in text
    assert "[NAME]" in text and "[BIRTHDATE]" in text


def _study(study: str, accession: str, frame: str, z0: float) -> list[dict]:
    """Index rows of one axial series 2 with 10 instances, 5 mm apart, z descending from z0 (LPS)."""
    return [{"reason": "", "study_key": study, "accession_key": accession, "SeriesNumber": 2.0,
             "InstanceNumber": float(i), "frame_key": frame, "ipp0": -100.0, "ipp1": -100.0, "ipp2": z0 - 5 * (i - 1),
             "iop0": 1.0, "iop1": 0.0, "iop2": 0.0, "iop3": 0.0, "iop4": 1.0, "iop5": 0.0, "Rows": 64.0,
             "Columns": 64.0, "pixel_spacing_row": 3.125, "pixel_spacing_col": 3.125, "SliceThickness": 5.0}
            for i in range(1, 11)]


def test_mining_two_studies_sharing_an_accession_and_prior_references():
    from ctvlp.text.pipeline import mine_snippets
    shared = P("hospital", "accession", "SAME")
    index = pd.DataFrame(_study("S1", shared, "F1", 0.0) + _study("S2", shared, "F2", 100.0))
    series = pd.DataFrame([{"study_key": s, "accession_key": shared, "series_number": 2, "status": "ok"}
                           for s in ("S1", "S2")])
    affine = lambda z_top: [1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 5, z_top - 45, 0, 0, 0, 1]  # noqa: E731 (k=0 at the bottom)
    volumes = pd.DataFrame([{"volume_id": v, "scan_id": "C" + s[1:], "dataset": "hospital", "status": "ok",
                             "accession_key": shared, "frame_key": f, "affine": affine(z), "shape": [64, 64, 10]}
                            for v, s, f, z in (("V1", "S1", "F1", 0.0), ("V2", "S2", "F2", 100.0))])
    text = "Rundherd rechts (Serie 2, Bild 3), in der Voruntersuchung Serie 2, Bild 5."
    reports = pd.DataFrame([{"volume_id": v, "dataset": "hospital", "split": "train", "accession_key": shared,
                             "language": "de", "findings": text, "impression": "", "text": text, "flags": ""}
                            for v in ("V1", "V2")])
    snippets, qc = mine_snippets(reports, index, series, volumes, bin_voxels=2)
    assert list(qc.reason_code) == ["ok", "prior_study", "ok", "prior_study"]  # every reference once, with its fate
    by = snippets.set_index("volume_id")
    assert by.loc["V1", "z_mm"] == -10.0 and by.loc["V2", "z_mm"] == 90.0  # each study's own instance 3
    assert (snippets.snippet == "Rundherd rechts").all()


def test_min_confidence_keeps_guesses_out_of_the_targets_and_in_the_qc():
    from ctvlp.text.pipeline import mine_snippets
    acc = P("hospital", "accession", "ONE")
    index = pd.DataFrame(_study("S1", acc, "F1", 0.0))
    series = pd.DataFrame([{"study_key": "S1", "accession_key": acc, "series_number": 2, "status": "ok"}])
    affine = [1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 5, -45, 0, 0, 0, 1]
    volumes = pd.DataFrame([{"volume_id": "V1", "scan_id": "C1", "dataset": "hospital", "status": "ok",
                             "accession_key": acc, "frame_key": "F1", "affine": affine, "shape": [64, 64, 10]}])
    text = "Rundherd rechts (Serie 2, Bild 3). Erguss links (Bild 5). Verdichtung basal, 7/30."
    reports = pd.DataFrame([{"volume_id": "V1", "dataset": "hospital", "split": "train", "accession_key": acc,
                             "language": "de", "findings": text, "impression": "", "text": text, "flags": ""}])
    kept = {}
    for level in ("high", "medium", "low"):
        snippets, qc = mine_snippets(reports, index, series, volumes, bin_voxels=2, min_confidence=level)
        kept[level] = list(snippets.image)
        assert list(qc.confidence) == ["high", "medium", "low"]  # every reference in the QC, with its confidence
        below = qc[qc.reason_code == "below_min_confidence"]
        assert all(level in reason for reason in below.reason)
        assert "confidence" in snippets.columns
    assert kept == {"high": [3], "medium": [3, 5], "low": [3, 5, 7]}  # "7/30": a viewer overlay, a guess
    snippets, _ = mine_snippets(reports, index, series, volumes, bin_voxels=2)  # the schema's default
    assert list(snippets.image) == [3, 5]


def test_column_check_reads_only_the_header(tmp_path):
    from ctvlp.text.report_io import check_report_columns
    path = tmp_path / "reports.csv"
    _write(path, [{"AccessionNumber": "A1", "ReportText": REPORT, "PatientID": "P", "ReportDate": "1",
                   "StudyInstanceUID": "1"}], sep=";", bom=True)
    check_report_columns(path, CFG["report_columns"])
    with pytest.raises(ReportFileError, match="text.report_columns.text"):
        check_report_columns(path, {**CFG["report_columns"], "text": "Befundtext"})
