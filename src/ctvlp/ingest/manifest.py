"""The manifest: one row per candidate volume from every source, pseudonymized and split by patient.

Splits are decided per patient, never per volume: official splits for public data, a
patient-disjoint dev split carved from CT-RATE train (checkpoint selection, as the paper did),
and a deterministic salted-hash split for hospital patients. ``check_split_leaks`` stops the
run when any patient appears in two splits.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

import pandas as pd

from ctvlp.core.ids import Pseudonymizer
from ctvlp.io import ctrate, radchestct

MANIFEST_COLUMNS = ["volume_id", "scan_id", "patient_id", "dataset", "split", "source_kind", "source",
                    "accession_key", "frame_key", "series_number", "candidates", "candidate_frames",
                    "candidate_numbers", "shard"]


class SplitLeakError(ValueError):
    """A patient in two splits: evaluation numbers would be optimistic, so the run stops."""


@dataclass(frozen=True)
class SplitSpec:
    """Config ``splits``: hospital train/dev/test fractions and the CT-RATE dev fraction."""

    hospital: tuple[float, float, float] = (0.7, 0.1, 0.2)
    ctrate_dev_fraction: float = 0.065
    ctrate_dev: str = "fraction"  # or "radfinder": the paper's fixed 1,301-patient list (ctrate.traindev_patients)
    radchestct: str = "official"  # Summary_3630.csv's Set_Assigned, or "test": every scan held out


def _unit(salt: bytes, key: str) -> float:
    """A salted, uniform number in [0, 1) per key: reproducible and not guessable without the salt."""
    digest = hmac.new(salt, f"split|{key}".encode(), hashlib.sha256).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def hospital_rows(series: pd.DataFrame, salt: bytes, spec: SplitSpec) -> pd.DataFrame:
    """One row per study with a candidate series: the first choice is ``source``, and ``candidates``
    (with their frames of reference and series numbers) is the order preprocessing falls back in."""
    train, dev, _ = spec.hospital
    rows = []
    ranked = series[series["rank"] >= 0].sort_values(["study_key", "rank"]) if len(series) else series
    for _, part in ranked.groupby("study_key", sort=True):
        s = part.iloc[0]
        u = _unit(salt, s.patient_key)
        split = "train" if u < train else ("dev" if u < train + dev else "test")
        rows.append({"volume_id": "V" + s.series_key[1:], "scan_id": "C" + s.study_key[1:],
                     "patient_id": s.patient_key, "dataset": "hospital", "split": split,
                     "source_kind": "dicom_series", "source": s.series_key, "accession_key": s.accession_key,
                     "frame_key": s.frame_key, "series_number": s.series_number,
                     "candidates": list(part.series_key), "candidate_frames": list(part.frame_key),
                     "candidate_numbers": [float(n) for n in part.series_number]})
    return pd.DataFrame(rows)


def ctrate_rows(found: pd.DataFrame, pseudo: Pseudonymizer, salt: bytes, spec: SplitSpec) -> pd.DataFrame:
    ok = found[found.status == "ok"]
    train_patients = sorted({ctrate.patient_of(n) for n in ok[ok.split == "train"].name},
                            key=lambda p: _unit(salt, p))
    n_dev = round(spec.ctrate_dev_fraction * len(train_patients))
    dev = set(train_patients[: max(1, n_dev) if train_patients else 0])
    if spec.ctrate_dev == "radfinder":  # the paper's traindev; everything else of train is its trainnodev
        dev = set(ctrate.traindev_patients())
    rows = []
    for _, v in ok.iterrows():
        patient = ctrate.patient_of(v["name"])
        split = "test" if v.split == "valid" else ("dev" if patient in dev else "train")
        rows.append({"volume_id": pseudo("ct_rate", "volume", v["name"]),
                     "scan_id": pseudo("ct_rate", "scan", ctrate.scan_of(v["name"])),
                     "patient_id": pseudo("ct_rate", "patient", patient), "dataset": "ct_rate",
                     "split": split, "source_kind": f"nifti_{v.release}", "source": v.source})
    return pd.DataFrame(rows)


def radchest_rows(found: pd.DataFrame, pseudo: Pseudonymizer, spec: SplitSpec = SplitSpec()) -> pd.DataFrame:
    ok = found[found.status == "ok"]
    rows = [{"volume_id": pseudo("rad_chestct", "volume", v["name"]),
             "scan_id": pseudo("rad_chestct", "scan", v["name"]),
             "patient_id": pseudo("rad_chestct", "patient", v.patient), "dataset": "rad_chestct",
             "split": radchestct.split_of(v.set, spec.radchestct), "source_kind": "npz", "source": v.source}
            for _, v in ok.iterrows()]
    return pd.DataFrame(rows)


def study_rows(dataset: str, found: pd.DataFrame, pseudo: Pseudonymizer, patient_of) -> pd.DataFrame:
    """Merlin and INSPECT: one volume per study, the official split as the adapter mapped it, by patient key."""
    ok = found[found.status == "ok"]
    rows = [{"volume_id": pseudo(dataset, "volume", v["name"]), "scan_id": pseudo(dataset, "scan", v["name"]),
             "patient_id": pseudo(dataset, "patient", patient_of(v)), "dataset": dataset, "split": v.split,
             "source_kind": f"{dataset}_nifti", "source": v.source} for _, v in ok.iterrows()]
    return pd.DataFrame(rows)


def check_split_leaks(manifest: pd.DataFrame) -> None:
    """Raise SplitLeakError naming the first pseudonymous patient found in more than one split."""
    splits = manifest.groupby("patient_id")["split"].unique()
    leaks = splits[splits.map(len) > 1]
    if len(leaks):
        pid = leaks.index[0]
        raise SplitLeakError(f"patient {pid} appears in splits {', '.join(sorted(leaks.iloc[0]))} "
                             f"({len(leaks)} leaking patient(s) in all)")


def assign_shards(manifest: pd.DataFrame, shards: int) -> pd.DataFrame:
    """Round-robin over volume ids in sorted order: balanced and independent of input order."""
    manifest = manifest.sort_values(["dataset", "volume_id"]).reset_index(drop=True)
    manifest["shard"] = manifest.index % max(1, shards)
    return manifest


def build_manifest(parts: list[pd.DataFrame], shards: int) -> pd.DataFrame:
    frames = [p for p in parts if len(p)]
    manifest = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=MANIFEST_COLUMNS)
    for column in MANIFEST_COLUMNS:
        if column not in manifest:
            manifest[column] = None
    check_split_leaks(manifest)
    return assign_shards(manifest, shards)[MANIFEST_COLUMNS]
