"""Read a hospital report export (CSV, TSV or Excel) into rows with the configured column names.

Real RIS exports differ from site to site: a UTF-8 byte-order mark (Excel's "CSV UTF-8"), ";" as delimiter
(German Excel), tabs, report texts with quoted line breaks, cp1252 or latin-1 files, a single cell pasted
from another system in another encoding. The delimiter is sniffed (``csv.Sniffer``, restricted to , ; tab |),
the encoding is UTF-8 (BOM honoured) unless the file as a whole is not, in which case charset-normalizer picks
it; a lone non-UTF-8 cell is kept as surrogate escapes for ``decode_report`` to repair and flag. A configured
column the file lacks is a ``ReportFileError``: one line naming the file, the configuration key and the columns
found, raised before any report is read (a configuration error, not a bad report).
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import charset_normalizer
import openpyxl  # noqa: F401  (the engine of pandas.read_excel, imported so the data environment carries it)
import pandas as pd

KEYS = ("accession", "text", "patient_id", "study_date", "study_uid", "patient_name", "birth_date")
REQUIRED = ("accession", "text")
DEFAULT_COLUMNS = {"accession": "AccessionNumber", "text": "ReportText", "patient_id": "PatientID",
                   "study_date": "ReportDate", "study_uid": None, "patient_name": None, "birth_date": None}
WESTERN = {"cp1250", "cp1252", "latin_1", "iso8859_1", "iso8859_15", "iso8859_2", "windows-1252"}
BOMS = ((b"\xef\xbb\xbf", "utf-8"), (b"\xff\xfe", "utf-16-le"), (b"\xfe\xff", "utf-16-be"))


class ReportFileError(ValueError):
    """The report export cannot be read as configured (missing column, unreadable file)."""


def _decode(raw: bytes) -> tuple[str, str]:
    """(text, encoding used); 'utf-8+escapes' when a few cells are not UTF-8."""
    for bom, encoding in BOMS:
        if raw.startswith(bom):
            return raw[len(bom):].decode(encoding, errors="surrogateescape" if encoding == "utf-8" else "replace"), encoding
    try:
        return raw.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        pass
    lines = raw.splitlines()
    bad = sum(1 for line in lines if _not_utf8(line))
    if bad <= max(1, len(lines) // 20):  # a few pasted cells: repaired per report, flagged there
        return raw.decode("utf-8", errors="surrogateescape"), "utf-8+escapes"
    best = charset_normalizer.from_bytes(raw).best()
    encoding = best.encoding if best is not None else "cp1252"
    if encoding in WESTERN:  # cp1250/latin-1/... agree on German letters: name the usual Windows export
        try:
            return raw.decode("cp1252"), "cp1252"
        except UnicodeDecodeError:
            pass
    return raw.decode(encoding, errors="replace"), encoding


def _not_utf8(line: bytes) -> bool:
    try:
        line.decode("utf-8")
        return False
    except UnicodeDecodeError:
        return True


def _sniff(text: str, suffix: str) -> str:
    if suffix in (".tsv", ".tab"):
        return "\t"
    sample = text[:65536]
    try:
        return csv.Sniffer().sniff(sample, delimiters=",;\t|").delimiter
    except csv.Error:
        header = sample.split("\n", 1)[0]
        return max(",;\t|", key=header.count)


def _resolve_columns(found: list[str], columns: dict, path: Path) -> dict[str, str]:
    """Configured key -> the file's column (case and surrounding spaces ignored); a configured column the file
    lacks is a one-line error naming the file, the key and the columns found."""
    by_norm = {c.strip().lstrip("\ufeff").lower(): c for c in found}
    out = {}
    for key in KEYS:
        want = columns.get(key)
        if not want:
            if key in REQUIRED:
                raise ReportFileError(f"{path}: text.report_columns.{key} is not set")
            continue
        hit = by_norm.get(str(want).strip().lower())
        if hit is None:
            raise ReportFileError(f"{path}: no column '{want}' for text.report_columns.{key}; "
                                  f"columns found: {', '.join(repr(c) for c in found)}")
        out[key] = hit
    return out


def _export(path: str | Path, columns: dict | None) -> tuple[Path, dict]:
    """The export's path (it must exist) and the configured columns over the defaults."""
    path = Path(path)
    if not path.is_file():
        raise ReportFileError(f"{path}: report export not found")
    return path, {**DEFAULT_COLUMNS, **(columns or {})}


def read_report_table(path: str | Path, columns: dict | None = None) -> tuple[list[dict], dict]:
    """Rows as {key: cell text} for the configured keys, and file facts (encoding, delimiter, columns)."""
    path, columns = _export(path, columns)
    if path.suffix.lower() in (".xlsx", ".xlsm", ".xls"):
        try:
            frame = pd.read_excel(path, dtype=str, keep_default_na=False)
        except Exception as exc:  # a corrupt workbook raises zipfile, xml or openpyxl errors
            raise ReportFileError(f"{path}: unreadable Excel file ({type(exc).__name__}: {exc})") from exc
        found = [str(c) for c in frame.columns]
        table = [{str(k): ("" if v is None else str(v)) for k, v in r.items()} for r in frame.to_dict("records")]
        facts = {"encoding": "xlsx", "delimiter": ""}
    else:
        text, encoding = _decode(path.read_bytes())
        delimiter = _sniff(text, path.suffix.lower())
        reader = csv.DictReader(io.StringIO(text, newline=""), delimiter=delimiter)
        table = list(reader)
        found = list(reader.fieldnames or [])
        facts = {"encoding": encoding, "delimiter": delimiter}
    mapping = _resolve_columns(found, columns, path)
    rows = [{key: (r.get(col) or "") for key, col in mapping.items()} for r in table]
    return rows, {**facts, "columns": found, "mapped": mapping}


def check_report_columns(path: str | Path, columns: dict | None = None) -> None:
    """The configured columns against the export's header only, cheap enough for the configuration check that
    runs before any job starts; raises ``ReportFileError`` (one line) like ``read_report_table``."""
    path, columns = _export(path, columns)
    if path.suffix.lower() in (".xlsx", ".xlsm", ".xls"):
        try:
            found = [str(c) for c in pd.read_excel(path, nrows=0).columns]
        except Exception as exc:  # a corrupt workbook raises zipfile, xml or openpyxl errors
            raise ReportFileError(f"{path}: unreadable Excel file ({type(exc).__name__}: {exc})") from exc
    else:
        with open(path, "rb") as f:
            head = f.read(65536)
        text, _ = _decode(head)
        found = next(csv.reader(io.StringIO(text, newline=""), delimiter=_sniff(text, path.suffix.lower())), [])
    _resolve_columns(found, columns, path)
