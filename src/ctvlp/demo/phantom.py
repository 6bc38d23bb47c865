"""A chest phantom in Hounsfield units, defined in patient coordinates (DICOM LPS, mm).

The phantom is a function of position, not a voxel grid: every series of a study (5 mm soft
tissue, 2.5 mm lung, NIfTI or npz minis) samples the same anatomy and the same lesions, so a
lesion planted at a known patient position lands where geometry says it must in every export.
LPS: +x towards the patient's left, +y posterior, +z superior (head).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

AIR, FAT, SOFT, MUSCLE, BLOOD, LIVER, BONE = -1000.0, -90.0, 35.0, 45.0, 40.0, 60.0, 320.0
LUNG, EMPHYSEMA_LUNG = -860.0, -950.0
UNDERLAYS = frozenset({"Lung opacity", "Pulmonary fibrotic sequela"})  # painted before the other findings


@dataclass(frozen=True)
class Lesion:
    """A finding placed in the phantom: CT-RATE label, centre (LPS mm), size and words for reports."""

    label: str
    center: tuple[float, float, float]
    radius: float
    side: str = ""  # "right" / "left" / "" (midline or diffuse)
    region: str = ""  # e.g. "right lower lobe"
    focal: bool = True  # focal findings get image references in reports


@dataclass(frozen=True)
class Anatomy:
    """Per-patient body shape: a scale, an in-plane shift and the height of the diaphragm dome."""

    scale: float = 1.0
    shift: tuple[float, float] = (0.0, 0.0)
    z_dome: float = -80.0

    @property
    def z_apex(self) -> float:
        return self.z_dome + 150.0 * self.scale

    @property
    def z_carina(self) -> float:
        return self.z_dome + 105.0 * self.scale

    def lung_center(self, side: str) -> tuple[float, float]:
        """Centre of a lung's axial ellipse; the patient's right is -x in LPS."""
        sign = -1.0 if side == "right" else 1.0
        return (self.shift[0] + sign * 78.0 * self.scale, self.shift[1] + 5.0 * self.scale)

    @property
    def lung_radii(self) -> tuple[float, float]:
        return (58.0 * self.scale, 82.0 * self.scale)

    @property
    def heart_center(self) -> tuple[float, float, float]:
        s = self.scale
        return (self.shift[0] + 15.0 * s, self.shift[1] - 22.0 * s, self.z_dome + 42.0 * s)

    @property
    def aorta_center(self) -> tuple[float, float]:
        return (self.shift[0] + 26.0 * self.scale, self.shift[1] + 42.0 * self.scale)

    @property
    def aorta_radius(self) -> float:
        return 11.0 * self.scale


@dataclass(frozen=True)
class Phantom:
    """Anatomy plus the findings of one study; ``render`` samples it at arbitrary positions."""

    anatomy: Anatomy
    lesions: tuple[Lesion, ...] = field(default_factory=tuple)

    @property
    def labels(self) -> set[str]:
        return {lesion.label for lesion in self.lesions}

    def render(self, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
        """HU at the given LPS positions (broadcastable arrays), without noise."""
        x, y, z = np.broadcast_arrays(*(np.asarray(a, dtype=np.float32) for a in (x, y, z)))
        hu = np.full(x.shape, AIR, dtype=np.float32)
        a = self.anatomy
        s = a.scale
        bx, by = x - a.shift[0], y - a.shift[1]
        body = _ellipse(bx, by - 8 * s, 165 * s, 115 * s)
        inner = _ellipse(bx, by - 8 * s, 150 * s, 100 * s)
        hu[body] = FAT
        hu[inner] = MUSCLE
        lung = self._lungs(x, y, z)
        below = inner & ~lung & (z < a.z_dome + 8 * s)
        hu[below & (bx < 15 * s)] = LIVER
        hu[below & (bx >= 15 * s)] = SOFT
        mediastinum = inner & (np.abs(bx) < 38 * s) & (by > -80 * s) & (by < 58 * s)
        mediastinum &= (z >= a.z_dome) & (z <= a.z_apex - 10 * s)
        hu[mediastinum] = FAT
        hu[lung] = EMPHYSEMA_LUNG if "Emphysema" in self.labels else LUNG
        self._heart(hu, x, y, z)
        self._vessels_spine_airway(hu, x, y, z, inner)
        # faint findings first: a nodule inside a ground-glass patch keeps its solid HU
        for lesion in sorted(self.lesions, key=lambda lesion: lesion.label not in UNDERLAYS):
            _apply_lesion(hu, lesion, x, y, z, lung, a)
        return hu

    def _lungs(self, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
        a = self.anatomy
        rx, ry = a.lung_radii
        taper = np.sqrt(np.clip((a.z_apex - z) / (40.0 * a.scale), 0.0, 1.0))
        lung = np.zeros(x.shape, dtype=bool)
        for side in ("right", "left"):
            cx, cy = a.lung_center(side)
            # the dome: lung bottom is lower laterally (costophrenic recess)
            bottom = a.z_dome - 25.0 * a.scale * ((x - cx) / rx) ** 2
            in_plane = _ellipse(x - cx, y - cy, rx * taper + 1e-3, ry * taper + 1e-3)
            lung |= in_plane & (z >= bottom) & (z <= a.z_apex)
        return lung

    def _heart(self, hu: np.ndarray, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> None:
        a = self.anatomy
        grow = 1.3 if "Cardiomegaly" in self.labels else 1.0
        radii = np.array([50.0, 42.0, 46.0]) * a.scale * grow
        cx, cy, cz = a.heart_center
        if "Pericardial effusion" in self.labels:
            shell = _ellipsoid(x - cx, y - cy, z - cz, *(radii + 9.0 * a.scale))
            hu[shell] = 8.0
        hu[_ellipsoid(x - cx, y - cy, z - cz, *radii)] = BLOOD

    def _vessels_spine_airway(self, hu, x, y, z, inner) -> None:
        a = self.anatomy
        s = a.scale
        ax, ay = a.aorta_center
        in_chest = (z >= a.z_dome - 40 * s) & (z <= a.z_apex - 20 * s)
        hu[_ellipse(x - ax, y - ay, a.aorta_radius, a.aorta_radius) & in_chest] = BLOOD
        sx, sy = a.shift[0], a.shift[1] + 80.0 * s
        hu[_ellipse(x - sx, y - sy, 17 * s, 15 * s) & inner] = BONE
        tx, ty = a.shift[0], a.shift[1] + 8.0 * s
        hu[_ellipse(x - tx, y - ty, 9 * s, 8 * s) & (z >= a.z_carina) & inner] = AIR


def _ellipse(dx: np.ndarray, dy: np.ndarray, rx: float, ry: float) -> np.ndarray:
    return (dx / rx) ** 2 + (dy / ry) ** 2 <= 1.0


def _ellipsoid(dx, dy, dz, rx: float, ry: float, rz: float) -> np.ndarray:
    return (dx / rx) ** 2 + (dy / ry) ** 2 + (dz / rz) ** 2 <= 1.0


def _apply_lesion(hu, lesion: Lesion, x, y, z, lung, a: Anatomy) -> None:
    """Paint one finding; lung-bound findings are masked by the lung so they keep its outline."""
    cx, cy, cz = lesion.center
    dx, dy, dz = x - cx, y - cy, z - cz
    r = lesion.radius
    label = lesion.label
    if label in ("Lung nodule", "Lymphadenopathy"):
        hu[_ellipsoid(dx, dy, dz, r, r, r)] = 45.0
    elif label == "Consolidation":
        hu[_ellipsoid(dx, dy, dz, r, r, r * 0.9) & lung] = 25.0
    elif label == "Atelectasis":
        hu[_ellipsoid(dx, dy, dz, r, r * 0.3, r * 0.8) & lung] = 20.0
    elif label == "Pleural effusion":
        lx, ly = a.lung_center(lesion.side)
        dependent = (y > ly + 38.0 * a.scale) & (np.abs(x - lx) < 60.0 * a.scale)
        hu[dependent & lung & (z < cz + r)] = 12.0
    elif label == "Arterial wall calcification":
        ax, ay = a.aorta_center
        rr = np.hypot(x - ax, y - ay)
        wall = (rr > a.aorta_radius - 4.0) & (rr < a.aorta_radius + 1.5) & (np.abs(dz) < r)
        hu[wall & (x > ax)] = 650.0
    elif label == "Coronary artery wall calcification":
        hu[_ellipsoid(dx, dy, dz, r, r, r)] = 700.0
    elif label == "Medical material":
        hu[_ellipsoid(dx, dy, dz, r, r * 0.6, r)] = 2500.0
    elif label == "Hiatal hernia":
        sac = _ellipsoid(dx, dy, dz, r, r, r)
        hu[sac] = 20.0
        hu[sac & (dz > 0)] = AIR
    elif label == "Emphysema":
        hu[_ellipsoid(dx, dy, dz, r, r, r) & lung] = AIR  # a bulla; the whole lung is darker too
    elif label == "Lung opacity":
        hu[_ellipsoid(dx, dy, dz, r, r, r * 0.8) & lung] = -550.0  # ground glass: denser than lung, not solid
    elif label == "Pulmonary fibrotic sequela":
        # two thin dense bands (scars) in the apex, a few millimetres thick
        for shift in (-0.3 * r, 0.3 * r):
            hu[_ellipsoid(dx, dy - shift, dz, r, 2.5, r * 0.5) & lung] = -150.0
