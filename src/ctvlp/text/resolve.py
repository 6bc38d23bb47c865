"""Resolve "series X, image Y" through DICOM geometry to a depth bin of the study's cached volume.

(study, series number, image number) -> the cited instance in the DICOM index -> the centre of its
plane in patient coordinates -> voxel coordinates of the preprocessed training volume (which may be
another series of the same frame of reference) -> the depth bin whose slab overlaps the cited
slice most. Never image number x thickness: numbering direction and spacing differ per series.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ctvlp.io.volume import LPS_TO_RAS

REASONS = {
    "ok": "resolved",
    "prior_study": "reference to a prior study: never resolved against the current one",
    "below_min_confidence": "reference confidence below text.mining.min_confidence: kept out of the targets",
    "no_volume": "report matches no training volume",
    "ambiguous_series": "no series number and several candidate series",
    "unknown_series": "series not found in the study",
    "ambiguous_series_number": "ambiguous series number",
    "image_out_of_range": "image number outside the series",
    "image_not_found": "image number missing from the series",
    "other_frame": "different frame of reference than the training volume",
    "not_axial": "cited image is not an axial slice",
    "outside_volume": "cited slice lies outside the cropped volume",
}


@dataclass(frozen=True)
class Target:
    """Where a resolved reference points: patient z, voxel k and depth bin of the cached volume."""

    z_mm: float
    k_voxel: float
    depth_bin: int
    n_bins: int


def plane_center_lps(row: pd.Series) -> np.ndarray:
    """Centre of an instance's image plane (LPS mm) from IPP, IOP, pixel spacing and matrix."""
    ipp = np.array([row.ipp0, row.ipp1, row.ipp2], dtype=float)
    iop = np.array([row[f"iop{i}"] for i in range(6)], dtype=float)
    half_cols = (float(row.Columns) - 1) / 2 * float(row.pixel_spacing_col)
    half_rows = (float(row.Rows) - 1) / 2 * float(row.pixel_spacing_row)
    return ipp + iop[:3] * half_cols + iop[3:] * half_rows


def depth_target(instance: pd.Series, affine: np.ndarray, shape: tuple[int, int, int], bin_voxels: int) -> Target | str:
    """The depth bin of ``instance`` in a cached volume, or a reason code when there is none."""
    iop = np.array([instance[f"iop{i}"] for i in range(6)], dtype=float)
    normal = np.cross(iop[:3], iop[3:])
    k_axis = affine[:3, 2] / np.linalg.norm(affine[:3, 2])
    if abs(float(np.dot(LPS_TO_RAS[:3, :3] @ normal, k_axis))) < np.cos(np.radians(10)):
        return "not_axial"
    center = plane_center_lps(instance)
    ijk = np.linalg.solve(affine, LPS_TO_RAS @ np.append(center, 1.0))[:3]
    k, n_z = float(ijk[2]), int(shape[2])
    if k < -0.5 or k > n_z - 0.5:
        return "outside_volume"
    spacing_z = float(np.linalg.norm(affine[:3, 2]))
    thickness = float(instance.SliceThickness) if pd.notna(instance.SliceThickness) else spacing_z
    lo, hi = k - thickness / spacing_z / 2, k + thickness / spacing_z / 2
    n_bins = max(1, n_z // bin_voxels)
    edges = np.arange(n_bins + 1) * bin_voxels - 0.5
    overlap = np.clip(np.minimum(hi, edges[1:]) - np.maximum(lo, edges[:-1]), 0, None)
    center_bin = int(np.clip((k + 0.5) // bin_voxels, 0, n_bins - 1))
    ties = np.flatnonzero(overlap >= overlap.max() - 1e-6)
    best = center_bin if center_bin in ties or overlap.max() <= 0 else int(ties[0])
    return Target(z_mm=float(center[2]), k_voxel=k, depth_bin=best, n_bins=n_bins)


class StudyResolver:
    """Resolves references of one study (its index rows, valid series and training volume)."""

    def __init__(self, index_rows: pd.DataFrame, valid_series: pd.DataFrame, volume: pd.Series | None,
                 bin_voxels: int):
        self.rows = index_rows
        self.valid_numbers = sorted(valid_series.series_number.astype(int).unique()) if len(valid_series) else []
        self.volume = volume
        self.bin_voxels = bin_voxels

    def resolve(self, series: int | None, image: int) -> tuple[str, Target | None, int | None]:
        """(reason code, target, series number used)."""
        if self.volume is None:
            return "no_volume", None, series
        if series is None:
            if len(self.valid_numbers) != 1:
                return "ambiguous_series", None, None
            series = self.valid_numbers[0]
        rows = self.rows[self.rows.SeriesNumber == series]
        if rows.empty:
            return "unknown_series", None, series
        if "series_key" in rows and rows.series_key.nunique() > 1:
            return "ambiguous_series_number", None, series  # two series share the number: refuse to guess
        hit = rows[rows.InstanceNumber == image]
        if hit.empty:
            inside = rows.InstanceNumber.min() <= image <= rows.InstanceNumber.max()
            return ("image_not_found" if inside else "image_out_of_range"), None, series
        instance = hit.iloc[0]
        if instance.frame_key != self.volume.frame_key:
            return "other_frame", None, series
        affine = np.asarray(self.volume.affine, dtype=float).reshape(4, 4)
        target = depth_target(instance, affine, tuple(self.volume["shape"]), self.bin_voxels)
        if isinstance(target, str):
            return target, None, series
        return "ok", target, series
