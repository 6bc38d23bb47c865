"""DICOM: a header index of a whole export, geometry checks, and series reading into RAS volumes.

Slices are ordered by their position along the slice normal (from ImagePositionPatient and
ImageOrientationPatient), never by file name or InstanceNumber: exports shuffle file names and
scanners number slices head-to-feet or feet-to-head. Identifiers never leave this module raw:
the index carries salted HMACs of UIDs, ids and accession numbers (``ctvlp.ids``).
"""

from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pydicom
from pydicom.errors import InvalidDicomError
from tqdm import tqdm

from ctvlp.ids import Pseudonymizer
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


def _floats(value, n: int) -> list[float]:
    if value is None:
        return [np.nan] * n
    values = [float(v) for v in value]
    return values if len(values) == n else [np.nan] * n


def _identity_in_path(ds, rel: str) -> bool:
    """True when the patient's id or a name part (3+ characters) appears in the file's path."""
    parts = {p.lower() for p in Path(rel).parts}
    tokens = {str(ds.get("PatientID", "")).lower()}
    name = ds.get("PatientName")
    if name is not None:
        tokens |= {t.lower() for t in (name.family_name, name.given_name) if t}
    return any(t and len(t) >= 3 and any(t in part for part in parts) for t in tokens)


def read_header(path: str, root: str, salt: bytes) -> dict:
    """One index row for one file; unreadable or non-image files get a reason instead of fields."""
    rel = os.path.relpath(path, root)
    row: dict = {"path": rel, "reason": ""}
    try:
        ds = pydicom.dcmread(path, defer_size="2 KB")  # pixel data stays on disk
    except InvalidDicomError:
        return {**row, "reason": "not a DICOM file"}
    except Exception as exc:  # truncated headers raise many different errors
        return {**row, "reason": f"unreadable DICOM header ({type(exc).__name__})"}
    if len(ds) == 0:  # a preamble and file meta, then nothing: the copy or transfer was cut short
        return {**row, "reason": "truncated file (no data set after the file meta information)"}
    if "SOPClassUID" not in ds or "SeriesInstanceUID" not in ds:
        return {**row, "reason": "not an image object (no SOP class or series UID)"}
    if _identity_in_path(ds, rel):
        return {**row, "reason": "path contains a patient identifier (rename the export folders)"}
    pseudo = Pseudonymizer(salt)
    row.update({
        "patient_key": pseudo("hospital", "patient", str(ds.get("PatientID", ""))),
        "study_key": pseudo("hospital", "study", str(ds.get("StudyInstanceUID", ""))),
        "accession_key": pseudo("hospital", "accession", str(ds.get("AccessionNumber", ""))),
        "series_key": pseudo("hospital", "series", str(ds.SeriesInstanceUID)),
        "frame_key": pseudo("hospital", "frame", str(ds.get("FrameOfReferenceUID", ""))),
        "image_type": "\\".join(ds.get("ImageType", [])),
        "transfer_syntax": str(ds.file_meta.get("TransferSyntaxUID", "")),
        "has_pixels": "PixelData" in ds or "FloatPixelData" in ds,
        "patient_age": str(ds.get("PatientAge", "")),
        "patient_sex": str(ds.get("PatientSex", "")),
    })
    for name in HEADER_FIELDS:
        value = ds.get(name)
        row[name] = None if value is None else (str(value) if name in ("Modality", "ConvolutionKernel",
                                                                        "BodyPartExamined") else float(value))
    ipp = _floats(ds.get("ImagePositionPatient"), 3)
    iop = _floats(ds.get("ImageOrientationPatient"), 6)
    ps = _floats(ds.get("PixelSpacing"), 2)
    row.update({f"ipp{i}": ipp[i] for i in range(3)})
    row.update({f"iop{i}": iop[i] for i in range(6)})
    row.update({"pixel_spacing_row": ps[0], "pixel_spacing_col": ps[1]})
    return row


def _read_header_star(args: tuple[str, str, bytes]) -> dict:
    return read_header(*args)


def list_files(root: str | Path) -> list[str]:
    """Every regular file under root, sorted (the index order never depends on the file system)."""
    found = []
    for dirpath, _, files in os.walk(root):
        found += [os.path.join(dirpath, f) for f in files]
    return sorted(found)


def index_dicom(root: str | Path, salt: bytes, workers: int = 1) -> pd.DataFrame:
    """Header-only index of a DICOM tree, one row per file, read in parallel processes."""
    files = list_files(root)
    args = [(f, str(root), salt) for f in files]
    if workers > 1 and len(files) > 64:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            rows = list(tqdm(pool.map(_read_header_star, args, chunksize=128), total=len(args),
                             desc="DICOM headers"))
    else:
        rows = [read_header(*a) for a in tqdm(args, desc="DICOM headers")]
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


def check_series_headers(name: str, rows: pd.DataFrame, rules: GeometryRules) -> None:
    """Every check that headers alone allow, so selection never reads pixels of rejected series."""
    modality = set(rows["Modality"].dropna())
    if modality != {"CT"}:
        raise SeriesError(f"series {name}: modality {', '.join(sorted(modality)) or 'missing'}, expected CT")
    if rows["image_type"].str.contains("LOCALIZER|SCOUT|TOPOGRAM", case=False).any():
        raise SeriesError(f"series {name}: localizer/scout images")
    if (rows["NumberOfFrames"].fillna(1) > 1).any():
        raise SeriesError(f"series {name}: multi-frame object (enhanced CT) is not supported")
    has_pixels = rows["has_pixels"].astype(bool)
    if not has_pixels.all():
        raise SeriesError(f"series {name}: {int((~has_pixels).sum())} file(s) without pixel data")
    if (rows["GantryDetectorTilt"].fillna(0).abs() > rules.tilt_tolerance_deg).any():
        raise SeriesError(f"series {name}: gantry tilt of {rows['GantryDetectorTilt'].abs().max():g} degrees")
    spacing = rows[["pixel_spacing_row", "pixel_spacing_col", "Rows", "Columns"]]
    if spacing.isna().any().any() or (spacing.nunique() > 1).any():
        raise SeriesError(f"series {name}: pixel spacing or matrix differs between slices (or is missing)")
    iops = rows[[f"iop{i}" for i in range(6)]].to_numpy(float)
    ipps = rows[[f"ipp{i}" for i in range(3)]].to_numpy(float)
    check_geometry(name, iops, ipps, rules)


def _pixels(ds, name: str) -> np.ndarray:
    try:
        return ds.pixel_array
    except Exception as exc:
        syntax = ds.file_meta.get("TransferSyntaxUID")
        label = getattr(syntax, "name", str(syntax))
        raise SeriesError(f"series {name}: cannot decode pixel data ({label}: {type(exc).__name__})") from exc


def read_series(files_or_dir: str | Path | list, rules: GeometryRules | None = None,
                name: str | None = None) -> SeriesVolume:
    """Read one series into HU (x, y, z) with its RAS affine, sorted along the slice normal."""
    rules = rules or GeometryRules()
    if isinstance(files_or_dir, (str, Path)) and Path(files_or_dir).is_dir():
        files = [Path(p) for p in list_files(files_or_dir)]
    else:
        files = [Path(p) for p in ([files_or_dir] if isinstance(files_or_dir, (str, Path)) else files_or_dir)]
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
    rows = pd.DataFrame([_header_row(ds) for ds in datasets])
    check_series_headers(name, rows, rules)
    iops = rows[[f"iop{i}" for i in range(6)]].to_numpy(float)
    ipps = rows[[f"ipp{i}" for i in range(3)]].to_numpy(float)
    order = check_geometry(name, iops, ipps, rules)
    return _assemble(name, [datasets[i] for i in order], iops[0], ipps[order])


def _header_row(ds) -> dict:
    iop, ipp, ps = (_floats(ds.get(k), n) for k, n in (("ImageOrientationPatient", 6),
                                                         ("ImagePositionPatient", 3), ("PixelSpacing", 2)))
    return {"Modality": str(ds.get("Modality", "")) or None,
            "image_type": "\\".join(ds.get("ImageType", [])),
            "NumberOfFrames": float(ds.get("NumberOfFrames", 1) or 1),
            "has_pixels": "PixelData" in ds,
            "GantryDetectorTilt": float(ds.get("GantryDetectorTilt", 0) or 0),
            "Rows": ds.get("Rows"), "Columns": ds.get("Columns"),
            "pixel_spacing_row": ps[0], "pixel_spacing_col": ps[1],
            **{f"iop{i}": iop[i] for i in range(6)}, **{f"ipp{i}": ipp[i] for i in range(3)}}


def _assemble(name: str, datasets: list, iop: np.ndarray, ipps: np.ndarray) -> SeriesVolume:
    slices = []
    for ds in datasets:
        pixels = _pixels(ds, name).astype(np.float32)
        slope, intercept = float(ds.get("RescaleSlope", 1) or 1), float(ds.get("RescaleIntercept", 0) or 0)
        slices.append(pixels * slope + intercept)
    hu = np.stack(slices, axis=-1).transpose(1, 0, 2)  # pixel_array[r, c] -> (x=c, y=r, z)
    ps_row, ps_col = (float(v) for v in datasets[0].PixelSpacing)
    if len(ipps) > 1:
        step = (ipps[-1] - ipps[0]) / (len(ipps) - 1)
    else:  # a single slice: its thickness is the only depth there is
        step = _normal(iop) * float(datasets[0].get("SliceThickness", 1) or 1)
    steps = np.column_stack([iop[:3] * ps_col, iop[3:] * ps_row, step])
    return SeriesVolume(hu=np.ascontiguousarray(hu), affine=lps_affine(ipps[0], steps), name=name,
                        instance_numbers=[int(ds.get("InstanceNumber", 0) or 0) for ds in datasets],
                        slice_positions=ipps)
