"""Run the preprocessing over one shard of the manifest and write the cache.

A shard is a list of volume ids (the manifest's ``shard`` column), so 100k volumes are a few
hundred jobs, not 100k. A volume that fails to read or check is recorded with its reason and
the shard goes on; a hospital study then falls back to its next candidate series (the manifest's
``candidates``, in selection order), and the result says which series were tried and why each
failed. Truncated or malformed source files (a cut ``.nii.gz`` or ``.npz``) are quarantined the
same way, with a reason that names the kind of damage and never the file's absolute path.
"""

from __future__ import annotations

import struct
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
from nibabel.filebasedimages import ImageFileError
from tqdm import tqdm

from ctvlp.features.cache import cache_file, write_cached
from ctvlp.io import ctrate, inspect_ct, merlin, radchestct
from ctvlp.io.dicom import GeometryRules, SeriesError, read_series
from ctvlp.io.volume import Volume, check_values
from ctvlp.preprocess.transform import PreprocessSpec, preprocess

# Errors a damaged file raises while it is decoded, and the words the QC uses for them.
_DAMAGE = (EOFError, zlib.error, zipfile.BadZipFile, struct.error, ImageFileError)


def failure_reason(err: Exception) -> str:
    """One QC reason for a failed volume; messages that could carry a path are reduced to their kind."""
    if isinstance(err, _DAMAGE):
        detail = type(err).__name__ if isinstance(err, ImageFileError) else f"{type(err).__name__}: {err}"
        return f"truncated or malformed file ({detail})"
    if isinstance(err, OSError):
        return f"unreadable file ({type(err).__name__}: {err.strerror or 'I/O error'})"
    return str(err).split(": ", 1)[-1]


def load_source(row: pd.Series, sources: dict, index: pd.DataFrame | None, rules: GeometryRules,
                ctrate_meta: pd.DataFrame | None = None, series_key: str | None = None) -> Volume:
    """The HU volume of one manifest row (of one of its candidate series), whatever its source format."""
    if row.source_kind == "dicom_series":
        key = series_key or row.source
        root = Path(sources["hospital"]["dicom_root"])
        files = [root / p for p in index.loc[index.series_key == key, "path"]]
        return read_series(files, rules, name=key)
    if row.source_kind == "merlin_nifti":
        return merlin.load_volume(sources["merlin"]["root"], row.source)
    if row.source_kind == "inspect_nifti":
        return inspect_ct.load_volume(sources["inspect"]["root"], row.source)
    if row.source_kind.startswith("nifti_"):
        return ctrate.load_volume(sources["ct_rate"]["root"], row.source, row.source_kind[len("nifti_"):],
                                  ctrate_meta)
    if row.source_kind == "npz":
        return radchestct.load_volume(sources["rad_chestct"]["root"], row.source)
    raise ValueError(f"{row.volume_id}: unknown source kind {row.source_kind}")


def _candidates(row: pd.Series) -> list[tuple[str, str, float]]:
    """(source, frame key, series number) in the order to try; one entry for non-DICOM sources."""
    keys = row.get("candidates")
    if row.source_kind != "dicom_series" or keys is None or len(keys) == 0:
        return [(row.source, row.get("frame_key"), row.get("series_number"))]
    return list(zip(keys, row.candidate_frames, row.candidate_numbers))


def process_volume(row: pd.Series, load: Callable[[str], Volume], spec: PreprocessSpec,
                   consume: Callable[[np.ndarray], dict] | None = None) -> tuple[dict, np.ndarray | None]:
    """Try the row's candidates in order; the result row (ok with geometry, or every failure's reason)
    and the preprocessed array of the first candidate that worked."""
    result = {"volume_id": row.volume_id, "status": "rejected", "reason": "", "source": row.source,
              "frame_key": row.get("frame_key"), "series_number": row.get("series_number"),
              "failed_sources": [], "failed_reasons": []}
    for source, frame_key, number in _candidates(row):
        try:
            volume = load(source)
            check_values(volume, row.volume_id)
            data, affine = preprocess(volume, spec)
            too_long = spec.depth_token_problem(data.shape)
            if too_long:
                raise ValueError(too_long)
        except (ValueError, OSError, *_DAMAGE) as err:  # SeriesError is a ValueError
            result["failed_sources"].append(source)
            result["failed_reasons"].append(failure_reason(err))
            continue
        result.update({
            "status": "ok", "source": source, "frame_key": frame_key, "series_number": number,
            "source_shape": list(volume.shape), "source_spacing": [round(float(s), 4) for s in volume.spacing],
            "source_orientation": "".join(nib.orientations.aff2axcodes(volume.affine)),
            "shape": list(data.shape), "affine": [float(v) for v in np.asarray(affine).ravel()],
            "hu_min": float(volume.hu.min()), "hu_max": float(volume.hu.max()), "hu_checked": True,
        })
        if result["failed_sources"]:
            result["reason"] = "fallback after " + "; ".join(
                f"{s} failed: {r}" for s, r in zip(result["failed_sources"], result["failed_reasons"]))
        return result, data
    failures = list(zip(result["failed_sources"], result["failed_reasons"]))
    result["reason"] = failures[0][1] if len(failures) == 1 else (
        "every candidate series failed: " + "; ".join(f"{s}: {r}" for s, r in failures))
    return result, None


def shard_counts(results: pd.DataFrame) -> str:
    """The shard log's line: volumes ok (of them, after a fallback), rejected, cached, and every series that
    failed (a fallback's failed first choice counts too: '15 ok, 0 rejected' must not hide it)."""
    failed = results["failed_sources"].map(len) if "failed_sources" in results else pd.Series(0, index=results.index)
    ok = results.status == "ok"
    return (f"{int(ok.sum())} ok ({int((ok & (failed > 0)).sum())} after a fallback), {int((~ok).sum())} rejected, "
            f"{int(results.cached.sum())} cached; {int(failed.sum())} series failed")


def shard_index(manifest: pd.DataFrame, index_dir: str | Path, buckets: int) -> pd.DataFrame:
    """The index rows a shard needs: the paths of its hospital volumes' candidate series, read from their
    studies' buckets with a pyarrow filter (a shard's share of the export, not the whole index)."""
    from ctvlp.io import index_store

    hospital = manifest[manifest.source_kind == "dicom_series"]
    keys = [k for c in hospital.candidates for k in c]
    studies = ["S" + scan[1:] for scan in hospital.scan_id]
    return index_store.series_files(index_dir, keys, studies, buckets) if keys else pd.DataFrame(
        columns=index_store.SHARD_COLUMNS)


def process_shard(manifest: pd.DataFrame, shard: int, sources: dict, index: pd.DataFrame | None,
                  spec: PreprocessSpec, cache_dir: str | Path, rules: GeometryRules,
                  consume: Callable[[str, np.ndarray], None] | None = None,
                  keep: Callable[[pd.Series], bool] | None = None) -> pd.DataFrame:
    """Preprocess every volume of the shard; one result row each (ok with geometry, or the reasons).

    ``consume(volume_id, array)`` gets each preprocessed volume while it is in memory (feature extraction in
    the same job, ``preprocess.keep_volumes: false``); ``keep(row)`` says which volumes still go to the cache
    (default: all)."""
    rows = []
    part = manifest[manifest.shard == shard]
    meta = ctrate.load_metadata(Path(sources["ct_rate"]["root"])) if "ct_rate" in sources else None
    for _, row in tqdm(part.iterrows(), total=len(part), desc=f"preprocess shard {shard}"):
        result, data = process_volume(
            row, lambda source, row=row: load_source(row, sources, index, rules, meta, series_key=source), spec)
        if data is not None:
            if keep is None or keep(row):
                write_cached(cache_file(cache_dir, row.volume_id), data)
            if consume is not None:
                consume(row.volume_id, data)
        result["cached"] = data is not None and (keep is None or bool(keep(row)))
        rows.append(result)
    return pd.DataFrame(rows)


def keeps_for_figures(row: pd.Series) -> bool:
    """``keep_volumes: false`` still caches the held-out hospital volumes: the qualitative figure panels draw
    slices of them (a few percent of the cache); every other volume exists only as its window features."""
    return row.dataset == "hospital" and row.split == "test"
