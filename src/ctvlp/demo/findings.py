"""Random but reproducible patients: body shape and findings placed where anatomy allows them.

Fourteen of the eighteen CT-RATE abnormalities are simulated (more than twelve, as CT-RATE's own
label spread); the other four never occur in the demo (their ground truth is 0), which keeps every
label either learnable or honestly absent.

Size, density and position are drawn per patient. Every finding spans at least ``MIN_SPAN_VOXELS``
voxels along each axis at the demo's resampled spacing (preprocess.spacing_mm, 3 x 3 x 6 mm): its
smallest extent is at least ``MIN_EXTENT_MM`` (x, y, z), so no encoder is asked to see a finding
that the preprocessing averages away (tests/demo/test_demo_findings.py measures it).
"""

from __future__ import annotations

import numpy as np

from ctvlp.demo.phantom import Anatomy, Lesion

SIMULATED_LABELS: tuple[str, ...] = (
    "Lung nodule",
    "Consolidation",
    "Atelectasis",
    "Pleural effusion",
    "Emphysema",
    "Cardiomegaly",
    "Pericardial effusion",
    "Arterial wall calcification",
    "Coronary artery wall calcification",
    "Medical material",
    "Lymphadenopathy",
    "Hiatal hernia",
    "Lung opacity",
    "Pulmonary fibrotic sequela",
)


DEMO_SPACING_MM = (3.0, 3.0, 6.0)  # config/config.yaml preprocess.spacing_mm
MIN_SPAN_VOXELS = 2
MIN_EXTENT_MM = tuple(MIN_SPAN_VOXELS * s for s in DEMO_SPACING_MM)


def sample_anatomy(rng: np.random.Generator, scale: float = 1.0) -> Anatomy:
    """A body a little different per patient so the model cannot memorise one phantom."""
    s = scale * float(rng.uniform(0.92, 1.06))
    shift = (float(rng.uniform(-6, 6)) * scale, float(rng.uniform(-6, 6)) * scale)
    return Anatomy(scale=s, shift=shift, z_dome=float(rng.uniform(-90, -70)) * scale)


def sample_lesions(rng: np.random.Generator, anatomy: Anatomy, prevalence: float) -> tuple[Lesion, ...]:
    """Each simulated label is present with ``prevalence``; at most one lesion per label."""
    lesions = []
    for label in SIMULATED_LABELS:
        if rng.random() < prevalence:
            lesions.append(_PLACERS[label](rng, anatomy))
    return tuple(lesions)


def _lobe_position(rng: np.random.Generator, a: Anatomy, side: str, lobe: str, margin: float):
    """A point inside the named lobe, ``margin`` mm away from the lung border."""
    s = a.scale
    cx, cy = a.lung_center(side)
    rx, ry = a.lung_radii
    z_ranges = {
        "upper": (a.z_dome + 95 * s, a.z_apex - 30 * s),
        "middle": (a.z_dome + 55 * s, a.z_dome + 90 * s),
        "lower": (a.z_dome + 15 * s, a.z_dome + 55 * s),
    }
    y_ranges = {"upper": (-0.4, 0.3), "middle": (-0.6, -0.25), "lower": (0.1, 0.55)}
    z = rng.uniform(*z_ranges[lobe])
    fy = rng.uniform(*y_ranges[lobe])
    x = cx + rng.uniform(-0.35, 0.35) * max(rx - margin, 1.0)
    y = cy + fy * max(ry - margin, 1.0)
    return (float(x), float(y), float(z))


def _lobe_name(side: str, lobe: str) -> str:
    if side == "left" and lobe == "middle":
        return "lingula"
    return f"{side} {lobe} lobe"


def _lung_lesion(label: str, radius_range: tuple[float, float], lobes: tuple[str, ...],
                 hu_range: tuple[float, float]):
    def place(rng: np.random.Generator, a: Anatomy) -> Lesion:
        side = str(rng.choice(["right", "left"]))
        lobe = str(rng.choice(lobes))
        r = float(rng.uniform(*radius_range)) * a.scale
        center = _lobe_position(rng, a, side, lobe, margin=r + 6.0)
        return Lesion(label, center, r, side, _lobe_name(side, lobe), hu=float(rng.uniform(*hu_range)))

    return place


def _pleural_effusion(rng: np.random.Generator, a: Anatomy) -> Lesion:
    side = str(rng.choice(["right", "left"]))
    lx, ly = a.lung_center(side)
    r = float(rng.uniform(40, 55)) * a.scale
    return Lesion("Pleural effusion", (lx, ly + 60 * a.scale, a.z_dome + 20 * a.scale), r, side,
                  f"{side} pleural space", hu=float(rng.uniform(5, 20)))


def _emphysema(rng: np.random.Generator, a: Anatomy) -> Lesion:
    side = str(rng.choice(["right", "left"]))
    r = float(rng.uniform(10, 16)) * a.scale
    center = _lobe_position(rng, a, side, "upper", margin=r + 6.0)
    # the bulla's radius; the whole lung is darker, by a density drawn per patient
    return Lesion("Emphysema", center, r, side, "both upper lobes", focal=False, hu=float(rng.uniform(-965, -935)))


def _cardiomegaly(rng: np.random.Generator, a: Anatomy) -> Lesion:
    """The radius is the enlarged heart's (48 mm x scale x growth): the phantom reads the growth from it."""
    grow = float(rng.uniform(1.22, 1.4))
    return Lesion("Cardiomegaly", a.heart_center, 48.0 * a.scale * grow, "", "heart", focal=False)


def _pericardial_effusion(rng: np.random.Generator, a: Anatomy) -> Lesion:
    return Lesion("Pericardial effusion", a.heart_center, 48.0 * a.scale, "", "heart", focal=False,
                  hu=float(rng.uniform(0, 18)), thickness=float(rng.uniform(12, 18)))


def _aortic_calcification(rng: np.random.Generator, a: Anatomy) -> Lesion:
    ax, ay = a.aorta_center
    z = a.z_dome + float(rng.uniform(35, 90)) * a.scale
    # radius: half the plaque's length along the aorta; thickness across the wall (>= 2 voxels in x)
    return Lesion("Arterial wall calcification", (ax + a.aorta_radius, ay, z), float(rng.uniform(16, 28)) * a.scale,
                  "", "descending aorta", hu=float(rng.uniform(450, 900)), thickness=float(rng.uniform(7, 10)))


def _coronary_calcification(rng: np.random.Generator, a: Anatomy) -> Lesion:
    hx, hy, hz = a.heart_center
    s = a.scale
    center = (hx + 28 * s, hy - 25 * s, hz + float(rng.uniform(0, 20)) * s)
    return Lesion("Coronary artery wall calcification", center, float(rng.uniform(7, 10)) * s, "left",
                  "left anterior descending artery", hu=float(rng.uniform(500, 900)))


def _port(rng: np.random.Generator, a: Anatomy) -> Lesion:
    s = a.scale
    z = a.z_apex - float(rng.uniform(25, 45)) * s
    center = (a.shift[0] - 72 * s, a.shift[1] - 98 * s, z)
    return Lesion("Medical material", center, float(rng.uniform(10, 14)) * s, "right", "right anterior chest wall",
                  hu=float(rng.uniform(2000, 3000)))


def _lymph_node(rng: np.random.Generator, a: Anatomy) -> Lesion:
    s = a.scale
    center = (a.shift[0] - 24 * s, a.shift[1] + float(rng.uniform(-20, 0)) * s,
              a.z_carina + float(rng.uniform(-8, 12)) * s)
    return Lesion("Lymphadenopathy", center, float(rng.uniform(12, 17)) * s, "right", "right paratracheal region",
                  hu=float(rng.uniform(30, 65)))


def _hiatal_hernia(rng: np.random.Generator, a: Anatomy) -> Lesion:
    s = a.scale
    center = (a.shift[0] + 8 * s, a.shift[1] + 30 * s, a.z_dome + 10 * s)
    return Lesion("Hiatal hernia", center, float(rng.uniform(17, 24)) * s, "", "oesophageal hiatus",
                  hu=float(rng.uniform(10, 35)))


def _fibrotic_bands(rng: np.random.Generator, a: Anatomy) -> Lesion:
    side = str(rng.choice(["right", "left"]))
    r = float(rng.uniform(20, 28)) * a.scale
    center = _lobe_position(rng, a, side, "upper", margin=10.0)
    return Lesion("Pulmonary fibrotic sequela", center, r, side, _lobe_name(side, "upper"), focal=False,
                  hu=float(rng.uniform(-250, -80)), thickness=float(rng.uniform(7, 10)))


_PLACERS = {
    "Lung nodule": _lung_lesion("Lung nodule", (8.0, 13.0), ("upper", "middle", "lower"), (30.0, 70.0)),
    "Consolidation": _lung_lesion("Consolidation", (20.0, 27.0), ("upper", "lower"), (15.0, 45.0)),
    "Atelectasis": _lung_lesion("Atelectasis", (22.0, 28.0), ("lower",), (5.0, 35.0)),
    "Pleural effusion": _pleural_effusion,
    "Emphysema": _emphysema,
    "Cardiomegaly": _cardiomegaly,
    "Pericardial effusion": _pericardial_effusion,
    "Arterial wall calcification": _aortic_calcification,
    "Coronary artery wall calcification": _coronary_calcification,
    "Medical material": _port,
    "Lymphadenopathy": _lymph_node,
    "Hiatal hernia": _hiatal_hernia,
    "Lung opacity": _lung_lesion("Lung opacity", (16.0, 24.0), ("upper", "lower"), (-650.0, -450.0)),
    "Pulmonary fibrotic sequela": _fibrotic_bands,
}
