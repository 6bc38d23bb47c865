"""Write phantom studies as real DICOM CT series with the headers a hospital PACS exports.

Geometry is the point: ImagePositionPatient/ImageOrientationPatient describe exactly where the
phantom was sampled, head-first or feet-first, with instance numbers in either direction, so a
reader that sorts by file name or InstanceNumber instead of geometry gets the anatomy wrong.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydicom import dcmread
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

from ctvlp.demo.phantom import Phantom

INTERCEPT = -1024.0


@dataclass(frozen=True)
class StudyInfo:
    """Study-level header values (PHI canaries included) shared by all series of a study."""

    patient_name: str
    patient_id: str
    birth_date: str
    sex: str
    age: str
    accession: str
    study_date: str
    institution: str
    physician: str
    study_uid: str
    frame_of_reference_uid: str
    manufacturer: str


@dataclass(frozen=True)
class SeriesSpec:
    """One axial series: where its slices are and how the scanner numbered and oriented them."""

    number: int
    description: str
    kernel: str
    thickness: float
    n_slices: int
    z_top: float
    matrix: int
    pixel_spacing: float
    feet_first: bool = False
    reversed_numbering: bool = False

    def slice_z(self) -> np.ndarray:
        """z of each slice in acquisition order (head to feet, or feet to head when feet-first)."""
        z = self.z_top - self.thickness * np.arange(self.n_slices)
        return z[::-1] if self.feet_first else z

    def instance_numbers(self) -> np.ndarray:
        numbers = np.arange(1, self.n_slices + 1)
        return numbers[::-1] if self.reversed_numbering else numbers

    def z_by_instance(self) -> dict[int, float]:
        return {int(n): float(z) for n, z in zip(self.instance_numbers(), self.slice_z())}

    def orientation(self) -> list[float]:
        row = [-1.0, 0.0, 0.0] if self.feet_first else [1.0, 0.0, 0.0]
        return row + [0.0, 1.0, 0.0]

    def first_pixel_xy(self) -> tuple[float, float]:
        half = (self.matrix - 1) * self.pixel_spacing / 2.0
        return (half if self.feet_first else -half, -half)


def _base_dataset(study: StudyInfo, sop_uid: str, sop_class: str) -> Dataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = generate_uid(entropy_srcs=["ctvlp-demo-implementation"])
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = sop_class, sop_uid
    ds.Modality = "CT"
    ds.PatientName, ds.PatientID = study.patient_name, study.patient_id
    ds.PatientBirthDate, ds.PatientSex, ds.PatientAge = study.birth_date, study.sex, study.age
    ds.AccessionNumber, ds.StudyID = study.accession, study.accession[-6:]
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = study.study_date
    ds.StudyTime = ds.SeriesTime = ds.ContentTime = "101500"
    ds.StudyDescription = "CT Thorax"
    ds.InstitutionName, ds.ReferringPhysicianName = study.institution, study.physician
    ds.Manufacturer = study.manufacturer
    ds.StudyInstanceUID, ds.FrameOfReferenceUID = study.study_uid, study.frame_of_reference_uid
    ds.BodyPartExamined = "CHEST"
    ds.KVP = 120
    return ds


def _pixel_module(ds: Dataset, hu: np.ndarray) -> None:
    stored = np.clip(np.rint(hu - INTERCEPT), 0, 4095).astype(np.uint16)
    ds.Rows, ds.Columns = stored.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = INTERCEPT, 1.0, "HU"
    ds.WindowCenter, ds.WindowWidth = 40, 400
    ds.PixelData = stored.tobytes()


def write_series(phantom: Phantom, study: StudyInfo, spec: SeriesSpec, out_dir: Path,
                 rng: np.random.Generator, noise_hu: float, uid_seed: str) -> list[Path]:
    """Sample the phantom on the series grid and write one file per slice (names shuffled)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    series_uid = generate_uid(entropy_srcs=[uid_seed, "series", str(spec.number)])
    x0, y0 = spec.first_pixel_xy()
    orient = spec.orientation()
    cols = x0 + orient[0] * spec.pixel_spacing * np.arange(spec.matrix)
    rows = y0 + spec.pixel_spacing * np.arange(spec.matrix)
    yy, xx = np.meshgrid(rows, cols, indexing="ij")  # pixel_array[r, c]
    file_order = rng.permutation(spec.n_slices)
    paths = []
    for k, (z, number) in enumerate(zip(spec.slice_z(), spec.instance_numbers())):
        hu = phantom.render(xx, yy, np.full_like(xx, z)) + rng.normal(0, noise_hu, xx.shape)
        sop_uid = generate_uid(entropy_srcs=[uid_seed, "sop", str(spec.number), str(int(number))])
        ds = _base_dataset(study, sop_uid, CTImageStorage)
        ds.SeriesInstanceUID, ds.SeriesNumber = series_uid, spec.number
        ds.SeriesDescription, ds.ConvolutionKernel = spec.description, spec.kernel
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.PatientPosition = "FFS" if spec.feet_first else "HFS"
        ds.InstanceNumber = int(number)
        ds.ImagePositionPatient = [round(x0, 4), round(y0, 4), round(float(z), 4)]
        ds.ImageOrientationPatient = orient
        ds.SliceLocation = round(float(z), 4)
        ds.PixelSpacing = [spec.pixel_spacing, spec.pixel_spacing]
        ds.SliceThickness = spec.thickness
        _pixel_module(ds, hu)
        path = out_dir / f"IM{int(file_order[k]):04d}"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def write_scout(phantom: Phantom, study: StudyInfo, number: int, z_top: float, z_bottom: float,
                out_dir: Path, uid_seed: str) -> Path:
    """A coronal localizer (a projection radiograph of the phantom), as scanners export it."""
    out_dir.mkdir(parents=True, exist_ok=True)
    spacing = 2.5
    z = np.arange(z_top + 20, z_bottom - 20, -spacing)
    x = np.arange(-180, 180, spacing)
    y = np.linspace(-130, 130, 24)
    zz, xx, yy = np.meshgrid(z, x, y, indexing="ij")
    projection = phantom.render(xx, yy, zz).mean(axis=2)
    sop_uid = generate_uid(entropy_srcs=[uid_seed, "scout"])
    ds = _base_dataset(study, sop_uid, CTImageStorage)
    ds.SeriesInstanceUID = generate_uid(entropy_srcs=[uid_seed, "scout-series"])
    ds.SeriesNumber, ds.SeriesDescription = number, "Topogram 0.6 T20f"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "LOCALIZER"]
    ds.PatientPosition, ds.InstanceNumber = "HFS", 1
    ds.ImagePositionPatient = [float(x[0]), 0.0, float(z[0])]
    ds.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 0.0, -1.0]
    ds.PixelSpacing, ds.SliceThickness = [spacing, spacing], 1.0
    _pixel_module(ds, projection)
    path = out_dir / "IM0000"
    ds.save_as(path, enforce_file_format=True)
    return path



def to_enhanced(paths: list[Path], out_path: Path) -> Path:
    """Rewrite a written classic series as one Enhanced CT Image (multi-frame) file, as newer scanners
    export it: frames in InstanceNumber order, per-frame PlanePosition and FrameContent, shared
    PlaneOrientation, PixelMeasures, PixelValueTransformation and CT Image Frame Type. The classic files
    are removed, so the study holds the same scan in the other storage form."""
    from pydicom.sequence import Sequence
    from pydicom.uid import EnhancedCTImageStorage

    slices = sorted((dcmread(p) for p in paths), key=lambda d: int(d.InstanceNumber))
    first = slices[0]
    sop_uid = generate_uid(entropy_srcs=[str(first.SeriesInstanceUID), "enhanced"])
    ds = Dataset()
    ds.file_meta = copy.deepcopy(first.file_meta)
    ds.file_meta.MediaStorageSOPClassUID = EnhancedCTImageStorage
    ds.file_meta.MediaStorageSOPInstanceUID = sop_uid
    for element in first:
        if element.keyword not in ("ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing",
                                   "SliceThickness", "SliceLocation", "RescaleIntercept", "RescaleSlope",
                                   "RescaleType", "WindowCenter", "WindowWidth", "PixelData", "InstanceNumber"):
            ds.add(copy.deepcopy(element))
    ds.SOPClassUID, ds.SOPInstanceUID = EnhancedCTImageStorage, sop_uid
    ds.InstanceNumber, ds.NumberOfFrames = 1, len(slices)
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL", "NONE"]

    def item(**values) -> Dataset:
        out = Dataset()
        for key, value in values.items():
            setattr(out, key, value)
        return out

    shared = item(
        PlaneOrientationSequence=Sequence([item(ImageOrientationPatient=list(first.ImageOrientationPatient))]),
        PixelMeasuresSequence=Sequence([item(PixelSpacing=list(first.PixelSpacing),
                                             SliceThickness=first.SliceThickness)]),
        PixelValueTransformationSequence=Sequence([item(RescaleIntercept=first.RescaleIntercept,
                                                        RescaleSlope=first.RescaleSlope, RescaleType="HU")]),
        CTImageFrameTypeSequence=Sequence([item(FrameType=["ORIGINAL", "PRIMARY", "AXIAL", "NONE"])]))
    ds.SharedFunctionalGroupsSequence = Sequence([shared])
    ds.PerFrameFunctionalGroupsSequence = Sequence([
        item(PlanePositionSequence=Sequence([item(ImagePositionPatient=list(s.ImagePositionPatient))]),
             FrameContentSequence=Sequence([item(InStackPositionNumber=i + 1, StackID="1")]))
        for i, s in enumerate(slices)])
    ds.PixelData = b"".join(s.PixelData for s in slices)
    for p in paths:
        Path(p).unlink()
    out_path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(out_path, enforce_file_format=True)
    return out_path
