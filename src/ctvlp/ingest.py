"""Ingestion: every configured source into one manifest, one hospital series table and one QC table."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from ctvlp import qc as qc_lib
from ctvlp.ids import Pseudonymizer
from ctvlp.io import ctrate, inspect_ct, merlin, radchestct
from ctvlp.io.dicom import GeometryRules
from ctvlp.io.selection import SelectionRules, classify_series, select_per_study
from ctvlp.manifest import SplitSpec, build_manifest, ctrate_rows, hospital_rows, radchest_rows, study_rows


@dataclass(frozen=True)
class IngestSettings:
    geometry: GeometryRules
    selection: SelectionRules
    splits: SplitSpec
    shards: int

    @classmethod
    def from_config(cls, config: dict) -> "IngestSettings":
        ing, spl = config["ingest"], config["splits"]
        return cls(
            geometry=GeometryRules(axial_tolerance_deg=ing["axial_tolerance_deg"],
                                   tilt_tolerance_deg=ing["tilt_tolerance_deg"], gap_factor=ing["gap_factor"],
                                   spacing_tolerance=ing["spacing_tolerance"]),
            selection=SelectionRules(min_slices=ing["min_slices"], prefer_kernels=tuple(ing["prefer_kernels"]),
                                     prefer_thickness_mm=ing["prefer_thickness_mm"]),
            splits=SplitSpec(hospital=tuple(spl["hospital"]), ctrate_dev_fraction=spl["ctrate_dev_fraction"],
                             ctrate_dev=spl.get("ctrate_dev", "fraction")),
            shards=config["preprocess"]["shards"])


def ingest(sources: dict, index: pd.DataFrame | None, salt: bytes,
           settings: IngestSettings) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(manifest, hospital series table, QC table) for all configured sources."""
    pseudo = Pseudonymizer(salt)
    parts, qc_rows, series = [], [], pd.DataFrame()
    if "hospital" in sources and index is not None:
        series = select_per_study(classify_series(index, settings.geometry), settings.selection)
        parts.append(hospital_rows(series, salt, settings.splits))
        qc_rows += qc_lib.hospital_qc(index, series)
    if "ct_rate" in sources:
        found = ctrate.discover(sources["ct_rate"]["root"], sources["ct_rate"]["release"])
        rows = ctrate_rows(found, pseudo, salt, settings.splits)
        parts.append(rows)
        qc_rows += qc_lib.public_qc("ct_rate", found, dict(zip(rows.get("source", []), rows.get("volume_id", []))))
    if "rad_chestct" in sources:
        found = radchestct.discover(sources["rad_chestct"]["root"])
        rows = radchest_rows(found, pseudo)
        parts.append(rows)
        qc_rows += qc_lib.public_qc("rad_chestct", found,
                                    dict(zip(rows.get("source", []), rows.get("volume_id", []))))
    for name, adapter, patient_of in (("merlin", merlin, lambda v: merlin.patient_key(v["name"])),
                                      ("inspect", inspect_ct, lambda v: v["impression_id"])):
        if name in sources:
            found = adapter.discover(sources[name]["root"])
            rows = study_rows(name, found, pseudo, patient_of)
            parts.append(rows)
            qc_rows += qc_lib.public_qc(name, found, dict(zip(rows.get("source", []), rows.get("volume_id", []))))
    return build_manifest(parts, settings.shards), series, qc_lib.build_qc(qc_rows)
