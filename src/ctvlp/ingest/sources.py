"""Ingestion: every configured source into one manifest, one hospital series table and one QC table."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import pandas as pd

from ctvlp.core.ids import Pseudonymizer
from ctvlp.ingest import qc as qc_lib
from ctvlp.ingest.manifest import SplitSpec, build_manifest, ctrate_rows, hospital_rows, radchest_rows, study_rows
from ctvlp.io import ctrate, inspect_ct, merlin, radchestct
from ctvlp.io.dicom import GeometryRules
from ctvlp.io.selection import SelectionRules, classify_series, select_per_study


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
                                     prefer_thickness_mm=ing["prefer_thickness_mm"],
                                     allow_series_kinds=tuple(ing.get("allow_series_kinds", ()))),
            splits=SplitSpec(hospital=tuple(spl["hospital"]), ctrate_dev_fraction=spl["ctrate_dev_fraction"],
                             ctrate_dev=spl.get("ctrate_dev", "fraction"),
                             radchestct=spl.get("radchestct", "official")),
            shards=config["preprocess"]["shards"])


def ingest(sources: dict, index: pd.DataFrame | Iterable[pd.DataFrame] | None, salt: bytes, settings: IngestSettings,
           files_walked: int | None = None) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, dict[str, int]]:
    """(manifest, hospital series table, QC table, input counts) for all configured sources.

    The input counts come from the inputs themselves (files walked in the export, volume files on disk,
    listed scans), not from the QC table, so the QC summary's "lost" column can show a dropped input.
    A configured source with no accepted volume stops the run (EmptySourceError with the reason counts)."""
    pseudo = Pseudonymizer(salt)
    parts, qc_rows, series, inputs = [], [], pd.DataFrame(), {}
    if "hospital" in sources and index is not None:
        # the index whole (small exports, tests) or one bucket at a time (index_store.iter_buckets): every
        # study lies in one bucket, so classification and selection never need two buckets at once
        chunks, tables, walked = ([index] if isinstance(index, pd.DataFrame) else index), [], 0
        for chunk in chunks:
            part = select_per_study(classify_series(chunk, settings.geometry), settings.selection)
            qc_rows += qc_lib.hospital_qc(chunk, part)
            tables.append(part)
            walked += int(chunk["path_key"].nunique())
        series = pd.concat([t for t in tables if len(t)], ignore_index=True) if any(len(t) for t in tables) else (
            pd.DataFrame())
        parts.append(hospital_rows(series, salt, settings.splits))
        inputs["hospital"] = int(files_walked if files_walked is not None else walked)
    if "ct_rate" in sources:
        found = ctrate.discover(sources["ct_rate"]["root"], sources["ct_rate"]["release"])
        rows = ctrate_rows(found, pseudo, salt, settings.splits)
        parts.append(rows)
        qc_rows += qc_lib.public_qc("ct_rate", found, dict(zip(rows.get("source", []), rows.get("volume_id", []))))
        inputs["ct_rate"] = ctrate.count_files(sources["ct_rate"]["root"], sources["ct_rate"]["release"])
    if "rad_chestct" in sources:
        found = radchestct.discover(sources["rad_chestct"]["root"])
        rows = radchest_rows(found, pseudo, settings.splits)
        parts.append(rows)
        qc_rows += qc_lib.public_qc("rad_chestct", found,
                                    dict(zip(rows.get("source", []), rows.get("volume_id", []))))
        inputs["rad_chestct"] = radchestct.count_inputs(sources["rad_chestct"]["root"])
    for name, adapter, patient_of in (("merlin", merlin, lambda v: merlin.patient_key(v["name"])),
                                      ("inspect", inspect_ct, lambda v: v["impression_id"])):
        if name in sources:
            found = adapter.discover(sources[name]["root"])
            rows = study_rows(name, found, pseudo, patient_of)
            parts.append(rows)
            qc_rows += qc_lib.public_qc(name, found, dict(zip(rows.get("source", []), rows.get("volume_id", []))))
            inputs[name] = len(found)
    qc = qc_lib.build_qc(qc_rows)
    qc_lib.check_sources_yield(qc, [s for s in ("hospital", "ct_rate", "rad_chestct", "merlin", "inspect") if s in sources])
    return build_manifest(parts, settings.shards), series, qc, inputs
