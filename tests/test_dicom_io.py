"""DICOM reading on files nobody here wrote (pydicom's test data) and on the demo's own geometry."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file

from ctvlp.demo.dicom_writer import SeriesSpec, StudyInfo, write_series
from ctvlp.demo.findings import sample_anatomy, sample_lesions
from ctvlp.demo.phantom import Phantom
from ctvlp.io.dicom import GeometryRules, SeriesError, index_dicom, read_series
from ctvlp.preprocess.transform import to_ras

TESTDATA = Path(pydicom.__file__).parent / "data" / "test_files" / "dicomdirtests"


def test_ct5n_reads_with_shape_spacing_hu_and_orientation():
    vol = read_series(TESTDATA / "98892001" / "CT5N")
    assert vol.shape == (16, 16, 5)
    assert np.allclose(vol.spacing, [0.488281, 0.488281, 2.5], atol=1e-5)
    assert nib.orientations.aff2axcodes(vol.affine) == ("L", "P", "S")
    assert -900 < vol.hu.min() < -850 and 50 < vol.hu.max() < 120
    # sorted along the normal: z increases with k, instance numbers therefore decrease
    assert vol.instance_numbers == [10, 9, 8, 7, 6]
    assert np.isclose(vol.affine[2, 3], -1.2375)
    # voxel (0, 0, 0) is the first pixel of the lowest slice, in RAS
    assert np.allclose(vol.affine[:3, 3], [72.199997, 143.0, -1.2375])


def test_ct5n_pixels_transposed_to_x_y_z():
    files = sorted((TESTDATA / "98892001" / "CT5N").iterdir())
    vol = read_series(files)
    lowest = min((pydicom.dcmread(f) for f in files), key=lambda d: float(d.ImagePositionPatient[2]))
    expected = lowest.pixel_array.astype(float) * float(lowest.RescaleSlope) + float(lowest.RescaleIntercept)
    assert np.array_equal(vol.hu[:, :, 0], expected.T)


def test_gap_and_scouts_are_rejected_with_reasons():
    with pytest.raises(SeriesError, match=r"missing slices \(gap of 202\.50 mm"):
        read_series(TESTDATA / "77654033" / "CT2")
    with pytest.raises(SeriesError, match="localizer/scout"):
        read_series(TESTDATA / "98892001" / "CT2N")


def test_ct_small_hu_conversion():
    path = get_testdata_file("CT_small.dcm")
    ds = pydicom.dcmread(path)
    vol = read_series([path], GeometryRules(min_slices=1))
    assert vol.shape == (128, 128, 1)
    assert np.array_equal(vol.hu[:, :, 0].T, ds.pixel_array.astype(np.float32) * 1.0 - 1024.0)
    assert vol.hu.min() == 128 - 1024 and vol.hu.max() == 2191 - 1024


def _write(tmp: Path, name: str, phantom: Phantom, feet_first: bool, reversed_numbering: bool) -> Path:
    study = StudyInfo("Test^Pat", "PID0", "19700101", "F", "050Y", "ACC0", "20200101", "Inst", "Doc",
                      "1.2.3", "1.2.3.4", "SIEMENS")
    spec = SeriesSpec(2, "Thorax", "B31f", 5.0, 24, 60.0, 48, 7.0, feet_first, reversed_numbering)
    write_series(phantom, study, spec, tmp / name, np.random.default_rng(0), 0.0, name)
    return tmp / name


def test_feet_first_and_reversed_numbering_give_the_same_ras_volume(tmp_path):
    rng = np.random.default_rng(3)
    anatomy = sample_anatomy(rng)
    phantom = Phantom(anatomy, sample_lesions(rng, anatomy, 1.0))
    head_first = to_ras(read_series(_write(tmp_path, "hfs", phantom, False, False)))
    for ff, rev in ((True, False), (False, True), (True, True)):
        other = to_ras(read_series(_write(tmp_path, f"v{ff}{rev}", phantom, ff, rev)))
        assert np.allclose(other.affine, head_first.affine, atol=1e-4)
        assert np.array_equal(other.hu, head_first.hu)


def test_bad_series_reasons(tmp_path):
    rng = np.random.default_rng(5)
    phantom = Phantom(sample_anatomy(rng))
    folder = _write(tmp_path, "dup", phantom, False, False)
    files = sorted(folder.iterdir())
    ds = pydicom.dcmread(files[1])
    ds.ImagePositionPatient = pydicom.dcmread(files[0]).ImagePositionPatient
    ds.save_as(files[1])
    with pytest.raises(SeriesError, match="duplicate slice positions"):
        read_series(folder)
    folder = _write(tmp_path, "tilt", phantom, False, False)
    for f in folder.iterdir():
        ds = pydicom.dcmread(f)
        ds.ImagePositionPatient = [ds.ImagePositionPatient[0], float(ds.ImagePositionPatient[2]) * 0.3,
                                   ds.ImagePositionPatient[2]]
        ds.save_as(f)
    with pytest.raises(SeriesError, match="gantry tilt or sheared stack"):
        read_series(folder)
    folder = _write(tmp_path, "mr", phantom, False, False)
    f = sorted(folder.iterdir())[3]
    ds = pydicom.dcmread(f)
    ds.Modality = "MR"
    ds.save_as(f)
    with pytest.raises(SeriesError, match="modality CT, MR, expected CT"):
        read_series(folder)


def test_index_pseudonymizes_and_flags_unreadable_and_identifying_paths(tmp_path):
    rng = np.random.default_rng(5)
    folder = _write(tmp_path / "export", "SE1", Phantom(sample_anatomy(rng)), False, False)
    (tmp_path / "export" / "notes.txt").write_text("not dicom")
    leaky = tmp_path / "export" / "PID0_scan"
    leaky.mkdir()
    (leaky / "IM1").write_bytes(next(folder.iterdir()).read_bytes())
    index = index_dicom(tmp_path / "export", b"salt", workers=1)
    assert len(index) == 26
    reasons = index.set_index("path")["reason"]
    assert reasons["notes.txt"] == "not a DICOM file"
    assert reasons["PID0_scan/IM1"].startswith("path contains a patient identifier")
    ok = index[index.reason == ""]
    assert len(ok) == 24 and ok.patient_key.str.startswith("P").all()
    text = index.to_csv()
    assert "PID0," not in text and "ACC0" not in text and "1.2.3.4" not in text
