"""The demo hospital export: DICOM studies, a RIS report table and the ground truth behind both.

Everything is a pure function of the config and the seed (per-patient generators), so the
cohort is byte-identical across runs and machines, and patients can be generated in parallel.
"""

from __future__ import annotations

import json
import zlib
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from pydicom.uid import generate_uid
from tqdm import tqdm

from ctvlp.core.label_set import CTRATE_LABELS
from ctvlp.demo.dicom_writer import SeriesSpec, StudyInfo, to_enhanced, write_scout, write_series
from ctvlp.demo.findings import SIMULATED_LABELS, sample_anatomy, sample_lesions
from ctvlp.demo.phantom import Phantom
from ctvlp.demo.reports import ReportHeader, SeriesGeometry, compose_report

FIRST_NAMES = ("Hildegard", "Ottokar", "Wilhelmine", "Leopold", "Gertraud", "Casimir", "Eleonore",
               "Balduin", "Mechthild", "Theobald", "Roswitha", "Florian", "Adelheid", "Kunibert")
SURNAME_HEADS = ("Quenz", "Brak", "Oster", "Wendel", "Falk", "Zwitsch", "Morg", "Hallb")
SURNAME_TAILS = ("lmayr", "hagen", "moeller", "ricks", "enrath")
PHYSICIANS = (("Zwitscherling", "Ferdinand"), ("Amselbach", "Konstanze"), ("Gimpelmann", "Rupert"),
              ("Finkenhaeuser", "Veronika"))
INSTITUTIONS = ("Klinikum Kanarienhof", "St. Gimpel Hospital Nord")
SERIES_SCHEMES = ((2, 3), (3, 4), (201, 202), (5, 6))
VENDORS = (("SIEMENS", "B31f", "B70f"), ("GE MEDICAL SYSTEMS", "STANDARD", "LUNG"))


@dataclass(frozen=True)
class DemoConfig:
    """Sizes and rates of the synthetic hospital export (mirrors ``demo:`` in config.yaml)."""

    seed: int = 42
    n_patients: int = 40
    second_study_fraction: float = 0.3
    german_fraction: float = 0.5
    matrix: int = 128
    pixel_spacing: float = 2.8
    extent_mm: float = 200.0
    thicknesses: tuple[float, float] = (5.0, 2.5)
    scout_fraction: float = 0.4
    feet_first_fraction: float = 0.2
    reversed_numbering_fraction: float = 0.2
    prevalence: float = 0.3
    noise_hu: float = 12.0
    broken_reference_rate: float = 0.15
    uncited_report_fraction: float = 0.15
    enhanced_fraction: float = 0.0  # studies whose soft-tissue series is one Enhanced CT (multi-frame) file

    @classmethod
    def from_mapping(cls, mapping: dict) -> "DemoConfig":
        known = {k: v for k, v in mapping.items() if k in cls.__dataclass_fields__}
        if "thicknesses" in known:
            known["thicknesses"] = tuple(known["thicknesses"])
        return cls(**known)


def _surnames() -> list[str]:
    return [h + t for h in SURNAME_HEADS for t in SURNAME_TAILS]


def _patient_identity(cfg: DemoConfig, index: int, rng: np.random.Generator) -> dict:
    surname = _surnames()[index % 40] + ("" if index < 40 else str(index // 40))
    year, month, day = int(rng.integers(1935, 1990)), int(rng.integers(1, 13)), int(rng.integers(1, 29))
    return {
        "surname": surname,
        "first_name": FIRST_NAMES[int(rng.integers(len(FIRST_NAMES)))],
        "patient_id": f"PID{int(rng.integers(10**6, 10**7))}{index:02d}",
        "birth_date": f"{year:04d}{month:02d}{day:02d}",
        "sex": str(rng.choice(["F", "M"])),
    }


def _study_specs(cfg: DemoConfig, rng: np.random.Generator, z_top: float) -> list[SeriesSpec]:
    first, second = SERIES_SCHEMES[int(rng.integers(len(SERIES_SCHEMES)))]
    vendor = VENDORS[int(rng.integers(len(VENDORS)))]
    feet_first = bool(rng.random() < cfg.feet_first_fraction)
    reversed_numbering = bool(rng.random() < cfg.reversed_numbering_fraction)
    specs = []
    for number, kernel, thickness, kind in ((first, vendor[1], cfg.thicknesses[0], "Thorax"),
                                            (second, vendor[2], cfg.thicknesses[1], "Lunge")):
        specs.append(SeriesSpec(number=number, description=f"{kind} {thickness:.1f} {kernel}",
                                kernel=kernel, thickness=thickness,
                                n_slices=int(round(cfg.extent_mm / thickness)), z_top=z_top,
                                matrix=cfg.matrix, pixel_spacing=cfg.pixel_spacing,
                                feet_first=feet_first, reversed_numbering=reversed_numbering))
    return specs


def generate_patient(root: Path, cfg: DemoConfig, index: int) -> dict:
    """Write one patient's studies; return its ground-truth rows."""
    rng = np.random.default_rng([cfg.seed, index])
    who = _patient_identity(cfg, index, rng)
    anatomy = sample_anatomy(rng)
    n_studies = 2 if rng.random() < cfg.second_study_fraction else 1
    rows: dict[str, list] = {"studies": [], "lesions": [], "references": [], "series": [], "reports": []}
    for s in range(n_studies):
        _generate_study(root, cfg, index, s, who, anatomy, rng, rows)
    return rows


def _generate_study(root, cfg, index, s, who, anatomy, rng, rows) -> None:
    uid_seed = f"ctvlp-demo-{cfg.seed}-{index}-{s}"
    year = 2012 + int(rng.integers(0, 12)) + s
    study_date = f"{year:04d}{int(rng.integers(1, 13)):02d}{int(rng.integers(1, 29)):02d}"
    accession = f"ACC{int(rng.integers(10**7, 10**8))}{index:02d}{s}"
    physician = PHYSICIANS[int(rng.integers(len(PHYSICIANS)))]
    study = StudyInfo(
        patient_name=f"{who['surname']}^{who['first_name']}", patient_id=who["patient_id"],
        birth_date=who["birth_date"], sex=who["sex"],
        age=f"{year - int(who['birth_date'][:4]):03d}Y", accession=accession, study_date=study_date,
        institution=INSTITUTIONS[int(rng.integers(len(INSTITUTIONS)))],
        physician=f"{physician[0]}^{physician[1]}^^Dr.",
        study_uid=generate_uid(entropy_srcs=[uid_seed, "study"]),
        frame_of_reference_uid=generate_uid(entropy_srcs=[uid_seed, "for"]),
        manufacturer=VENDORS[int(rng.integers(len(VENDORS)))][0])
    phantom = Phantom(anatomy, sample_lesions(rng, anatomy, cfg.prevalence))
    z_top = anatomy.z_apex + float(rng.uniform(5, 12))
    specs = _study_specs(cfg, rng, z_top)
    study_dir = root / "hospital" / "DICOM" / f"PA{index:04d}" / f"ST{s:04d}"
    has_scout = bool(rng.random() < cfg.scout_fraction)
    if has_scout:
        write_scout(phantom, study, 1, z_top, z_top - cfg.extent_mm, study_dir / "SE0000", uid_seed)
    # which studies store their first (soft-tissue) series enhanced: a hash, so the random stream is unchanged
    enhanced = zlib.crc32(f"{uid_seed}-enhanced".encode()) % 1000 < cfg.enhanced_fraction * 1000
    for k, spec in enumerate(specs, start=1):
        paths = write_series(phantom, study, spec, study_dir / f"SE{k:04d}", rng, cfg.noise_hu, uid_seed)
        storage = "enhanced" if enhanced and k == 1 else "classic"
        if storage == "enhanced":
            to_enhanced(paths, study_dir / f"SE{k:04d}" / "IM0000")
        rows["series"].append({"accession": accession, "series_number": spec.number,
                               "description": spec.description, "thickness": spec.thickness,
                               "n_slices": spec.n_slices, "z_top": spec.z_top,
                               "feet_first": spec.feet_first, "reversed_numbering": spec.reversed_numbering,
                               "storage": storage,
                               "folder": str((study_dir / f"SE{k:04d}").relative_to(root))})
    lang = "de" if rng.random() < cfg.german_fraction else "en"
    header = ReportHeader(name=f"{who['first_name']} {who['surname']}", birth_date=who["birth_date"],
                          patient_id=who["patient_id"], accession=accession,
                          physician=f"Dr. {physician[1]} {physician[0]}", institution=study.institution,
                          study_date=study_date)
    absent = [label for label in SIMULATED_LABELS if label not in phantom.labels and rng.random() < 0.6]
    geometry = [SeriesGeometry(sp.number, sp.z_by_instance()) for sp in specs]
    cite = bool(rng.random() >= cfg.uncited_report_fraction)
    text, citations = compose_report(header, lang, phantom.lesions, geometry, rng, cite,
                                     cfg.broken_reference_rate, absent)
    rows["reports"].append({"AccessionNumber": accession, "PatientID": who["patient_id"],
                            "ReportDate": study_date, "ReportText": text})
    rows["studies"].append({"patient_index": index, "patient_id": who["patient_id"], "accession": accession,
                            "study_uid": study.study_uid, "language": lang, "has_scout": has_scout,
                            "n_findings": len(phantom.lesions),
                            **{label: int(label in phantom.labels) for label in CTRATE_LABELS}})
    for lesion in phantom.lesions:
        rows["lesions"].append({"accession": accession, "label": lesion.label, "x": lesion.center[0],
                                "y": lesion.center[1], "z": lesion.center[2], "radius": lesion.radius,
                                "side": lesion.side, "region": lesion.region, "focal": lesion.focal})
    for c in citations:
        rows["references"].append({"accession": accession, **asdict(c)})
    rows.setdefault("canaries", []).extend([
        who["surname"], study.patient_name, who["patient_id"], who["birth_date"],
        f"{who['birth_date'][6:8]}.{who['birth_date'][4:6]}.{who['birth_date'][:4]}",
        f"{who['birth_date'][:4]}-{who['birth_date'][4:6]}-{who['birth_date'][6:8]}",
        accession, study.institution, physician[0]])


def generate_hospital(root: Path, cfg: DemoConfig, workers: int = 1) -> dict[str, pd.DataFrame]:
    """All patients (in parallel), then the RIS export and ground-truth tables."""
    root = Path(root)
    indices = range(cfg.n_patients)
    with ProcessPoolExecutor(max_workers=max(1, workers)) as pool:
        parts = list(tqdm(pool.map(generate_patient, [root] * cfg.n_patients, [cfg] * cfg.n_patients,
                                   indices), total=cfg.n_patients, desc="demo patients"))
    tables = {key: pd.DataFrame([row for part in parts for row in part.get(key, [])])
              for key in ("studies", "lesions", "references", "series", "reports")}
    canaries = sorted({c for part in parts for c in part["canaries"]})
    reports_dir = root / "hospital" / "reports"
    reports_dir.mkdir(parents=True, exist_ok=True)
    tables["reports"].to_csv(reports_dir / "reports.csv", index=False)
    truth = root / "ground_truth"
    truth.mkdir(parents=True, exist_ok=True)
    for key in ("studies", "lesions", "references", "series"):
        tables[key].to_csv(truth / f"hospital_{key}.csv", index=False)
    (truth / "phi_canaries.json").write_text(json.dumps({"strings": canaries}, indent=1) + "\n")
    return tables
