"""A corpus of bad inputs added to a generated demo cohort (config ``demo.faults``), written by code.

Each fault is made from the cohort's own good files (a DICOM series copied and broken one way, a volume,
a table or a report edited), so it looks like what real exports contain. ``ground_truth/faults.csv``
lists every fault with the QC table and the reason the workflow must give; the reliability tests run
the workflow on the cohort plus this corpus and check that every item is quarantined with its reason
while the rest goes on.

Hostile input (issue 27) is part of it: math and markup characters in the report text that reaches snippets,
figures and the CLI (``table`` snippets: the text must come through whole and every figure be drawn), header
values with ``|``, ``<`` and newlines (``table`` summary: the QC row keeps the value, ``results/qc/summary.md``
escapes it), a slice cut to half its bytes and a file cut to 100 bytes. Faults of a whole run, which cannot
share the cohort with the others (a reports file that joins no study, a salt changed between ingestion and
the text stage), are written under ``ground_truth/hostile/`` with ``table`` run: tests/test_hostile_inputs.py
runs the workflow on each and expects the line in ``reason`` before or instead of the stage's output.
"""

from __future__ import annotations

import copy
import re
import shutil
import warnings
import zlib
from collections.abc import Callable
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pydicom
from pydicom.encaps import encapsulate
from pydicom.uid import MPEG2MPML, JPEGBaseline8Bit, generate_uid

Edit = Callable[[list[pydicom.Dataset]], list[pydicom.Dataset]]


def _set(name: str, value) -> Edit:
    def edit(slices):
        for ds in slices:
            setattr(ds, name, value)
        return slices
    return edit


def _drop_pixels(slices):
    for ds in slices:
        del ds.PixelData
    return slices


def _gap(slices):
    return slices[: len(slices) // 2] + slices[len(slices) // 2 + 2:]


def _duplicate_position(slices):
    slices[len(slices) // 2].ImagePositionPatient = list(slices[len(slices) // 2 - 1].ImagePositionPatient)
    return slices


def _uneven_spacing(slices):
    z0, step = float(slices[0].ImagePositionPatient[2]), _step(slices)
    for i, ds in enumerate(slices):  # steps alternate between 1.0 and 1.3 times the nominal one
        ds.ImagePositionPatient = [*map(float, ds.ImagePositionPatient[:2]), z0 + step * (i + 0.3 * (i // 2))]
    return slices


def _step(slices) -> float:
    return (float(slices[-1].ImagePositionPatient[2]) - float(slices[0].ImagePositionPatient[2])) / (len(slices) - 1)


def _undecodable(slices):
    for ds in slices:
        ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
        ds.PixelData = encapsulate([b"\xff\xd8 not really a JPEG \xff\xd9"])
        ds["PixelData"].VR = "OB"
    return slices


def _no_decoder(slices):
    """A transfer syntax pydicom knows but no installed plugin decodes (MPEG-2 video)."""
    for ds in slices:
        ds.file_meta.TransferSyntaxUID = MPEG2MPML
        ds.PixelData = encapsulate([b"\x00\x00\x01\xb3 mpeg-2 sequence header"])
        ds["PixelData"].VR = "OB"
    return slices


DICOM_FAULTS: dict[str, tuple[Edit, str]] = {
    "missing pixel data": (_drop_pixels, "without pixel data"),
    "wrong modality": (_set("Modality", "MR"), "modality MR, expected CT"),
    "scout": (_set("ImageType", ["ORIGINAL", "PRIMARY", "LOCALIZER"]), "localizer/scout"),
    "non-axial": (_set("ImageOrientationPatient", [0.0, 1.0, 0.0, 0.0, 0.0, -1.0]), "not axial"),
    "gap": (_gap, "missing slices"),
    "duplicate slice positions": (_duplicate_position, "duplicate slice positions"),
    "inconsistent spacing": (_uneven_spacing, "inconsistent slice spacing"),
    "gantry tilt": (_set("GantryDetectorTilt", 15.0), "gantry tilt"),
    "multi-frame without functional groups": (_set("NumberOfFrames", 2), "multi-frame object without per-frame"),
    "undecodable compression": (_undecodable, "cannot decode pixel data"),
    "no installed decoder": (_no_decoder, "no installed decoder for transfer syntax"),
}


def _series_dirs(root: Path) -> list[Path]:
    """Classic series folders (one file per slice): the faults edit slices; enhanced CT files are skipped."""
    folders = sorted({p.parent for p in (root / "hospital" / "DICOM").glob("PA*/ST*/SE*/IM*")})
    return [d for d in folders if "NumberOfFrames" not in pydicom.dcmread(next(d.iterdir()), stop_before_pixels=True)]


def _read(folder: Path) -> list[pydicom.Dataset]:
    slices = [pydicom.dcmread(p) for p in sorted(folder.iterdir())]
    return sorted(slices, key=lambda ds: float(ds.ImagePositionPatient[2]))


def _is_axial_ct(slices: list[pydicom.Dataset]) -> bool:
    return "LOCALIZER" not in list(slices[0].ImageType) and len(slices) >= 20


def _write_series(slices: list[pydicom.Dataset], out: Path, kind: str, new_study: bool,
                  study_kind: str | None = None) -> None:
    """Write the slices as a new series (UIDs from ``kind``); ``new_study``: in a new study of its own (UID and
    accession number from ``study_kind``, default ``kind``: two series of one study share it)."""
    out.mkdir(parents=True, exist_ok=True)
    study_kind = study_kind or kind
    series_uid = generate_uid(entropy_srcs=["ctvlp-fault", kind, "series"])
    study_uid = generate_uid(entropy_srcs=["ctvlp-fault", study_kind, "study"])
    for i, ds in enumerate(slices):
        ds.SeriesInstanceUID = series_uid
        ds.SOPInstanceUID = generate_uid(entropy_srcs=["ctvlp-fault", kind, str(i)])
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        if new_study:
            ds.StudyInstanceUID = study_uid
            ds.AccessionNumber = f"FLT{zlib.crc32(study_kind.encode()) % 10**8:08d}"
        with warnings.catch_warnings():  # hostile header values are invalid for their VR on purpose
            warnings.simplefilter("ignore")
            ds.save_as(out / f"IM{i:04d}", enforce_file_format=True)


def _dicom_faults(root: Path) -> list[dict]:
    good = next(d for d in _series_dirs(root) if _is_axial_ct(_read(d)))
    base = root / "hospital" / "DICOM" / "FAULTS"
    rows = []
    for n, (kind, (edit, reason)) in enumerate(DICOM_FAULTS.items()):
        slices = edit([copy.deepcopy(ds) for ds in _read(good)])
        _write_series(slices, base / f"F{n:02d}", kind, new_study=True)
        rows.append({"kind": kind, "dataset": "hospital", "table": "qc", "reason": reason})
    (base / "F90").mkdir(parents=True, exist_ok=True)
    data = next(good.iterdir()).read_bytes()
    (base / "F90" / "IM0000").write_bytes(data[:300])
    (base / "F91").mkdir(parents=True, exist_ok=True)
    (base / "F91" / "notes.txt").write_text("export notes: 3 series, checked by technician\n")
    rows += [{"kind": "truncated file", "dataset": "hospital", "table": "qc", "reason": "truncated file"},
             {"kind": "not DICOM", "dataset": "hospital", "table": "qc", "reason": "not a DICOM file"}]
    return rows + _hostile_dicom(good, base, data)


# A header value no QC table may pass through as markup: a cell separator, an HTML tag, a line break.
HOSTILE_MODALITY = "M|R<i>\nX"


def _hostile_dicom(good: Path, base: Path, data: bytes) -> list[dict]:
    """A 100-byte file, a study whose preferred series has one slice cut to half (it falls back to the
    study's other series), and a series whose Modality holds ``|``, ``<`` and a newline."""
    (base / "F92").mkdir(parents=True, exist_ok=True)
    (base / "F92" / "IM0000").write_bytes(data[:100])
    # two copies of one series in a new study: the B30f copy ranks first (ingest.prefer_kernels) and has a
    # slice cut to half its bytes; the FC01 copy is whole, so the study's volume comes from the fallback
    study = "half-truncated slice"
    for folder, kernel, kind in (("F93", "B30f", study), ("F94", "FC01", study + " (fallback)")):
        slices = [copy.deepcopy(ds) for ds in _read(good)]
        for ds in slices:
            ds.ConvolutionKernel = kernel
        _write_series(slices, base / folder, kind, new_study=True, study_kind=study)
    cut = sorted((base / "F93").iterdir())[len(slices) // 2]
    cut.write_bytes(cut.read_bytes()[: cut.stat().st_size // 2])
    with warnings.catch_warnings():  # not a valid CS value, on purpose
        warnings.simplefilter("ignore")
        slices = _set("Modality", HOSTILE_MODALITY)([copy.deepcopy(ds) for ds in _read(good)])
    _write_series(slices, base / "F95", "header values with markup", new_study=True)
    return [
        {"kind": "DICOM cut to 100 bytes", "dataset": "hospital", "table": "qc", "reason": "truncated file (100 bytes"},
        {"kind": "half-truncated slice", "dataset": "hospital", "table": "qc",  # " … ": every part, in order
         "reason": f"cannot decode pixel data … bytes of pixel data is less than expected … in file {cut.name}"},
        {"kind": "half-truncated slice: the study falls back", "dataset": "hospital", "table": "qc",
         "reason": f"fallback after … in file {cut.name}"},
        {"kind": "header values with |, < and newlines", "dataset": "hospital", "table": "qc",
         "reason": f"modality {HOSTILE_MODALITY}, expected CT"},
        {"kind": "header values escaped in the QC summary", "dataset": "hospital", "table": "summary",
         "reason": "| modality M\\|R&lt;i&gt; X, expected CT |"},
    ]


# Report text that matplotlib would read as math (``$...$``, a lone ``$``) and markup (HTML, Markdown, TeX, a
# table's cell separator): put before the first cited finding of every report (so it reaches the snippets, the
# qualitative figure and the CLI's sentence) and before the impression (the reports' other text column).
HOSTILE_TEXT = "$x^$ <b>a|b</b> *c* _d_ \\frac{ $ "
_REFERENCE = re.compile(r"\b(?:Se|Serie|Series|series|Bi|Bild|Image|image|Ima)\b\.?\s*\d")
_HEADING = re.compile(r"^(Befund|Findings|Beurteilung|Impression)\s*:\s*$", re.M)


def _hostile_report(text: str) -> str:
    """``HOSTILE_TEXT`` at the start of the sentence of the first reference after the findings heading, and at
    the start of the impression."""
    out, last = [], 0
    for heading in _HEADING.finditer(text):
        body = heading.end() + 1
        if heading.group(1) in ("Befund", "Findings"):
            ref = _REFERENCE.search(text, body)
            if ref is None:
                continue
            start = max(text.rfind(". ", body, ref.start()) + 2, body)
        else:
            start = body
        out += [text[last:start], HOSTILE_TEXT]
        last = start
    return "".join(out) + text[last:]


def _report_faults(root: Path) -> list[dict]:
    """Bad references in one report, a series of another frame of reference, an empty and a cp1252 report."""
    reports_csv = root / "hospital" / "reports" / "reports.csv"
    table = pd.read_csv(reports_csv, dtype=str, keep_default_na=False)
    by_accession = {}
    for d in _series_dirs(root):
        first = pydicom.dcmread(next(d.iterdir()), stop_before_pixels=True)
        by_accession.setdefault(str(first.AccessionNumber), []).append((d, first))
    accession, series = next((a, s) for a, s in sorted(by_accession.items())
                             if a in set(table.AccessionNumber) and len(s) >= 2)
    lung = max(series, key=lambda item: (float(item[1].SliceThickness) < 3, str(item[0])))[0]
    other_frame = [copy.deepcopy(ds) for ds in _read(lung)]
    frame_uid = generate_uid(entropy_srcs=["ctvlp-fault", "frame"])
    for ds in other_frame:
        ds.FrameOfReferenceUID = frame_uid
        ds.SeriesNumber = 77
        ds.ConvolutionKernel = "B90s"
        ds.SliceThickness = 2.0
    _write_series(other_frame, lung.parent / "SE0077", "other frame", new_study=False)
    numbers = sorted(int(s.SeriesNumber) for _, s in series)
    extra = (f" Weiterer Rundherd, Serie 99 Bild 5. Zweiter Herd, Serie {numbers[0]} Bild 999."
             f" Dritter Herd, Serie 77 Bild 10.")
    row = table.index[table.AccessionNumber == accession][0]
    text = table.at[row, "ReportText"]
    cut = text.find("Beurteilung") if "Beurteilung" in text else text.find("Impression")
    table.at[row, "ReportText"] = text[:cut].rstrip() + extra + "\n\n" + text[cut:] if cut > 0 else text + extra
    table["ReportText"] = table["ReportText"].map(_hostile_report)
    empty = {c: "" for c in table.columns} | {"AccessionNumber": "FLTEMPTY01", "ReportText": "  "}
    table = pd.concat([table, pd.DataFrame([empty])], ignore_index=True)
    german = next(i for i, t in enumerate(table.ReportText) if "ö" in t or "ä" in t or "ü" in t)
    body = table.to_csv(index=False, lineterminator="\n")
    encoded = body.encode("utf-8")
    target = table.at[german, "ReportText"]
    encoded = encoded.replace(target.encode("utf-8"), target.encode("cp1252", errors="replace"), 1)
    reports_csv.write_bytes(encoded)
    return [
        {"kind": "reference to an unknown series", "dataset": "hospital", "table": "mining_qc",
         "reason": "series not found in the study"},
        {"kind": "reference to an image out of range", "dataset": "hospital", "table": "mining_qc",
         "reason": "image number outside the series"},
        {"kind": "reference to another frame of reference", "dataset": "hospital", "table": "mining_qc",
         "reason": "different frame of reference"},
        {"kind": "empty report", "dataset": "hospital", "table": "text_qc", "reason": "empty report"},
        {"kind": "math and markup characters in report text", "dataset": "hospital", "table": "snippets",
         "reason": "$x^$ … *c* _d_ \\frac{ $"},  # scrubbing drops the HTML tags; the rest reaches the snippets
        {"kind": "non-UTF-8 report", "dataset": "hospital", "table": "text_qc", "reason": "flag:non_utf8"},
    ]


def _ctrate_faults(root: Path) -> list[dict]:
    ds = root / "ct_rate" / "dataset"
    template = next((ds / "train_fixed").rglob("*.nii.gz"))
    img = nib.load(template)
    data = np.asarray(img.dataobj, dtype=np.float32)
    rows = []
    for pid, kind, values, affine, reason in (
            (90001, "NaN volume", np.where(np.arange(data.size).reshape(data.shape) % 97 == 0, np.nan, data),
             img.affine, "NaN"),
            (90002, "constant volume", np.full(data.shape, -1000.0, np.float32), img.affine, "constant volume"),
            (90003, "v1 file in a v2 release (mixed releases)", data.astype(np.int16), np.eye(4), "mixed releases")):
        folder = ds / "train_fixed" / f"train_{pid}" / f"train_{pid}_a"
        folder.mkdir(parents=True, exist_ok=True)
        nib.save(nib.Nifti1Image(values.astype(np.float32) if kind != "v1 file in a v2 release (mixed releases)"
                                 else values, affine), folder / f"train_{pid}_a_1.nii.gz")
        rows.append({"kind": kind, "dataset": "ct_rate", "table": "qc", "reason": reason})
    labels = ds / "multi_abnormality_labels" / "train_predicted_labels.csv"
    pd.read_csv(labels).drop(columns=["Bronchiectasis"]).to_csv(labels, index=False)
    rows.append({"kind": "label CSV with a missing column", "dataset": "ct_rate", "table": "text_qc",
                 "reason": "lacks column(s) Bronchiectasis"})
    return rows


def _radchest_faults(root: Path) -> list[dict]:
    rc = root / "rad_chestct"
    summary = pd.read_csv(rc / "Summary_3630.csv")
    template = summary.iloc[0].to_dict()
    np.savez_compressed(rc / "trn19999.npz", img=np.zeros((4, 4, 4), np.int16))
    extra = [template | {"NoteAcc_DEID": "trn19999", "MRN_DEID": "fault-mrn-1"},
             template | {"NoteAcc_DEID": "trn19998", "MRN_DEID": "fault-mrn-2"}]
    pd.concat([summary, pd.DataFrame(extra)], ignore_index=True).to_csv(rc / "Summary_3630.csv", index=False)
    return [{"kind": "npz without the 'ct' array", "dataset": "rad_chestct", "table": "qc", "reason": "no key 'ct'"},
            {"kind": "npz file missing", "dataset": "rad_chestct", "table": "qc", "reason": "npz file missing"}]


def _run_faults(root: Path) -> list[dict]:
    """Faults of a whole run, written beside the cohort (``ground_truth/hostile/``): two reports exports that
    join no study (every accession number unknown; only the header) and a salt other than the cohort's."""
    out = root / "ground_truth" / "hostile"
    out.mkdir(parents=True, exist_ok=True)
    # latin-1 maps every byte to one character and back: the export's bytes (its cp1252 report too) stay as they are
    table = pd.read_csv(root / "hospital" / "reports" / "reports.csv", dtype=str, keep_default_na=False,
                        encoding="latin-1")
    for column in ("AccessionNumber", "PatientID"):  # known to no study of the export (nor by the fallbacks)
        table[column] = "X" + table[column]
    table.to_csv(out / "reports_joining_nothing.csv", index=False, lineterminator="\n", encoding="latin-1")
    (out / "reports_header_only.csv").write_text(",".join(table.columns) + "\n")
    return [
        {"kind": "reports file that joins no study", "dataset": "hospital", "table": "run",
         "input": "ground_truth/hostile/reports_joining_nothing.csv",
         "reason": f"hospital: 0 of {len(table)} reports in reports_joining_nothing.csv joined a study of the index"},
        {"kind": "reports file with only its header", "dataset": "hospital", "table": "run",
         "input": "ground_truth/hostile/reports_header_only.csv",
         "reason": "hospital: 0 of 0 reports in reports_header_only.csv joined a study of the index (the file holds"
                   " no report, only its header)"},
        {"kind": "salt changed between ingestion and the text stage", "dataset": "hospital", "table": "run",
         "input": "privacy.salt", "reason": "the salt changed since ingestion"},
    ]


def add_fault_corpus(root: str | Path) -> pd.DataFrame:
    """Write every fault into the cohort under ``root``; the table of faults is also saved as ground truth."""
    root = Path(root)
    shutil.rmtree(root / "hospital" / "DICOM" / "FAULTS", ignore_errors=True)
    rows = (_dicom_faults(root) + _report_faults(root) + _ctrate_faults(root) + _radchest_faults(root)
            + _run_faults(root))
    table = pd.DataFrame(rows)
    table.to_csv(root / "ground_truth" / "faults.csv", index=False)
    return table
