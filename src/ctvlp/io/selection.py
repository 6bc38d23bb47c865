"""Which series of a study becomes the training volume; every other series stays for references.

Checks run on headers only (the index), so a rejected series never costs a pixel read. The
rule is configurable because sites differ. Only acquisitions are candidates: a series whose
ImageType/FrameType or description names a map or projection (DERIVED, MIP, MinIP, iodine,
monoenergetic) stays a reference unless ``allow_series_kinds`` admits its kind. Candidates are
ranked ORIGINAL/PRIMARY first, then by the kernel preference list, the thickness closest to a
preferred value and the most slices; the whole ranking is kept, so when the first choice fails
preprocessing (it cannot be decoded, its pixels are broken) the next one is tried.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from ctvlp.io.dicom import GeometryRules, header_reasons


@dataclass(frozen=True)
class SelectionRules:
    """Config ``ingest``: minimum slices, preferred kernels (substrings, in order), thickness, and the
    series kinds (``derived``, ``mip``, ``minip``, ``iodine``, ``monoenergetic``) allowed as volumes."""

    min_slices: int = 20
    prefer_kernels: tuple[str, ...] = ()
    prefer_thickness_mm: float = 5.0
    allow_series_kinds: tuple[str, ...] = ()


def classify_series(index: pd.DataFrame, rules: GeometryRules) -> pd.DataFrame:
    """One row per series of the readable files: header summary, status and reason (vectorised)."""
    files = index[index["reason"] == ""]
    if files.empty:
        return pd.DataFrame()
    groups = files.groupby("series_key", sort=True)
    first = groups.first()
    kinds = files.get("series_kind", pd.Series("", index=files.index)).fillna("")
    kinds = kinds[kinds != ""]  # most rows name no kind: join only the others
    kinds = kinds.groupby(files.loc[kinds.index, "series_key"]).agg(
        lambda v: ",".join(sorted({k for x in v for k in x.split(",") if k})))
    reasons = header_reasons(files, files["series_key"], rules)
    image_type = first["image_type"].fillna("").str.upper()
    series = pd.DataFrame({
        "series_key": first.index, "study_key": first.study_key.values, "patient_key": first.patient_key.values,
        "accession_key": first.accession_key.values, "frame_key": first.frame_key.values,
        "series_number": first.SeriesNumber.values, "n_files": groups.size().values,
        "kernel": first.ConvolutionKernel.values, "thickness": first.SliceThickness.values,
        "patient_age": first.patient_age.values, "patient_sex": first.patient_sex.values,
        "transfer_syntax": first.get("transfer_syntax", pd.Series("", index=first.index)).values,
        "series_kind": kinds.reindex(first.index).fillna("").values,
        "original_primary": image_type.str.startswith("ORIGINAL\\PRIMARY").values,
        "status": "ok", "reason": reasons.reindex(first.index).values})
    missing_id = series.patient_key.fillna("") == ""
    series.loc[missing_id, "reason"] = "missing PatientID"
    series.loc[series.reason != "", "status"] = "rejected"
    return series.reset_index(drop=True)


def _preference_table(series: pd.DataFrame, sel: SelectionRules) -> pd.DataFrame:
    """Sort keys of the ranking, best first: ORIGINAL/PRIMARY, kernel preference, thickness, most slices."""
    kernel = series.kernel.fillna("").astype(str).str.lower()
    rank = pd.Series(len(sel.prefer_kernels), index=series.index)
    for i, k in reversed(list(enumerate(sel.prefer_kernels))):
        rank[kernel.str.contains(k.lower(), regex=False)] = i
    thickness = pd.to_numeric(series.thickness, errors="coerce").fillna(1e9)
    return pd.DataFrame({"study_key": series.study_key, "not_primary": ~series.original_primary.astype(bool),
                         "kernel_rank": rank, "thickness_gap": (thickness - sel.prefer_thickness_mm).abs(),
                         "minus_files": -series.n_files, "series_number": series.series_number,
                         "series_key": series.series_key})


def select_per_study(series: pd.DataFrame, sel: SelectionRules) -> pd.DataFrame:
    """Rank the candidate volumes of each study (``rank`` 0 = ``selected``); valid others are references."""
    series = series.copy()
    if series.empty:
        return series.assign(selected=False, rank=-1, role="rejected")
    short = (series.status == "ok") & (series.n_files < sel.min_slices)
    series.loc[short, "status"] = "rejected"
    series.loc[short, "reason"] = [f"too few slices ({n} < {sel.min_slices})" for n in series.n_files[short]]
    allowed = set(sel.allow_series_kinds)
    excluded = series.series_kind.fillna("").map(lambda v: sorted(set(filter(None, v.split(","))) - allowed))
    candidate = (series.status == "ok") & (excluded.map(len) == 0)
    not_candidate = (series.status == "ok") & ~candidate
    series.loc[not_candidate, "reason"] = [f"reference only: {', '.join(k)} series (ingest.allow_series_kinds)"
                                           for k in excluded[not_candidate]]
    series["rank"] = -1
    ranked = _preference_table(series[candidate], sel).sort_values(
        ["study_key", "not_primary", "kernel_rank", "thickness_gap", "minus_files", "series_number", "series_key"])
    series.loc[ranked.index, "rank"] = ranked.groupby("study_key", sort=False).cumcount().to_numpy()
    series["selected"] = series["rank"] == 0
    series["role"] = "rejected"
    series.loc[series.status == "ok", "role"] = "reference"
    series.loc[series.selected, "role"] = "volume"
    return series
