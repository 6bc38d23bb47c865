"""Which series of a study becomes the training volume; every other series stays for references.

Checks run on headers only (the index), so a rejected series never costs a pixel read. The
rule is configurable because sites differ: a kernel preference list, then the thickness
closest to a preferred value, then the most slices.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from ctvlp.io.dicom import GeometryRules, SeriesError, check_series_headers


@dataclass(frozen=True)
class SelectionRules:
    """Config ``ingest``: minimum slices, preferred kernels (substrings, in order) and thickness."""

    min_slices: int = 20
    prefer_kernels: tuple[str, ...] = ()
    prefer_thickness_mm: float = 5.0


def classify_series(index: pd.DataFrame, rules: GeometryRules) -> pd.DataFrame:
    """One row per series of the readable files: header summary, status and reason."""
    files = index[index["reason"] == ""]
    rows = []
    for series_key, part in files.groupby("series_key", sort=True):
        first = part.iloc[0]
        row = {"series_key": series_key, "study_key": first.study_key, "patient_key": first.patient_key,
               "accession_key": first.accession_key, "frame_key": first.frame_key,
               "series_number": first.SeriesNumber, "n_files": len(part),
               "kernel": first.ConvolutionKernel, "thickness": first.SliceThickness,
               "patient_age": first.patient_age, "patient_sex": first.patient_sex}
        try:
            if not first.patient_key:
                raise SeriesError(f"series {series_key}: missing PatientID")
            check_series_headers(series_key, part, rules)
            row.update(status="ok", reason="")
        except SeriesError as err:
            row.update(status="rejected", reason=str(err).split(": ", 1)[1])
        rows.append(row)
    return pd.DataFrame(rows)


def _preference(row: pd.Series, sel: SelectionRules) -> tuple:
    kernel = str(row.kernel or "")
    rank = next((i for i, k in enumerate(sel.prefer_kernels) if k.lower() in kernel.lower()),
                len(sel.prefer_kernels))
    thickness = float(row.thickness) if pd.notna(row.thickness) else 1e9
    return (rank, abs(thickness - sel.prefer_thickness_mm), -row.n_files, row.series_number)


def select_per_study(series: pd.DataFrame, sel: SelectionRules) -> pd.DataFrame:
    """Mark one ``selected`` series per study; valid others become references."""
    series = series.copy()
    short = (series.status == "ok") & (series.n_files < sel.min_slices)
    series.loc[short, "status"] = "rejected"
    series.loc[short, "reason"] = [f"too few slices ({n} < {sel.min_slices})" for n in series.n_files[short]]
    series["selected"] = False
    for _, part in series[series.status == "ok"].groupby("study_key"):
        best = min(part.index, key=lambda i: _preference(part.loc[i], sel))
        series.loc[best, "selected"] = True
    series["role"] = "rejected"
    series.loc[series.status == "ok", "role"] = "reference"
    series.loc[series.selected, "role"] = "volume"
    return series
