"""The one in-memory volume type every reader returns and the preprocessing consumes.

Index order is (x, y, z) as nibabel uses, and ``affine`` maps voxel indices to RAS millimetres
(nibabel convention), so any reader's output can be saved with nibabel and compared with any other.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


@dataclass
class Volume:
    """A CT volume in Hounsfield units with its voxel-to-RAS affine."""

    hu: np.ndarray
    affine: np.ndarray

    @property
    def spacing(self) -> np.ndarray:
        return np.sqrt((self.affine[:3, :3] ** 2).sum(axis=0))

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(int(n) for n in self.hu.shape)


def lps_affine(origin: np.ndarray, steps: np.ndarray) -> np.ndarray:
    """RAS affine from an LPS origin and the LPS step vectors of the i, j, k axes (as columns)."""
    lps = np.eye(4)
    lps[:3, :3] = steps
    lps[:3, 3] = origin
    return LPS_TO_RAS @ lps


def check_values(volume: Volume, name: str) -> None:
    """Reject volumes no model should see: non-finite or constant values."""
    if not np.isfinite(volume.hu).all():
        raise ValueError(f"{name}: volume contains NaN or infinite values")
    if float(volume.hu.max()) - float(volume.hu.min()) < 1e-3:
        raise ValueError(f"{name}: constant volume (every voxel {float(volume.hu.flat[0]):g})")
