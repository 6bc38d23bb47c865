"""Preprocessing equals a plain MONAI transform chain (the reference semantics) on real NIfTI files."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.transforms import Compose, EnsureChannelFirstd, LoadImaged, Orientationd, ScaleIntensityRanged, Spacingd
from scipy.ndimage import gaussian_filter

from ctvlp.io.volume import Volume
from ctvlp.preprocess import transform
from ctvlp.preprocess.transform import PreprocessSpec, preprocess, resample_to_ras, scale_intensity

ORIENTATIONS = {
    "LPS": np.diag([-0.7, -0.7, 1.25, 1.0]),
    "RPI": np.diag([0.7, -0.7, -1.25, 1.0]),
    "permuted": np.array([[0, 0.7, 0, 0], [-0.7, 0, 0, 0], [0, 0, 1.25, 0], [0, 0, 0, 1.0]]),
}


@pytest.fixture(scope="module")
def smooth_volume():
    rng = np.random.default_rng(0)
    return (gaussian_filter(rng.normal(0, 300, (60, 50, 30)).astype(np.float32), 2) * 8).astype(np.int16)


@pytest.mark.parametrize("name", sorted(ORIENTATIONS))
def test_resampling_matches_monai_orientation_spacing_chain(tmp_path, smooth_volume, name):
    affine = ORIENTATIONS[name].copy()
    affine[:3, 3] = [100, 120, -50]
    path = tmp_path / "v.nii.gz"
    nib.save(nib.Nifti1Image(smooth_volume, affine), path)
    chain = Compose([LoadImaged("img", image_only=True), EnsureChannelFirstd("img"),
                     Orientationd("img", axcodes="RAS"), Spacingd("img", pixdim=(3, 3, 6), mode="bilinear"),
                     ScaleIntensityRanged("img", -1000, 1000, 0, 1, clip=True)])
    reference = chain({"img": str(path)})["img"]
    img = nib.load(path)
    ours = resample_to_ras(Volume(np.asarray(img.dataobj, dtype=np.float32), img.affine), (3, 3, 6))
    assert ours.hu.shape == tuple(reference.shape[1:])
    assert np.allclose(ours.affine, reference.affine.numpy(), atol=1e-4)
    assert np.abs(scale_intensity(ours.hu, (-1000, 1000)) - reference[0].numpy()).max() < 1e-4
    assert nib.orientations.aff2axcodes(ours.affine) == ("R", "A", "S")


def test_separable_and_full_grid_paths_agree(smooth_volume):
    affine = ORIENTATIONS["RPI"]
    vol = Volume(smooth_volume.astype(np.float32), affine)
    shape, out_affine = transform.ras_grid(vol, (2.0, 1.5, 4.0))
    to_source = np.linalg.inv(affine) @ out_affine
    source = torch.from_numpy(vol.hu)
    a = transform._separable(source, to_source, shape)
    b = transform._full_grid(source, to_source, shape)
    assert a.shape == b.shape == shape
    assert torch.allclose(a, b, atol=1e-2)


def test_preprocess_output_range_and_window_multiples(smooth_volume):
    spec = PreprocessSpec((3.0, 3.0, 6.0), (-1000.0, 1000.0), (8, 8, 4))
    data, affine = preprocess(Volume(smooth_volume.astype(np.float32), ORIENTATIONS["LPS"]), spec)
    assert data.min() >= 0 and data.max() <= 1
    assert all(n % w == 0 for n, w in zip(data.shape, spec.window_voxels))
    assert np.allclose(np.sqrt((affine[:3, :3] ** 2).sum(0)), spec.spacing_mm)


def test_inline_features_equal_the_cache_then_features_path(tmp_path):
    """keep_volumes: false extracts the same window features in the preprocessing job as the window_features
    rule computes from the cache, and leaves no volume file behind."""
    import yaml
    from safetensors.numpy import load_file

    from conftest import REPO
    from ctvlp.features.window import extract_features, feature_file
    from ctvlp.models.window_encoder import WindowEncoderSpec, build_window_encoder
    from ctvlp.features.cache import cache_file, write_cached
    from ctvlp.features.inline import InlineFeatures

    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    config["pretrain"]["enabled"] = False  # a seeded random encoder: no pretraining stage in this unit test
    model = build_window_encoder(WindowEncoderSpec.from_config(config), 0).eval()
    data = np.random.default_rng(1).random((64, 64, 16)).astype(np.float32)
    write_cached(cache_file(tmp_path / "cache", "Vab12"), data)
    extract_features(model, cache_file(tmp_path / "cache", "Vab12"), feature_file(tmp_path / "two_jobs", "Vab12"))
    inline = InlineFeatures(model, tmp_path / "one_job", scratch=tmp_path / "scratch_is_tmp")
    (tmp_path / "scratch_is_tmp").mkdir()
    inline("Vab12", data)
    a, b = load_file(str(feature_file(tmp_path / "two_jobs", "Vab12"))), load_file(str(feature_file(tmp_path / "one_job", "Vab12")))
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
    assert list((tmp_path / "scratch_is_tmp").iterdir()) == []
    import pandas as pd

    table = inline.table(pd.DataFrame({"volume_id": ["Vab12", "Vcd34"], "reason": ["", "constant volume"]}))
    assert list(table.status) == ["ok", "skipped"] and table.reason.iloc[1] == "constant volume"
