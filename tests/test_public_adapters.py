"""CT-RATE (both releases, version guard) and Rad-ChestCT adapters against the demo minis."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from ctvlp.io import ctrate, radchestct
from ctvlp.preprocess.transform import to_ras


def test_ctrate_v1_with_metadata_equals_v2(cohort_root):
    root = cohort_root / "ct_rate" / "dataset"
    raw = ctrate.discover(root, "raw")
    assert len(raw) >= 2 and (raw.status == "ok").all()
    for source in raw.source:
        v1 = to_ras(ctrate.load_volume(root, source, "raw"))
        v2 = to_ras(ctrate.load_volume(root, source.replace("valid/", "valid_fixed/", 1), "fixed"))
        assert np.allclose(v1.affine, v2.affine, atol=1e-4)
        assert np.array_equal(v1.hu, v2.hu)


def test_ctrate_release_guard_refuses_mixing(cohort_root, tmp_path):
    root = cohort_root / "ct_rate" / "dataset"
    raw_source = ctrate.discover(root, "raw").source.iloc[0]
    with pytest.raises(ValueError, match="blank \\(v1 raw\\) header inside a v2 release folder"):
        ctrate.load_volume(root, raw_source, "fixed")
    fixed_source = raw_source.replace("valid/", "valid_fixed/", 1)
    with pytest.raises(ValueError, match="mixed releases; applying the rescale would count it twice"):
        ctrate.load_volume(root, fixed_source, "raw")


def test_ctrate_discover_rejects_known_broken_and_non_chest(cohort_root):
    found = ctrate.discover(cohort_root / "ct_rate" / "dataset", "fixed").set_index("name")
    assert found.loc["train_1267_a_4", "reason"] == "known broken volume (CT-RATE release notes)"
    assert (found.reason == "not a chest study (no_chest list)").sum() == 1
    assert (found.status == "ok").sum() == len(found) - 2


def test_radchestct_axis_order_and_spacing(cohort_root):
    root = cohort_root / "rad_chestct"
    found = radchestct.discover(root)
    vol = radchestct.load_volume(root, found.source.iloc[0])
    with np.load(root / found.source.iloc[0]) as npz:
        ct = npz["ct"]
    assert vol.shape == (ct.shape[2], ct.shape[1], ct.shape[0])
    assert np.allclose(vol.spacing, 0.8)
    assert nib.orientations.aff2axcodes(vol.affine) == ("L", "P", "I")
    assert vol.hu[5, 7, 9] == ct[9, 7, 5]


def test_ctrate_v1_volume_without_metadata_row_is_rejected(cohort_root, tmp_path):
    """A v1 (raw) volume needs its rescale and geometry from the metadata CSV: without a row it is quarantined."""
    import shutil

    root = tmp_path / "dataset"
    shutil.copytree(cohort_root / "ct_rate" / "dataset", root)
    meta = root / "metadata" / "validation_metadata.csv"
    lines = meta.read_text().splitlines()
    first = ctrate.discover(root, "raw").name.iloc[0]
    meta.write_text("\n".join(line for line in lines if not line.startswith(f"{first}.nii.gz,")) + "\n")
    found = ctrate.discover(root, "raw").set_index("name")
    assert found.loc[first, "status"] == "rejected"
    assert found.loc[first, "reason"] == "no metadata row (v1 needs its rescale and geometry)"
    assert (found.drop(index=first).status == "ok").all()


# Hardening on small trees written here (no demo run needed).
def _nifti(path, data, affine):
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(data, affine), path)
    return path


def test_ctrate_release_is_detected_and_a_mismatch_refused_in_one_line(tmp_path):
    root = tmp_path / "dataset"
    _nifti(root / "train" / "train_1" / "train_1_a" / "train_1_a_1.nii.gz", np.zeros((4, 4, 4), np.int16), np.eye(4))
    assert ctrate.detect_release(root) == "raw"
    with pytest.raises(ctrate.ReleaseMismatchError) as err:
        ctrate.discover(root, "fixed")
    message = str(err.value)
    assert "\n" not in message and "release is 'fixed'" in message and "holds the 'raw' release" in message
    ctrate.check_release(root, "raw")  # the matching release passes


def test_truncated_or_malformed_public_files_are_quarantined_per_file(tmp_path):
    import pandas as pd

    from ctvlp.preprocess.shard import process_shard
    from ctvlp.preprocess.transform import PreprocessSpec

    root = tmp_path / "dataset"
    affine = np.diag([1.5, 1.5, 3.0, 1.0])
    data = np.random.default_rng(0).normal(0, 300, (24, 24, 12)).astype(np.float32)
    good = _nifti(root / "train_fixed" / "train_1" / "train_1_a" / "train_1_a_1.nii.gz", data, affine)
    cut = _nifti(root / "train_fixed" / "train_2" / "train_2_a" / "train_2_a_1.nii.gz", data, affine)
    cut.write_bytes(cut.read_bytes()[: len(cut.read_bytes()) // 2])
    rc = tmp_path / "rad"
    rc.mkdir()
    np.savez_compressed(rc / "trn1.npz", ct=np.zeros((8, 8, 8), np.int16) + np.arange(8, dtype=np.int16))
    (rc / "trn2.npz").write_bytes((rc / "trn1.npz").read_bytes()[:100])
    manifest = pd.DataFrame([
        {"volume_id": f"V{i}", "source_kind": kind, "source": src, "shard": 0}
        for i, (kind, src) in enumerate([("nifti_fixed", str(good.relative_to(root))),
                                         ("nifti_fixed", str(cut.relative_to(root))),
                                         ("npz", "trn1.npz"), ("npz", "trn2.npz")])])
    sources = {"ct_rate": {"root": str(root), "release": "fixed"}, "rad_chestct": {"root": str(rc)}}
    results = process_shard(manifest, 0, sources, None, PreprocessSpec((3.0, 3.0, 6.0), (-1000, 1000), (4, 4, 2)),
                            tmp_path / "cache", None).set_index("volume_id")
    assert list(results.status) == ["ok", "rejected", "ok", "rejected"]
    assert results.loc["V1", "reason"].startswith("truncated or malformed file (EOFError")
    assert results.loc["V3", "reason"].startswith("truncated or malformed file (BadZipFile")
    assert str(tmp_path) not in "".join(results.reason)  # no absolute path in a reason


def test_a_truncated_cache_file_is_refused_with_its_name(tmp_path):
    from ctvlp.features.cache import CacheError, read_cached, write_cached

    path = tmp_path / "V1.npy"
    write_cached(path, np.ones((8, 8, 8)))
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(CacheError, match=r"V1\.npy: truncated or malformed cache file"):
        read_cached(path)


def test_radchestct_keeps_its_official_split(tmp_path):
    import pandas as pd

    from ctvlp.core.ids import Pseudonymizer
    from ctvlp.ingest.manifest import SplitSpec, radchest_rows

    rows = [("trn1", "M1", "imgtrain"), ("val1", "M2", "imgvalid"), ("tst1", "M3", "imgtest")]
    pd.DataFrame(rows, columns=["NoteAcc_DEID", "MRN_DEID", "Set_Assigned"]).to_csv(tmp_path / "Summary_3630.csv",
                                                                                   index=False)
    for acc, _, _ in rows:
        np.savez_compressed(tmp_path / f"{acc}.npz", ct=np.zeros((2, 2, 2), np.int16))
    found = radchestct.discover(tmp_path)
    official = radchest_rows(found, Pseudonymizer(b"s"), SplitSpec(radchestct="official"))
    assert list(official.split) == ["train", "dev", "test"]
    assert set(radchest_rows(found, Pseudonymizer(b"s"), SplitSpec(radchestct="test")).split) == {"test"}
    assert radchestct.count_inputs(tmp_path) == 3
