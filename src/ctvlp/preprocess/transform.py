"""RAS, resample, clip and scale, centre-crop/pad to whole windows: one function for every consumer.

Peers trained and evaluated with different HU windows; here training, evaluation and the CLI all
call ``preprocess`` with the config's ``PreprocessSpec``. Reorientation is nibabel's exact
axis permutation/flip; resampling is torch's trilinear interpolation on a grid whose spacing is
exactly the target (``align_corners=False`` with a fixed scale factor), and the affine follows
every step so a depth bin maps back to patient z.
"""

from __future__ import annotations

from dataclasses import dataclass

import nibabel as nib
import numpy as np
import torch
import torch.nn.functional as F

from ctvlp.io.volume import Volume


@dataclass(frozen=True)
class PreprocessSpec:
    """Config ``preprocess``: target spacing (mm, RAS x/y/z), HU range and window size (voxels)."""

    spacing_mm: tuple[float, float, float]
    hu_range: tuple[float, float]
    window_voxels: tuple[int, int, int]

    @classmethod
    def from_config(cls, cfg: dict) -> "PreprocessSpec":
        return cls(tuple(float(v) for v in cfg["spacing_mm"]), tuple(float(v) for v in cfg["hu_range"]),
                   tuple(int(v) for v in cfg["window_voxels"]))


def to_ras(volume: Volume) -> Volume:
    """Permute/flip axes so index axes run along +R, +A, +S (no interpolation)."""
    ornt = nib.orientations.io_orientation(volume.affine)
    data = nib.orientations.apply_orientation(volume.hu, ornt)
    affine = volume.affine @ nib.orientations.inv_ornt_aff(ornt, volume.hu.shape)
    return Volume(hu=np.ascontiguousarray(data), affine=affine)


def resample(volume: Volume, spacing: tuple[float, float, float]) -> Volume:
    """Trilinear resampling onto a grid with exactly ``spacing``; the affine gets the new origin."""
    old = volume.spacing
    scale = old / np.asarray(spacing, dtype=float)
    if np.allclose(scale, 1.0):
        return volume
    tensor = torch.from_numpy(np.ascontiguousarray(volume.hu, dtype=np.float32))[None, None]
    out = F.interpolate(tensor, scale_factor=tuple(float(s) for s in scale), mode="trilinear",
                        align_corners=False, recompute_scale_factor=False)[0, 0].numpy()
    # output voxel i samples input coordinate (i + 0.5) / scale - 0.5
    affine = volume.affine.copy()
    affine[:3, :3] = volume.affine[:3, :3] / scale
    affine[:3, 3] = volume.affine[:3, :3] @ (0.5 / scale - 0.5) + volume.affine[:3, 3]
    return Volume(hu=out, affine=affine)


def scale_intensity(hu: np.ndarray, hu_range: tuple[float, float]) -> np.ndarray:
    lo, hi = hu_range
    return ((np.clip(hu, lo, hi) - lo) / (hi - lo)).astype(np.float32)


def crop_or_pad(data: np.ndarray, affine: np.ndarray, window: tuple[int, int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Centre-crop each axis to the largest multiple of the window; pad (with 0 = air) below one window."""
    starts, pads = [], []
    for n, w in zip(data.shape, window):
        target = max(w, (n // w) * w)
        if n >= target:
            starts.append((n - target) // 2)
            pads.append((0, 0))
        else:
            starts.append(0)
            before = (target - n) // 2
            pads.append((before, target - n - before))
    slices = tuple(slice(s, s + max(w, (n // w) * w)) for s, n, w in zip(starts, data.shape, window))
    out = np.pad(data[slices], pads, constant_values=0.0)
    shift = np.array(starts, dtype=float) - np.array([p[0] for p in pads], dtype=float)
    new_affine = affine.copy()
    new_affine[:3, 3] = affine[:3, :3] @ shift + affine[:3, 3]
    return np.ascontiguousarray(out), new_affine


def preprocess(volume: Volume, spec: PreprocessSpec) -> tuple[np.ndarray, np.ndarray]:
    """The model input in [0, 1] (x, y, z, RAS) and its voxel-to-RAS affine."""
    ras = resample(to_ras(volume), spec.spacing_mm)
    scaled = scale_intensity(ras.hu, spec.hu_range)
    return crop_or_pad(scaled, ras.affine, spec.window_voxels)
