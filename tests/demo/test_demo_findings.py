"""Every planted finding is visible at the demo's own resolution (issue 25): sampled at the resampled spacing
(preprocess.spacing_mm of config/config.yaml), each finding changes a run of at least two voxels along every axis,
in every one of many drawn patients (sizes, densities and positions vary per patient). Unmarked and fast (seconds):
it needs no demo outputs, so the main suite runs it too."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import yaml

from ctvlp.demo.findings import MIN_SPAN_VOXELS, SIMULATED_LABELS, _PLACERS, DEMO_SPACING_MM, sample_anatomy
from ctvlp.demo.phantom import Phantom

REPO = Path(__file__).resolve().parents[2]


def longest_runs(mask: np.ndarray) -> tuple[int, ...]:
    """Per axis, the longest run of consecutive True voxels along that axis."""
    runs = []
    for axis in range(3):
        m = np.moveaxis(mask, axis, -1).reshape(-1, mask.shape[axis]).astype(int)
        best, run = 0, np.zeros(m.shape[0], dtype=int)
        for k in range(m.shape[1]):
            run = (run + 1) * m[:, k]
            best = max(best, int(run.max()))
        runs.append(best)
    return tuple(runs)


def finding_mask(anatomy, lesion, spacing, offset, half_mm: float = 90.0) -> np.ndarray:
    """Voxels (centres on a grid of ``spacing`` shifted by ``offset``) whose HU the finding changes by > 20."""
    axes = [np.arange(c - half_mm + o, c + half_mm, s) for c, o, s in zip(lesion.center, offset, spacing)]
    x, y, z = np.meshgrid(*axes, indexing="ij")
    with_it = Phantom(anatomy, (lesion,)).render(x, y, z)
    without = Phantom(anatomy).render(x, y, z)
    return np.abs(with_it - without) > 20.0


def test_the_demo_spacing_is_the_configured_one():
    spacing = yaml.safe_load((REPO / "config" / "config.yaml").read_text())["preprocess"]["spacing_mm"]
    assert tuple(spacing) == DEMO_SPACING_MM


@pytest.mark.parametrize("label", SIMULATED_LABELS)
def test_every_finding_spans_two_voxels_per_axis_at_the_demo_spacing(label):
    spans, sizes = [], set()
    for n in range(12):
        rng = np.random.default_rng([25, n])
        anatomy = sample_anatomy(rng)
        lesion = _PLACERS[label](rng, anatomy)
        sizes.add(round(lesion.radius, 1))
        offset = rng.uniform(0, 1, 3) * np.array(DEMO_SPACING_MM)
        spans.append(longest_runs(finding_mask(anatomy, lesion, DEMO_SPACING_MM, offset)))
    assert min(min(s) for s in spans) >= MIN_SPAN_VOXELS, (label, spans)
    assert len(sizes) > 1 or label in ("Pericardial effusion",), "sizes are drawn per patient"


def test_densities_vary_per_patient_and_stay_in_their_tissue_class():
    rng = np.random.default_rng(3)
    anatomy = sample_anatomy(rng)
    nodules = [_PLACERS["Lung nodule"](rng, anatomy) for _ in range(20)]
    assert len({round(n.hu) for n in nodules}) > 5 and all(20 <= n.hu <= 80 for n in nodules)
    gg = [_PLACERS["Lung opacity"](rng, anatomy).hu for _ in range(20)]
    assert all(-700 <= v <= -400 for v in gg)  # ground glass: denser than lung, not solid
    # a lesion without its own density paints the label's default
    plain = replace(nodules[0], hu=None)
    c = plain.center
    assert Phantom(anatomy, (plain,)).render(*(np.array([v]) for v in c))[0] == 45.0
