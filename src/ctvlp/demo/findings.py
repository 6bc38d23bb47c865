"""Random but reproducible patients: body shape and findings placed where anatomy allows them.

Fourteen of the eighteen CT-RATE abnormalities are simulated (more than twelve, as CT-RATE's own
label spread); the other four never occur in the demo (their ground truth is 0), which keeps every
label either learnable or honestly absent.
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


def _lung_lesion(label: str, radius_range: tuple[float, float], lobes: tuple[str, ...]):
    def place(rng: np.random.Generator, a: Anatomy) -> Lesion:
        side = str(rng.choice(["right", "left"]))
        lobe = str(rng.choice(lobes))
        r = float(rng.uniform(*radius_range)) * a.scale
        center = _lobe_position(rng, a, side, lobe, margin=r + 6.0)
        return Lesion(label, center, r, side, _lobe_name(side, lobe))

    return place


def _pleural_effusion(rng: np.random.Generator, a: Anatomy) -> Lesion:
    side = str(rng.choice(["right", "left"]))
    lx, ly = a.lung_center(side)
    r = float(rng.uniform(40, 55)) * a.scale
    return Lesion("Pleural effusion", (lx, ly + 60 * a.scale, a.z_dome + 20 * a.scale), r, side,
                  f"{side} pleural space")


def _emphysema(rng: np.random.Generator, a: Anatomy) -> Lesion:
    side = str(rng.choice(["right", "left"]))
    center = _lobe_position(rng, a, side, "upper", margin=16.0)
    return Lesion("Emphysema", center, 9.0 * a.scale, side, "both upper lobes", focal=False)


def _heart_finding(label: str):
    def place(rng: np.random.Generator, a: Anatomy) -> Lesion:
        return Lesion(label, a.heart_center, 48.0 * a.scale, "", "heart", focal=False)

    return place


def _aortic_calcification(rng: np.random.Generator, a: Anatomy) -> Lesion:
    ax, ay = a.aorta_center
    z = a.z_dome + float(rng.uniform(25, 100)) * a.scale
    return Lesion("Arterial wall calcification", (ax + a.aorta_radius, ay, z), 12.0 * a.scale, "",
                  "descending aorta")


def _coronary_calcification(rng: np.random.Generator, a: Anatomy) -> Lesion:
    hx, hy, hz = a.heart_center
    s = a.scale
    center = (hx + 28 * s, hy - 25 * s, hz + float(rng.uniform(0, 20)) * s)
    return Lesion("Coronary artery wall calcification", center, 4.0 * s, "left",
                  "left anterior descending artery")


def _port(rng: np.random.Generator, a: Anatomy) -> Lesion:
    s = a.scale
    z = a.z_apex - float(rng.uniform(25, 45)) * s
    center = (a.shift[0] - 72 * s, a.shift[1] - 98 * s, z)
    return Lesion("Medical material", center, 8.0 * s, "right", "right anterior chest wall")


def _lymph_node(rng: np.random.Generator, a: Anatomy) -> Lesion:
    s = a.scale
    center = (a.shift[0] - 24 * s, a.shift[1] + float(rng.uniform(-20, 0)) * s,
              a.z_carina + float(rng.uniform(-8, 12)) * s)
    return Lesion("Lymphadenopathy", center, 11.0 * s, "right", "right paratracheal region")


def _hiatal_hernia(rng: np.random.Generator, a: Anatomy) -> Lesion:
    s = a.scale
    center = (a.shift[0] + 8 * s, a.shift[1] + 30 * s, a.z_dome + 10 * s)
    return Lesion("Hiatal hernia", center, 15.0 * s, "", "oesophageal hiatus")


def _fibrotic_bands(rng: np.random.Generator, a: Anatomy) -> Lesion:
    side = str(rng.choice(["right", "left"]))
    r = float(rng.uniform(16, 22)) * a.scale
    center = _lobe_position(rng, a, side, "upper", margin=10.0)
    return Lesion("Pulmonary fibrotic sequela", center, r, side, _lobe_name(side, "upper"), focal=False)


_PLACERS = {
    "Lung nodule": _lung_lesion("Lung nodule", (5.5, 8.0), ("upper", "middle", "lower")),
    "Consolidation": _lung_lesion("Consolidation", (17.0, 22.0), ("upper", "lower")),
    "Atelectasis": _lung_lesion("Atelectasis", (20.0, 24.0), ("lower",)),
    "Pleural effusion": _pleural_effusion,
    "Emphysema": _emphysema,
    "Cardiomegaly": _heart_finding("Cardiomegaly"),
    "Pericardial effusion": _heart_finding("Pericardial effusion"),
    "Arterial wall calcification": _aortic_calcification,
    "Coronary artery wall calcification": _coronary_calcification,
    "Medical material": _port,
    "Lymphadenopathy": _lymph_node,
    "Hiatal hernia": _hiatal_hernia,
    "Lung opacity": _lung_lesion("Lung opacity", (12.0, 18.0), ("upper", "lower")),
    "Pulmonary fibrotic sequela": _fibrotic_bands,
}
