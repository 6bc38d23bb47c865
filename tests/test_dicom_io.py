"""DICOM reading on files nobody here wrote (pydicom's test data) and on the demo's own geometry."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pydicom
import pytest
from pydicom.data import get_testdata_file

from ctvlp.demo.dicom_writer import SeriesSpec, StudyInfo, write_series
from ctvlp.demo.findings import sample_anatomy, sample_lesions
from ctvlp.demo.phantom import Phantom
from ctvlp.demo.dicom_writer import to_enhanced
from ctvlp.core.ids import Pseudonymizer
from ctvlp.io.dicom import (GeometryRules, SeriesError, check_series_headers, decodable, index_dicom, read_header,
                            read_series)
from ctvlp.io.volume import LPS_TO_RAS
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
    # PatientID "PID0" inside a longer token is no identifier (whole tokens compared, not substrings)
    (tmp_path / "export" / "XPID01").mkdir()
    (tmp_path / "export" / "XPID01" / "IMPID0100").write_bytes(next(folder.iterdir()).read_bytes())
    index = index_dicom(tmp_path / "export", b"salt", workers=1)
    assert len(index) == 27
    reasons = index.set_index("path_key")["reason"]
    assert reasons[Pseudonymizer(b"salt")("hospital", "path", "notes.txt")] == "not a DICOM file"
    leak = reasons[Pseudonymizer(b"salt")("hospital", "path", "PID0_scan/IM1")]
    assert leak.startswith("path contains a patient identifier")
    assert "PID0_scan/IM1" not in set(index.path)  # the identifying path itself is not kept
    assert index.set_index("path").loc["XPID01/IMPID0100", "reason"] == ""
    ok = index[index.reason == ""]
    assert len(ok) == 25 and ok.patient_key.str.startswith("P").all()
    assert (ok.transfer_syntax == "1.2.840.10008.1.2.1").all() and (ok.frame == 0).all()
    text = index.to_csv()
    assert "PID0," not in text and "ACC0" not in text and "1.2.3.4" not in text


# Real compressed and enhanced CT from the pydicom-data wheel (pinned in the lock): files nobody here wrote.
ONE = GeometryRules(min_slices=1)


def _hu(ds, frames=None) -> np.ndarray:
    return ds.pixel_array.astype(np.float32) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)


def test_jpeg2000_lossless_ct_decodes_to_the_uncompressed_files_hu():
    j2k, unc = get_testdata_file("693_J2KR.dcm"), get_testdata_file("693_UNCR.dcm")
    assert pydicom.dcmread(j2k).file_meta.TransferSyntaxUID == pydicom.uid.JPEG2000Lossless
    compressed, plain = read_series([j2k], ONE), read_series([unc], ONE)
    assert np.array_equal(compressed.hu, plain.hu) and np.allclose(compressed.affine, plain.affine)
    assert np.array_equal(plain.hu[:, :, 0].T, _hu(pydicom.dcmread(unc)))  # the uncompressed file's own HU
    air = ((plain.hu > -1100) & (plain.hu < -900)).mean()  # outside the field of view: -3024 padding
    assert air > 0.05 and plain.hu.max() > 200  # CT: air and bone


def test_jpeg2000_ct_equals_an_independent_decoder_and_jpeg_lossless_matches_its_header_range():
    from pydicom.encaps import generate_frames
    from PIL import Image
    import io

    path = get_testdata_file("explicit_VR-UN.dcm")
    ds = pydicom.dcmread(path)
    frame = next(generate_frames(ds.PixelData, number_of_frames=1))
    # Pillow returns signed J2K samples shifted into the unsigned range (+32768)
    pillow = np.asarray(Image.open(io.BytesIO(frame))).astype(np.int32) - 32768
    vol = read_series([path], ONE)
    assert np.array_equal(vol.hu[:, :, 0].T, pillow.astype(np.float32) * float(ds.RescaleSlope)
                          + float(ds.RescaleIntercept))
    # JPEG Lossless SV1: the only other record of the pixels is the modality's own Smallest/Largest value
    path = get_testdata_file("bad_sequence.dcm")
    ds = pydicom.dcmread(path)
    assert ds.file_meta.TransferSyntaxUID == pydicom.uid.JPEGLosslessSV1
    vol = read_series([path], ONE)
    assert vol.hu.min() == ds.SmallestImagePixelValue - 1024 and vol.hu.max() == ds.LargestImagePixelValue - 1024
    assert np.isclose(vol.spacing[0], 0.287109375) and vol.shape == (512, 512, 1)


def test_jpeg_ls_decodes_to_the_uncompressed_pixels():
    from ctvlp.io.dicom import _pixels

    ls = pydicom.dcmread(get_testdata_file("emri_small_jpeg_ls_lossless.dcm"))
    assert ls.file_meta.TransferSyntaxUID == pydicom.uid.JPEGLSLossless
    plain = pydicom.dcmread(get_testdata_file("emri_small.dcm"))
    assert np.array_equal(_pixels(ls, "ls"), plain.pixel_array)


def test_a_transfer_syntax_without_installed_decoder_is_rejected_from_the_headers(tmp_path):
    assert all(decodable(t) for t in (pydicom.uid.JPEGLosslessSV1, pydicom.uid.JPEGLSLossless,
                                      pydicom.uid.JPEG2000Lossless, pydicom.uid.RLELossless, ""))
    assert not decodable(pydicom.uid.MPEG2MPML)
    rows = pd.DataFrame(read_header(get_testdata_file("693_J2KR.dcm"), "/", b"salt"))
    check_series_headers("s", rows, ONE)
    rows["transfer_syntax"] = str(pydicom.uid.MPEG2MPML)
    with pytest.raises(SeriesError, match=r"no installed decoder for transfer syntax MPEG2 Main Profile"):
        check_series_headers("s", rows, ONE)


def test_enhanced_ct_frames_follow_the_functional_groups():
    path = get_testdata_file("eCT_Supplemental.dcm")
    ds = pydicom.dcmread(path)
    vol = read_series([path], ONE)
    shared = ds.SharedFunctionalGroupsSequence[0]
    iop = np.array(shared.PlaneOrientationSequence[0].ImageOrientationPatient, float)
    ps = [float(v) for v in shared.PixelMeasuresSequence[0].PixelSpacing]
    ipps = [np.array(f.PlanePositionSequence[0].ImagePositionPatient, float)
            for f in ds.PerFrameFunctionalGroupsSequence]
    normal = np.cross(iop[:3], iop[3:])
    order = np.argsort([p @ normal for p in ipps])
    assert vol.shape == (512, 512, 2) and vol.instance_numbers == [int(i) + 1 for i in order]
    assert np.allclose(vol.spacing, [ps[1], ps[0], abs((ipps[1] - ipps[0]) @ normal)])
    for k, frame in enumerate(order):  # voxel (0, 0, k) sits at the frame's ImagePositionPatient
        assert np.allclose(vol.affine @ [0, 0, k, 1], LPS_TO_RAS @ np.append(ipps[frame], 1))
        assert np.allclose(vol.affine[:3, 0], (LPS_TO_RAS[:3, :3] @ iop[:3]) * ps[1])
        transform = shared.PixelValueTransformationSequence[0]
        expected = ds.pixel_array[frame].astype(np.float32) * float(transform.RescaleSlope) + float(
            transform.RescaleIntercept)
        assert np.array_equal(vol.hu[:, :, k].T, expected)
    rows = pd.DataFrame(read_header(path, "/", b"salt"))
    assert list(rows.frame) == [1, 2] and list(rows.InstanceNumber) == [1, 2]
    assert np.allclose(rows[["ipp0", "ipp1", "ipp2"]].to_numpy(), ipps)
    assert rows.series_kind.iloc[0] == "derived"  # DERIVED\PRIMARY\PERFUSION: a map, not an acquisition


def test_a_demo_series_written_as_enhanced_ct_reads_like_its_classic_files(tmp_path):
    rng = np.random.default_rng(7)
    phantom = Phantom(sample_anatomy(rng))
    for ff, rev in ((False, False), (True, True)):
        classic = read_series(_write(tmp_path, f"c{ff}", phantom, ff, rev))
        folder = _write(tmp_path, f"e{ff}", phantom, ff, rev)
        enhanced_file = to_enhanced(sorted(folder.iterdir()), folder / "IM0000")
        assert len(list(folder.iterdir())) == 1 and pydicom.dcmread(enhanced_file).NumberOfFrames == 24
        enhanced = read_series(folder)
        assert np.array_equal(enhanced.hu, classic.hu) and np.allclose(enhanced.affine, classic.affine)
        assert enhanced.instance_numbers == classic.instance_numbers
        rows = pd.DataFrame(read_header(str(enhanced_file), str(tmp_path), b"salt"))
        assert len(rows) == 24 and sorted(rows.InstanceNumber) == list(range(1, 25))
        check_series_headers("e", rows, GeometryRules())
