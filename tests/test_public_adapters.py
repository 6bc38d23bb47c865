"""CT-RATE (both releases, version guard) and Rad-ChestCT adapters against the demo minis."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from ctvlp.io import ctrate, radchestct
from ctvlp.preprocess.transform import to_ras


def test_ctrate_v1_with_metadata_equals_v2(demo_root):
    root = demo_root / "ct_rate" / "dataset"
    raw = ctrate.discover(root, "raw")
    assert len(raw) >= 2 and (raw.status == "ok").all()
    for source in raw.source:
        v1 = to_ras(ctrate.load_volume(root, source, "raw"))
        v2 = to_ras(ctrate.load_volume(root, source.replace("valid/", "valid_fixed/", 1), "fixed"))
        assert np.allclose(v1.affine, v2.affine, atol=1e-4)
        assert np.array_equal(v1.hu, v2.hu)


def test_ctrate_release_guard_refuses_mixing(demo_root, tmp_path):
    root = demo_root / "ct_rate" / "dataset"
    raw_source = ctrate.discover(root, "raw").source.iloc[0]
    with pytest.raises(ValueError, match="blank \\(v1 raw\\) header inside a v2 release folder"):
        ctrate.load_volume(root, raw_source, "fixed")
    fixed_source = raw_source.replace("valid/", "valid_fixed/", 1)
    with pytest.raises(ValueError, match="mixed releases; applying the rescale would count it twice"):
        ctrate.load_volume(root, fixed_source, "raw")


def test_ctrate_discover_rejects_known_broken_and_non_chest(demo_root):
    found = ctrate.discover(demo_root / "ct_rate" / "dataset", "fixed").set_index("name")
    assert found.loc["train_1267_a_4", "reason"] == "known broken volume (CT-RATE release notes)"
    assert (found.reason == "not a chest study (no_chest list)").sum() == 1
    assert (found.status == "ok").sum() == len(found) - 2


def test_radchestct_axis_order_and_spacing(demo_root):
    root = demo_root / "rad_chestct"
    found = radchestct.discover(root)
    vol = radchestct.load_volume(root, found.source.iloc[0])
    with np.load(root / found.source.iloc[0]) as npz:
        ct = npz["ct"]
    assert vol.shape == (ct.shape[2], ct.shape[1], ct.shape[0])
    assert np.allclose(vol.spacing, 0.8)
    assert nib.orientations.aff2axcodes(vol.affine) == ("L", "P", "I")
    assert vol.hu[5, 7, 9] == ct[9, 7, 5]


def test_ctrate_v1_volume_without_metadata_row_is_rejected(demo_root, tmp_path):
    """A v1 (raw) volume needs its rescale and geometry from the metadata CSV: without a row it is quarantined."""
    import shutil

    root = tmp_path / "dataset"
    shutil.copytree(demo_root / "ct_rate" / "dataset", root)
    meta = root / "metadata" / "validation_metadata.csv"
    lines = meta.read_text().splitlines()
    first = ctrate.discover(root, "raw").name.iloc[0]
    meta.write_text("\n".join(line for line in lines if not line.startswith(f"{first}.nii.gz,")) + "\n")
    found = ctrate.discover(root, "raw").set_index("name")
    assert found.loc[first, "status"] == "rejected"
    assert found.loc[first, "reason"] == "no metadata row (v1 needs its rescale and geometry)"
    assert (found.drop(index=first).status == "ok").all()
