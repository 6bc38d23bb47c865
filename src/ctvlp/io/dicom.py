"""DICOM: a header index of a whole export, geometry checks, and series reading into RAS volumes.

Slices are ordered by their position along the slice normal (from ImagePositionPatient and
ImageOrientationPatient), never by file name or InstanceNumber: exports shuffle file names and
scanners number slices head-to-feet or feet-to-head. Identifiers never leave this module raw:
the index carries salted HMACs of UIDs, ids and accession numbers (``ctvlp.core.ids``).

Enhanced (multi-frame) CT is read frame by frame from its functional groups, so one multi-frame
file and a classic one-file-per-slice series of the same scan give the same ``SeriesVolume``; in
the index a multi-frame file has one row per frame (``frame`` 1..n, ``InstanceNumber`` = frame
number, the number a viewer shows and a report cites). Compressed pixel data is decoded by the
pydicom plugins pinned in the lock (pylibjpeg with libjpeg and openjpeg); a transfer syntax no
installed plugin can decode is rejected from the headers, before any pixel read.
"""

from __future__ import annotations

import os
import re
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pydicom
from pydicom.errors import InvalidDicomError
from pydicom.pixels import get_decoder
from tqdm import tqdm

from ctvlp.core.ids import Pseudonymizer
from ctvlp.io.volume import Volume, lps_affine


class SeriesError(ValueError):
    """A series that cannot become a training volume; the message names the series and the reason."""


@dataclass(frozen=True)
class GeometryRules:
    """Tolerances of the geometry checks (config ``ingest``)."""

    axial_tolerance_deg: float = 10.0
    tilt_tolerance_deg: float = 0.5
    gap_factor: float = 1.5  # a step this many times the median step is a missing slice
    spacing_tolerance: float = 0.1  # relative spread of steps allowed without a gap
    min_slices: int = 2


@dataclass
class SeriesVolume(Volume):
    """A read series: HU volume plus the instance number and z (LPS mm) of each k index."""

    name: str = ""
    instance_numbers: list[int] = field(default_factory=list)
    slice_positions: np.ndarray | None = None


HEADER_FIELDS = ("Modality", "SeriesNumber", "InstanceNumber", "SliceThickness", "ConvolutionKernel",
                 "Rows", "Columns", "NumberOfFrames", "GantryDetectorTilt", "BodyPartExamined")
# Series that are maps or projections computed from an acquisition, not the acquisition itself: matched as
# whole words in ImageType / FrameType values and in SeriesDescription (the description itself is not kept).
SERIES_KINDS = {
    "derived": re.compile(r"\bDERIVED\b", re.I),
    "mip": re.compile(r"\b(MIP|MAXIP|MAX\s*IP|PROJECTION\s*IMAGE)\b", re.I),
    "minip": re.compile(r"\b(MINIP|MIN\s*IP)\b", re.I),
    "iodine": re.compile(r"\b(IODINE|IOD|JOD|VNC|VIRTUAL\s*NON[- ]?CONTRAST)\b", re.I),
    "monoenergetic": re.compile(r"\b(MONO\s*E|MONOE|MONO[- ]?ENERGETIC|KEV|VMI)\b|\d+\s*KEV", re.I),
}


def series_kinds(*texts: str) -> str:
    """Comma-joined kinds (``derived``, ``mip``, ...) that the header texts name; '' for an acquisition."""
    joined = " ".join(t.replace("\\", " ").replace("_", " ") for t in texts if t)
    return ",".join(kind for kind, pattern in SERIES_KINDS.items() if pattern.search(joined))


def decodable(transfer_syntax: str) -> bool:
    """Whether an installed pydicom decoder plugin reads this transfer syntax ('' = implicit VR, native)."""
    if not transfer_syntax:
        return True
    try:
        return bool(get_decoder(transfer_syntax).is_available)
    except (NotImplementedError, ValueError):
        return False


def syntax_label(transfer_syntax: str) -> str:
    name = pydicom.uid.UID(transfer_syntax).name if transfer_syntax else "none"
    return f"{name} ({transfer_syntax})" if name != transfer_syntax else transfer_syntax


def _floats(value, n: int) -> list[float]:
    if value is None:
        return [np.nan] * n
    try:
        values = [float(v) for v in value]
    except (TypeError, ValueError):
        return [np.nan] * n
    return values if len(values) == n else [np.nan] * n


_TOKEN = re.compile(r"[^0-9a-z]+")


def _identity_in_path(ds, rel: str) -> bool:
    """True when a whole path component, or a whole token of one (split at anything not a letter or
    digit), equals the patient's id or a name part of 3+ characters. Whole tokens, not substrings:
    PatientID "100" must not match ``IM0100.dcm``, while ``Mueller_Hans/`` and ``PID0/`` must match."""
    tokens = set()
    for part in Path(rel).parts:
        part = part.lower()
        tokens.add(part)
        tokens |= set(_TOKEN.split(part)) - {""}
    wanted = {str(ds.get("PatientID", "")).strip().lower()}
    name = ds.get("PatientName")
    if name is not None:
        wanted |= {t.strip().lower() for t in (name.family_name, name.given_name) if t}
    return any(len(t) >= 3 and t in tokens for t in wanted if t)


def frame_geometry(ds) -> list[dict]:
    """Per-frame geometry and rescale: the file's own attributes for a classic image, the Shared and
    Per-frame Functional Groups (PlanePosition, PlaneOrientation, PixelMeasures, PixelValueTransformation)
    for an enhanced multi-frame image, per-frame values overriding shared ones."""
    n_frames = int(ds.get("NumberOfFrames", 1) or 1)
    shared_seq = ds.get("SharedFunctionalGroupsSequence")
    per_frame_seq = ds.get("PerFrameFunctionalGroupsSequence")
    if per_frame_seq is None and shared_seq is None:
        return [{"ipp": _floats(ds.get("ImagePositionPatient"), 3),
                 "iop": _floats(ds.get("ImageOrientationPatient"), 6),
                 "ps": _floats(ds.get("PixelSpacing"), 2),
                 "thickness": _float_or_nan(ds.get("SliceThickness")),
                 "slope": float(ds.get("RescaleSlope", 1) or 1),
                 "intercept": float(ds.get("RescaleIntercept", 0) or 0), "frame": 0,
                 "number": ds.get("InstanceNumber")}]
    shared = shared_seq[0] if shared_seq else pydicom.Dataset()
    frames = []
    for i in range(n_frames):
        own = per_frame_seq[i] if per_frame_seq is not None and i < len(per_frame_seq) else pydicom.Dataset()

        def item(seq_name: str):
            for group in (own, shared):
                seq = group.get(seq_name)
                if seq:
                    return seq[0]
            return pydicom.Dataset()

        measures, transform = item("PixelMeasuresSequence"), item("PixelValueTransformationSequence")
        frames.append({"ipp": _floats(item("PlanePositionSequence").get("ImagePositionPatient"), 3),
                       "iop": _floats(item("PlaneOrientationSequence").get("ImageOrientationPatient"), 6),
                       "ps": _floats(measures.get("PixelSpacing"), 2),
                       "thickness": _float_or_nan(measures.get("SliceThickness")),
                       "slope": float(transform.get("RescaleSlope", ds.get("RescaleSlope", 1)) or 1),
                       "intercept": float(transform.get("RescaleIntercept", ds.get("RescaleIntercept", 0)) or 0),
                       "frame": i + 1, "number": i + 1})
    return frames


def _float_or_nan(value) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return np.nan


def _frame_type(ds) -> str:
    """ImageType, or for enhanced images the FrameType of the shared CT Image Frame Type macro."""
    shared = ds.get("SharedFunctionalGroupsSequence")
    texts = ["\\".join(ds.get("ImageType", []))]
    if shared:
        frame_type = shared[0].get("CTImageFrameTypeSequence")
        if frame_type:
            texts.append("\\".join(frame_type[0].get("FrameType", [])))
    return "\\".join(t for t in texts if t)


def read_header(path: str, root: str, salt: bytes) -> list[dict]:
    """Index rows of one file (one per frame of an enhanced image); unreadable or non-image files get
    one row with a reason instead of fields. No raw path is kept: ``path_key`` is a salted HMAC of the
    relative path, and ``path`` (relative to the export root) is blanked when it names the patient."""
    rel = os.path.relpath(path, root)
    pseudo = Pseudonymizer(salt)
    try:
        stat = os.stat(path)
        size, mtime = int(stat.st_size), int(stat.st_mtime_ns)
    except OSError:
        size, mtime = -1, -1
    row: dict = {"path": rel, "path_key": pseudo("hospital", "path", rel), "size": size, "mtime_ns": mtime, "frame": 0,
                 "reason": ""}
    try:
        ds = pydicom.dcmread(path, defer_size="2 KB")  # pixel data stays on disk
    except InvalidDicomError:
        return [{**row, "reason": _not_dicom_reason(path, size)}]
    except Exception as exc:  # truncated headers raise many different errors
        return [{**row, "reason": f"unreadable DICOM header ({_error_text(exc)})"}]
    if len(ds) == 0:  # a preamble and file meta, then nothing: the copy or transfer was cut short
        return [{**row, "reason": "truncated file (no data set after the file meta information)"}]
    if "SOPClassUID" not in ds or "SeriesInstanceUID" not in ds:
        return [{**row, "reason": "not an image object (no SOP class or series UID)"}]
    if _identity_in_path(ds, rel):
        return [{**row, "path": "", "reason": "path contains a patient identifier (rename the export folders)"}]
    frame_type = _frame_type(ds)
    row.update({
        "patient_key": pseudo("hospital", "patient", str(ds.get("PatientID", ""))),
        "study_key": pseudo("hospital", "study", str(ds.get("StudyInstanceUID", ""))),
        "accession_key": pseudo("hospital", "accession", str(ds.get("AccessionNumber", ""))),
        "series_key": pseudo("hospital", "series", str(ds.SeriesInstanceUID)),
        "frame_key": pseudo("hospital", "frame", str(ds.get("FrameOfReferenceUID", ""))),
        "image_type": frame_type,
        "series_kind": series_kinds(frame_type, str(ds.get("SeriesDescription", ""))),
        "transfer_syntax": str(ds.file_meta.get("TransferSyntaxUID", "")),
        "has_pixels": "PixelData" in ds or "FloatPixelData" in ds,
        "patient_age": str(ds.get("PatientAge", "")),
        "patient_sex": str(ds.get("PatientSex", "")),
    })
    for name in HEADER_FIELDS:
        value = ds.get(name)
        row[name] = None if value is None else (str(value) if name in ("Modality", "ConvolutionKernel",
                                                                        "BodyPartExamined") else _float_or_nan(value))
    rows = []
    for geo in frame_geometry(ds):
        out = dict(row)
        out["frame"] = geo["frame"]
        if geo["frame"]:
            out["InstanceNumber"] = float(geo["number"])
            out["SliceThickness"] = geo["thickness"]
        out.update({f"ipp{i}": geo["ipp"][i] for i in range(3)})
        out.update({f"iop{i}": geo["iop"][i] for i in range(6)})
        out.update({"pixel_spacing_row": geo["ps"][0], "pixel_spacing_col": geo["ps"][1]})
        rows.append(out)
    return rows


PREAMBLE = 128  # a DICOM file: 128 bytes of preamble, then b"DICM", then the file meta information


def _not_dicom_reason(path: str, size: int) -> str:
    """A file pydicom does not take for DICOM: 'truncated file' when it ends before the DICM prefix could
    be read and holds nothing else (a copy cut inside the preamble: NUL bytes, perhaps the start of "DICM"), else
    'not a DICOM file' (notes, PDFs, anything with content of its own)."""
    if 0 <= size < PREAMBLE + 4:
        try:
            with open(path, "rb") as f:
                head = f.read(PREAMBLE + 4)
        except OSError:
            head = b"?"
        if head[:PREAMBLE].strip(b"\0") == b"" and b"DICM".startswith(head[PREAMBLE:]):
            return f"truncated file ({size} bytes, shorter than the {PREAMBLE}-byte preamble and DICM prefix)"
    return "not a DICOM file"


def _error_text(exc: Exception, limit: int = 240) -> str:
    """``Type: message`` of a reader's error, on one line and bounded (pydicom's messages name no path)."""
    text = " ".join(str(exc).split())
    text = text if len(text) <= limit else text[: limit - 3] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _read_header_star(args: tuple[str, str, bytes]) -> list[dict]:
    return read_header(*args)


def list_files(root: str | Path) -> list[str]:
    """Every regular file under root, sorted (the index order never depends on the file system)."""
    found = []
    for dirpath, _, files in os.walk(root):
        found += [os.path.join(dirpath, f) for f in files]
    return sorted(found)


def read_headers(files: list[str], root: str | Path, salt: bytes, workers: int = 1, desc: str = "DICOM headers"):
    """Index rows of ``files`` in file order, read in parallel processes; yields one file's rows at a time,
    so a caller can write them out in chunks instead of holding the whole export."""
    args = [(f, str(root), salt) for f in files]
    if workers > 1 and len(files) > 64:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            yield from tqdm(pool.map(_read_header_star, args, chunksize=128), total=len(args), desc=desc)
    else:
        yield from (read_header(*a) for a in tqdm(args, desc=desc))


def index_dicom(root: str | Path, salt: bytes, workers: int = 1) -> pd.DataFrame:
    """Header-only index of a (small) DICOM tree in memory, one row per file (per frame of an enhanced
    image). The workflow writes the same rows in chunks into a partitioned dataset (``index_store``)."""
    rows = [r for file_rows in read_headers(list_files(root), root, salt, workers) for r in file_rows]
    return pd.DataFrame(rows)


def _normal(iop: np.ndarray) -> np.ndarray:
    return np.cross(iop[:3], iop[3:])


def check_geometry(name: str, iops: np.ndarray, ipps: np.ndarray, rules: GeometryRules) -> np.ndarray:
    """Validate slice geometry; return the slice order along the normal or raise SeriesError."""
    if len(ipps) < rules.min_slices:
        raise SeriesError(f"series {name}: too few slices ({len(ipps)} < {rules.min_slices})")
    if not (np.isfinite(iops).all() and np.isfinite(ipps).all()):
        raise SeriesError(f"series {name}: missing ImagePositionPatient/ImageOrientationPatient")
    if np.abs(iops - iops[0]).max() > 1e-3:
        raise SeriesError(f"series {name}: mixed orientations inside the series")
    normal = _normal(iops[0])
    angle = np.degrees(np.arccos(min(1.0, abs(normal[2]) / np.linalg.norm(normal))))
    if angle > rules.axial_tolerance_deg:
        raise SeriesError(f"series {name}: not axial (slice normal {angle:.0f} degrees from z)")
    along = ipps @ normal
    order = np.argsort(along, kind="stable")
    if len(ipps) == 1:
        return order
    steps = np.diff(along[order])
    if (steps < 1e-2).any():
        raise SeriesError(f"series {name}: duplicate slice positions ({int((steps < 1e-2).sum())})")
    offsets = np.diff(ipps[order], axis=0)
    cosines = np.abs(offsets @ normal) / np.linalg.norm(offsets, axis=1)
    tilt = np.degrees(np.arccos(np.clip(cosines.min(), -1, 1)))
    if tilt > rules.tilt_tolerance_deg:
        raise SeriesError(f"series {name}: gantry tilt or sheared stack ({tilt:.1f} degrees)")
    median = float(np.median(steps))
    if steps.max() > rules.gap_factor * median:
        where = int(np.argmax(steps))
        raise SeriesError(f"series {name}: missing slices (gap of {steps.max():.2f} mm after slice "
                          f"{where + 1}, expected {median:.2f} mm)")
    if steps.max() - steps.min() > rules.spacing_tolerance * median:
        raise SeriesError(f"series {name}: inconsistent slice spacing ({steps.min():.2f} to {steps.max():.2f} mm)")
    return order


def header_reasons(rows: pd.DataFrame, keys: pd.Series, rules: GeometryRules) -> pd.Series:
    """The first failing header check of every series in ``rows`` (grouped by ``keys``), '' when none
    fails. Vectorised over a whole bucket of the index (100k series must not cost 100k DataFrame passes);
    the checks and their order are those of ``check_series_headers``, which calls this for one series."""
    keys = pd.Series(np.asarray(keys), index=rows.index)
    size = keys.groupby(keys, sort=True).size()
    reasons = pd.Series("", index=size.index, dtype=object)

    def flag(failing: pd.Series, text) -> None:
        todo = failing.reindex(reasons.index, fill_value=False).astype(bool) & (reasons == "")
        if todo.any():
            reasons[todo] = text(todo[todo].index) if callable(text) else text

    modality = rows["Modality"]
    bad = ((modality != "CT") & modality.notna()).groupby(keys).any() | ~modality.notna().groupby(keys).any()
    flag(bad, lambda idx: [f"modality {', '.join(sorted(set(modality[keys == k].dropna()))) or 'missing'}, "
                           "expected CT" for k in idx])
    flag(rows["image_type"].fillna("").str.contains("LOCALIZER|SCOUT|TOPOGRAM", case=False).groupby(keys).any(),
         "localizer/scout images")
    frames = rows["NumberOfFrames"].fillna(1) if "NumberOfFrames" in rows else pd.Series(1.0, index=rows.index)
    frame = rows["frame"].fillna(0) if "frame" in rows else pd.Series(0, index=rows.index)
    flag(((frames > 1) & (frame == 0)).groupby(keys).any(),
         "multi-frame object without per-frame geometry (no functional groups)")
    if "transfer_syntax" in rows:
        syntax = rows["transfer_syntax"].fillna("").astype(str)
        ok = {t: decodable(t) for t in syntax.unique()}
        missing = syntax[~syntax.map(ok)]
        first_missing = missing.groupby(keys[missing.index]).min()
        flag(pd.Series(True, index=first_missing.index),
             lambda idx: [f"no installed decoder for transfer syntax {syntax_label(first_missing[k])}" for k in idx])
    no_pixels = (~rows["has_pixels"].fillna(False).astype(bool)).groupby(keys).sum()
    flag(no_pixels > 0, lambda idx: [f"{int(no_pixels[k])} file(s) without pixel data" for k in idx])
    tilt = rows["GantryDetectorTilt"].fillna(0).abs()
    max_tilt = tilt.groupby(keys).max()
    flag(max_tilt > rules.tilt_tolerance_deg, lambda idx: [f"gantry tilt of {max_tilt[k]:g} degrees" for k in idx])
    spacing = rows[["pixel_spacing_row", "pixel_spacing_col", "Rows", "Columns"]]
    flag(spacing.isna().any(axis=1).groupby(keys).any() | (spacing.groupby(keys).nunique() > 1).any(axis=1),
         "pixel spacing or matrix differs between slices (or is missing)")
    todo = reasons.index[reasons == ""]
    if len(todo):  # slice geometry, one small numpy pass per series
        order = np.argsort(keys.to_numpy(), kind="stable")
        sorted_keys = keys.to_numpy()[order]
        iops = rows[[f"iop{i}" for i in range(6)]].to_numpy(float)[order]
        ipps = rows[[f"ipp{i}" for i in range(3)]].to_numpy(float)[order]
        starts = np.searchsorted(sorted_keys, todo, side="left")
        ends = np.searchsorted(sorted_keys, todo, side="right")
        for key, a, b in zip(todo, starts, ends):
            try:
                check_geometry(str(key), iops[a:b], ipps[a:b], rules)
            except SeriesError as err:
                reasons[key] = str(err).split(": ", 1)[1]
    return reasons


def check_series_headers(name: str, rows: pd.DataFrame, rules: GeometryRules) -> None:
    """Every check that headers alone allow, so selection never reads pixels of rejected series."""
    reason = header_reasons(rows, pd.Series("s", index=rows.index), rules).iloc[0] if len(rows) else "no files"
    if reason:
        raise SeriesError(f"series {name}: {reason}")


def _pixels(ds, name: str) -> np.ndarray:
    """Stored values as (frames, rows, columns); a decoder failure becomes a SeriesError naming the file (its
    name, not its path), the transfer syntax and the reader's own message (e.g. pydicom's "number of bytes of
    pixel data is less than expected" of a file cut short)."""
    try:
        pixels = ds.pixel_array
    except Exception as exc:
        syntax = str(ds.file_meta.get("TransferSyntaxUID", ""))
        file = Path(str(ds.filename)).name if getattr(ds, "filename", None) else "?"
        raise SeriesError(f"series {name}: cannot decode pixel data ({syntax_label(syntax)}: {_error_text(exc)}) "
                          f"in file {file}") from exc
    return pixels[None] if int(ds.get("NumberOfFrames", 1) or 1) == 1 else pixels


def read_series(files_or_dir: str | Path | list, rules: GeometryRules | None = None,
                name: str | None = None) -> SeriesVolume:
    """Read one series into HU (x, y, z) with its RAS affine, sorted along the slice normal.

    The series may be classic (one file per slice), enhanced (one multi-frame file) or a mix of
    multi-frame files; every frame is one slice and carries its own geometry and rescale."""
    rules = rules or GeometryRules()
    if isinstance(files_or_dir, (str, Path)) and Path(files_or_dir).is_dir():
        files = [Path(p) for p in list_files(files_or_dir)]
    else:
        files = [Path(p) for p in ([files_or_dir] if isinstance(files_or_dir, (str, Path)) else files_or_dir)]
    files = list(dict.fromkeys(files))  # an enhanced file has one index row per frame
    name = name or (str(files[0].parent) if files else "<empty>")
    datasets = []
    for f in files:
        try:
            datasets.append(pydicom.dcmread(f))
        except Exception as exc:
            raise SeriesError(f"series {name}: unreadable file {f.name} ({type(exc).__name__})") from exc
    if not datasets:
        raise SeriesError(f"series {name}: no files")
    if len({str(ds.get("SeriesInstanceUID", "")) for ds in datasets}) > 1:
        raise SeriesError(f"series {name}: files of several series")
    frames = [(d, geo) for d, ds in enumerate(datasets) for geo in frame_geometry(ds)]
    rows = pd.DataFrame([_header_row(datasets[d], geo) for d, geo in frames])
    check_series_headers(name, rows, rules)
    iops = rows[[f"iop{i}" for i in range(6)]].to_numpy(float)
    ipps = rows[[f"ipp{i}" for i in range(3)]].to_numpy(float)
    order = check_geometry(name, iops, ipps, rules)
    return _assemble(name, datasets, [frames[i] for i in order], iops[0], ipps[order])


def _header_row(ds, geo: dict) -> dict:
    return {"Modality": str(ds.get("Modality", "")) or None,
            "image_type": _frame_type(ds), "frame": geo["frame"],
            "NumberOfFrames": float(ds.get("NumberOfFrames", 1) or 1),
            "transfer_syntax": str(ds.file_meta.get("TransferSyntaxUID", "")),
            "has_pixels": "PixelData" in ds,
            "GantryDetectorTilt": float(ds.get("GantryDetectorTilt", 0) or 0),
            "Rows": ds.get("Rows"), "Columns": ds.get("Columns"),
            "pixel_spacing_row": geo["ps"][0], "pixel_spacing_col": geo["ps"][1],
            **{f"iop{i}": geo["iop"][i] for i in range(6)}, **{f"ipp{i}": geo["ipp"][i] for i in range(3)}}


def _assemble(name: str, datasets: list, frames: list[tuple[int, dict]], iop: np.ndarray,
              ipps: np.ndarray) -> SeriesVolume:
    decoded: dict[int, np.ndarray] = {}
    slices = []
    for d, geo in frames:
        if d not in decoded:
            decoded[d] = _pixels(datasets[d], name)
        pixels = decoded[d][max(geo["frame"] - 1, 0)].astype(np.float32)
        slices.append(pixels * geo["slope"] + geo["intercept"])
    hu = np.stack(slices, axis=-1).transpose(1, 0, 2)  # pixel_array[r, c] -> (x=c, y=r, z)
    ps_row, ps_col = frames[0][1]["ps"]
    if len(ipps) > 1:
        step = (ipps[-1] - ipps[0]) / (len(ipps) - 1)
    else:  # a single slice: its thickness is the only depth there is
        thickness = frames[0][1]["thickness"]
        step = _normal(iop) * (thickness if np.isfinite(thickness) and thickness > 0 else 1.0)
    steps = np.column_stack([iop[:3] * ps_col, iop[3:] * ps_row, step])
    numbers = [int(geo["number"] or 0) for _, geo in frames]
    return SeriesVolume(hu=np.ascontiguousarray(hu), affine=lps_affine(ipps[0], steps), name=name,
                        instance_numbers=numbers, slice_positions=ipps)
