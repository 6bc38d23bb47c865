"""CT-RATE: both public releases, with a guard against applying the rescale twice.

v2 (``train_fixed``/``valid_fixed``) holds HU with correct NIfTI headers. v1 (``train``/``valid``)
holds raw stored values under a blank header: HU = value x RescaleSlope + RescaleIntercept and
the geometry comes from the metadata CSV. Layout assumed for v1 arrays (as the metadata
describes a DICOM stack): axis 0 along the ImageOrientationPatient row direction, axis 1 along
its column direction, axis 2 along the slice normal with ZSpacing, voxel (0,0,0) at
ImagePositionPatient. A volume whose header contradicts its folder's release is rejected.
"""

from __future__ import annotations

import ast
import re
from functools import lru_cache
from importlib import resources
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd

from ctvlp.io.volume import Volume, lps_affine

RELEASE_FOLDERS = {"fixed": {"train": "train_fixed", "valid": "valid_fixed"},
                   "raw": {"train": "train", "valid": "valid"}}
METADATA_FILES = {"train": "train_metadata.csv", "valid": "validation_metadata.csv"}
NO_CHEST_FILES = {"train": "no_chest_train.txt", "valid": "no_chest_valid.txt"}
KNOWN_BROKEN = re.compile(r"^(train_1267_a_4|train_11755_a_[234]|train_3821_a_5|train_9792_a_\d+)$")
NAME = re.compile(r"^(train|valid)_(\d+)_([a-z]+)_(\d+)$")


@lru_cache(maxsize=1)
def traindev_patients() -> frozenset[str]:
    """The paper's dev split: 1,301 CT-RATE training patients (resources/ctrate_traindev_patients.txt, copied
    from lmb-freiburg/radfinder with its source in the file's header)."""
    text = resources.files("ctvlp.resources").joinpath("ctrate_traindev_patients.txt").read_text()
    ids = [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]
    if len(ids) != 1301 or len(set(ids)) != 1301:
        raise ValueError(f"ctrate_traindev_patients.txt: expected 1,301 unique patient ids, found {len(set(ids))}")
    return frozenset(ids)


def volume_name(path: Path) -> str:
    return path.name[: -len(".nii.gz")] if path.name.endswith(".nii.gz") else path.stem


def patient_of(name: str) -> str:
    """CT-RATE patient id: VolumeName.rsplit('_', 2)[0] (datasets.md)."""
    return name.rsplit("_", 2)[0]


def scan_of(name: str) -> str:
    return name.rsplit("_", 1)[0]


def looks_raw(img: nib.Nifti1Image) -> bool:
    """A v1 header is blank: identity affine and unit voxel sizes."""
    return bool(np.allclose(img.affine, np.eye(4)) and np.allclose(img.header.get_zooms()[:3], 1.0))


def load_metadata(root: Path) -> pd.DataFrame:
    frames = []
    for split, fname in METADATA_FILES.items():
        path = root / "metadata" / fname
        if path.exists():
            frames.append(pd.read_csv(path).assign(split=split))
    meta = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["VolumeName"])
    meta["name"] = meta["VolumeName"].astype(str).str.replace(".nii.gz", "", regex=False)
    return meta.set_index("name")


def _no_chest(root: Path) -> set[str]:
    names: set[str] = set()
    for fname in NO_CHEST_FILES.values():
        path = root / "metadata" / fname
        if path.exists():
            names |= {line.strip().replace(".nii.gz", "") for line in path.read_text().splitlines() if line.strip()}
    return names


class ReleaseMismatchError(ValueError):
    """The configured CT-RATE release is not the one on disk: every volume would be missed or misread."""


def detect_release(root: str | Path) -> str | None:
    """The release a CT-RATE tree holds, from its folders: ``fixed`` (v2: ``train_fixed``/``valid_fixed``),
    ``raw`` (v1: ``train``/``valid`` with NIfTI files), or None when neither is there. A tree holding both
    counts as ``fixed`` only if no v1 folder has volumes."""
    root = Path(root)
    has = {release: any(any((root / folder).rglob("*.nii.gz")) for folder in folders.values()
                        if (root / folder).is_dir())
           for release, folders in RELEASE_FOLDERS.items()}
    if has["fixed"] and has["raw"]:
        return "both"
    return next((release for release, found in has.items() if found), None)


def check_release(root: str | Path, configured: str) -> None:
    """Raise ReleaseMismatchError (one line naming both) when the tree holds another release."""
    found = detect_release(root)
    if found is not None and found != "both" and found != configured:
        folders = "/".join(RELEASE_FOLDERS[found].values())
        raise ReleaseMismatchError(f"CT-RATE release mismatch: data.ct_rate.release is '{configured}' but "
                                   f"{root} holds the '{found}' release ({folders}); set release: {found}")


def discover(root: str | Path, release: str) -> pd.DataFrame:
    """Every volume file of the configured release, with status and reason (nothing dropped)."""
    root = Path(root)
    check_release(root, release)
    meta = load_metadata(root)
    no_chest = _no_chest(root)
    rows = []
    for split, folder in RELEASE_FOLDERS[release].items():
        for path in sorted((root / folder).rglob("*.nii.gz")):
            name = volume_name(path)
            row = {"source": str(path.relative_to(root)), "name": name, "split": split,
                   "release": release, "status": "ok", "reason": ""}
            if not NAME.match(name):
                row.update(status="rejected", reason="file name is not a CT-RATE VolumeName")
            elif KNOWN_BROKEN.match(name):
                row.update(status="rejected", reason="known broken volume (CT-RATE release notes)")
            elif name in no_chest:
                row.update(status="rejected", reason="not a chest study (no_chest list)")
            elif release == "raw" and name not in meta.index:
                row.update(status="rejected", reason="no metadata row (v1 needs its rescale and geometry)")
            rows.append(row)
    return pd.DataFrame(rows, columns=["source", "name", "split", "release", "status", "reason"])


def count_files(root: str | Path, release: str) -> int:
    """Volume files of the release on disk (the QC summary's input count, taken apart from ``discover``)."""
    return sum(1 for folder in RELEASE_FOLDERS[release].values() for _ in (Path(root) / folder).rglob("*.nii.gz"))


def _parse_list(text: str) -> list[float]:
    return [float(v) for v in ast.literal_eval(str(text))]


def load_volume(root: str | Path, source: str, release: str, meta: pd.DataFrame | None = None) -> Volume:
    """HU volume and RAS affine; raises ValueError naming the file when the release guard trips."""
    root = Path(root)
    path = root / source
    img = nib.load(path)
    raw = looks_raw(img)
    if release == "fixed":
        if raw:
            raise ValueError(f"{source}: blank (v1 raw) header inside a v2 release folder: mixed releases")
        return Volume(hu=np.asarray(img.dataobj, dtype=np.float32), affine=img.affine.copy())
    if not raw:
        raise ValueError(f"{source}: v2 (HU) header inside a v1 release folder: mixed releases; "
                         "applying the rescale would count it twice")
    meta = load_metadata(root) if meta is None else meta
    row = meta.loc[volume_name(path)]
    stored = np.asarray(img.dataobj, dtype=np.float32)
    hu = stored * float(row.RescaleSlope) + float(row.RescaleIntercept)
    iop = np.array(_parse_list(row.ImageOrientationPatient))
    xy = _parse_list(row.XYSpacing)
    normal = np.cross(iop[:3], iop[3:])
    steps = np.column_stack([iop[:3] * xy[1], iop[3:] * xy[0], normal * float(row.ZSpacing)])
    return Volume(hu=hu, affine=lps_affine(np.array(_parse_list(row.ImagePositionPatient)), steps))
