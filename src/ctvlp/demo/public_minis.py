"""Tiny CT-RATE, Rad-ChestCT, Merlin and INSPECT look-alikes in their exact public file formats.

They are drawn by the same phantom as the hospital export, so the public adapters, the version
guard (v1 raw vs v2 fixed CT-RATE) and the evaluation protocols run end to end on the demo.
Voxel layouts are documented where the adapters read them (``ctvlp.io.ctrate``/``radchestct``).
"""

from __future__ import annotations

from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd

from ctvlp.core.label_set import CTRATE_LABELS
from ctvlp.demo.findings import sample_anatomy, sample_lesions
from ctvlp.demo.phantom import Phantom
from ctvlp.demo.reports import EN_NEGATIVE, positive_sentence

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
CTRATE_INTERCEPT = -1024.0
KNOWN_BROKEN_DEMO_NAME = "train_1267_a_4"  # a name on the public known-broken list (datasets.md)

# Rad-ChestCT abnormality (and location) columns the demo findings map to.
RADCHEST_SOURCE = {
    "Lung nodule": ("nodule", "right_lung"),
    "Consolidation": ("consolidation", "right_lung"),
    "Atelectasis": ("atelectasis", "left_lung"),
    "Pleural effusion": ("pleural_effusion", "right_lung"),
    "Emphysema": ("emphysema", "lung"),
    "Cardiomegaly": ("cardiomegaly", "heart"),
    "Pericardial effusion": ("pericardial_effusion", "heart"),
    "Arterial wall calcification": ("calcification", "aorta"),
    "Coronary artery wall calcification": ("calcification", "heart"),
    "Medical material": ("catheter_or_port", "mediastinum"),
    "Lymphadenopathy": ("lymphadenopathy", "mediastinum"),
    "Hiatal hernia": ("hernia", "stomach"),
    "Lung opacity": ("opacity", "right_lung"),
    "Pulmonary fibrotic sequela": ("scarring", "lung"),
}
RADCHEST_ABNORMALITIES = ("nodule", "nodulegr1cm", "opacity", "scarring", "bronchial_wall_thickening",
                          "septal_thickening", "hernia", "calcification", "emphysema", "atelectasis",
                          "consolidation", "bronchiectasis", "cardiomegaly", "pericardial_effusion",
                          "pleural_effusion", "lymphadenopathy", "catheter_or_port", "pacemaker_or_defib",
                          "mass", "cyst")
RADCHEST_PREFIX = {"imgtrain": "trn", "imgvalid": "val", "imgtest": "tst"}
RADCHEST_LOCATIONS = ("lung", "right_lung", "left_lung", "heart", "aorta", "mediastinum", "stomach")


@dataclass(frozen=True)
class MiniConfig:
    seed: int = 42
    ctrate_train_patients: int = 8
    ctrate_valid_patients: int = 6
    ctrate_matrix: int = 128
    ctrate_xy_spacing: float = 2.8
    ctrate_z_spacing: float = 4.0
    ctrate_slices: int = 50
    radchest_scans: int = 6
    merlin_scans: int = 0        # 0 = no Merlin/INSPECT minis (the demo config asks for them)
    inspect_scans: int = 0
    rate_labels: bool = False    # RATE question label files for the CT-RATE, Merlin and INSPECT minis
    noise_hu: float = 12.0
    prevalence: float = 0.35


def sample_volume(phantom: Phantom, origin_lps, steps_lps, shape, rng, noise_hu: float) -> np.ndarray:
    """Sample on a grid whose voxel (i, j, k) sits at origin + i*steps[0] + j*steps[1] + k*steps[2]."""
    idx = np.meshgrid(*(np.arange(n, dtype=np.float32) for n in shape), indexing="ij")
    pos = [origin_lps[a] + sum(idx[d] * steps_lps[d][a] for d in range(3)) for a in range(3)]
    return phantom.render(*pos) + rng.normal(0, noise_hu, shape).astype(np.float32)


def _ctrate_text(phantom: Phantom, rng: np.random.Generator) -> dict[str, str]:
    findings = [positive_sentence(lesion, "en", rng) + "." for lesion in phantom.lesions]
    findings += [EN_NEGATIVE[label] for label in EN_NEGATIVE if label not in phantom.labels
                 and rng.random() < 0.6]
    impression = ("; ".join(lesion.label.lower() for lesion in phantom.lesions) + "."
                  if phantom.lesions else "No acute pathology.")
    return {
        "ClinicalInformation_EN": "Not given." if rng.random() < 0.4 else "Dyspnea.",
        "Technique_EN": "Non-contrast axial images of the chest were obtained.",
        "Findings_EN": " ".join(findings[i] for i in rng.permutation(len(findings))),
        "Impressions_EN": impression,
    }


def _ctrate_scan(cfg: MiniConfig, rng: np.random.Generator):
    anatomy = sample_anatomy(rng)
    phantom = Phantom(anatomy, sample_lesions(rng, anatomy, cfg.prevalence))
    half = (cfg.ctrate_matrix - 1) * cfg.ctrate_xy_spacing / 2
    z0 = anatomy.z_apex + 8 - cfg.ctrate_z_spacing * (cfg.ctrate_slices - 1)  # k = 0 at the bottom
    origin = (-half, -half, z0)
    return phantom, origin


def _ctrate_recon(cfg: MiniConfig, phantom: Phantom, origin, recon: int, rng):
    dz = cfg.ctrate_z_spacing * (1 if recon == 1 else 1.25)
    n = cfg.ctrate_slices if recon == 1 else int(cfg.ctrate_slices / 1.25)
    steps = ((cfg.ctrate_xy_spacing, 0, 0), (0, cfg.ctrate_xy_spacing, 0), (0, 0, dz))
    shape = (cfg.ctrate_matrix, cfg.ctrate_matrix, n)
    hu = sample_volume(phantom, origin, steps, shape, rng, cfg.noise_hu)
    lps = np.eye(4)
    lps[:3, :3] = np.array(steps).T
    lps[:3, 3] = origin
    return np.clip(np.rint(hu), -1024, 3071).astype(np.int16), LPS_TO_RAS @ lps, dz


def _metadata_row(name: str, origin, dz: float, shape, cfg: MiniConfig, sex: str, age: int) -> dict:
    sp = cfg.ctrate_xy_spacing
    return {
        "VolumeName": f"{name}.nii.gz", "Manufacturer": "SIEMENS", "SeriesDescription": "Thorax 1.0 Br40",
        "PatientSex": sex, "PatientAge": f"{age:03d}Y",
        "ImagePositionPatient": f"[{origin[0]:g}, {origin[1]:g}, {origin[2]:g}]",
        "ImageOrientationPatient": "[1, 0, 0, 0, 1, 0]", "Rows": shape[1], "Columns": shape[0],
        "XYSpacing": f"[{sp:g}, {sp:g}]", "RescaleIntercept": CTRATE_INTERCEPT, "RescaleSlope": 1.0,
        "NumberofSlices": shape[2], "ZSpacing": dz, "StudyDate": "20200101",
    }


def generate_ctrate(root: Path, cfg: MiniConfig, workers: int = 1) -> pd.DataFrame:
    """CT-RATE v2 (``*_fixed``) volumes plus v1 raw copies of two validation volumes; patients in parallel
    (each has its own seeded generator, so the bytes do not depend on ``workers``)."""
    ds = Path(root) / "dataset"
    jobs = [(split, n_patients, offset, p) for split, n_patients, offset in
            (("train", cfg.ctrate_train_patients, 0), ("valid", cfg.ctrate_valid_patients, 1000))
            for p in range(1, n_patients + 1)]
    with ProcessPoolExecutor(max_workers=max(1, workers)) as pool:
        parts = list(pool.map(_ctrate_patient, [ds] * len(jobs), [cfg] * len(jobs), *zip(*jobs)))
    table = pd.DataFrame([row for part in parts for row in part])
    _write_ctrate_tables(ds, table)
    return table


def _ctrate_patient(ds: Path, cfg: MiniConfig, split: str, n_patients: int, offset: int, p: int) -> list[dict]:
    rng = np.random.default_rng([cfg.seed, 7, offset + p])
    pid = 1267 if (split == "train" and p == n_patients) else p
    sex, age = str(rng.choice(["F", "M"])), int(rng.integers(30, 85))
    rows = []
    for scan in "ab"[: 1 + int(rng.random() < 0.3)]:
        phantom, origin = _ctrate_scan(cfg, rng)
        text = _ctrate_text(phantom, rng)
        labels = {label: int(label in phantom.labels) for label in CTRATE_LABELS}
        recons = (1, 4) if pid == 1267 else (1, 2)
        for recon in recons:
            name = f"{split}_{pid}_{scan}_{recon}"
            hu, affine, dz = _ctrate_recon(cfg, phantom, origin, recon, rng)
            folder = ds / f"{split}_fixed" / f"{split}_{pid}" / f"{split}_{pid}_{scan}"
            folder.mkdir(parents=True, exist_ok=True)
            nib.save(nib.Nifti1Image(hu, affine), folder / f"{name}.nii.gz")
            if split == "valid" and p <= 2 and recon == 1:
                _write_v1(ds, split, pid, scan, name, hu)
            rows.append({"split": split, "name": name, **text, **labels,
                         **{"_meta_" + k: v for k, v in
                            _metadata_row(name, origin, dz, hu.shape, cfg, sex, age).items()}})
    return rows


def _write_v1(ds: Path, split: str, pid: int, scan: str, name: str, hu: np.ndarray) -> None:
    """v1: raw stored values (HU - intercept) under a blank header (identity affine)."""
    folder = ds / split / f"{split}_{pid}" / f"{split}_{pid}_{scan}"
    folder.mkdir(parents=True, exist_ok=True)
    raw = (hu.astype(np.int32) - int(CTRATE_INTERCEPT)).astype(np.int16)
    nib.save(nib.Nifti1Image(raw, np.eye(4)), folder / f"{name}.nii.gz")


def _write_ctrate_tables(ds: Path, table: pd.DataFrame) -> None:
    files = {"train": ("train_reports.csv", "train_predicted_labels.csv", "train_metadata.csv"),
             "valid": ("validation_reports.csv", "valid_predicted_labels.csv", "validation_metadata.csv")}
    for folder in ("radiology_text_reports", "multi_abnormality_labels", "metadata"):
        (ds / folder).mkdir(parents=True, exist_ok=True)
    for split, (reports, labels, metadata) in files.items():
        part = table[table["split"] == split].copy()
        part["VolumeName"] = part["name"] + ".nii.gz"
        part[["VolumeName", "ClinicalInformation_EN", "Technique_EN", "Findings_EN", "Impressions_EN"]].to_csv(
            ds / "radiology_text_reports" / reports, index=False)
        part[["VolumeName", *CTRATE_LABELS]].to_csv(ds / "multi_abnormality_labels" / labels, index=False)
        meta = part[[c for c in part.columns if c.startswith("_meta_")]]
        meta.rename(columns=lambda c: c[len("_meta_"):]).to_csv(ds / "metadata" / metadata, index=False)
    first_train = table[table["split"] == "train"]["name"].iloc[0]
    (ds / "metadata" / "no_chest_train.txt").write_text(f"{first_train}.nii.gz\n")
    (ds / "metadata" / "no_chest_valid.txt").write_text("")


RADCHEST_SETS = ("imgtrain", "imgvalid", "imgtest")


def generate_radchestct(root: Path, cfg: MiniConfig, workers: int = 1) -> pd.DataFrame:
    """Rad-ChestCT: int16 HU clipped to [-1000, 1000], 0.8 mm isotropic, array[z, y, x]; scans in parallel."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    n = cfg.radchest_scans
    with ProcessPoolExecutor(max_workers=max(1, workers)) as pool:
        pairs = list(pool.map(_radchest_scan, [root] * n, [cfg] * n, range(n)))
    rows, label_rows = [row for row, _ in pairs], [labels for _, labels in pairs]
    pd.DataFrame(rows).to_csv(root / "Summary_3630.csv", index=False)
    labels = pd.DataFrame(label_rows)
    for subset in RADCHEST_SETS:
        part = labels[labels["_set"] == subset].drop(columns="_set")
        part.to_csv(root / f"{subset}_Abnormality_and_Location_Labels.csv", index=False)
    return labels


def _radchest_scan(root: Path, cfg: MiniConfig, n: int) -> tuple[dict, dict]:
    rng = np.random.default_rng([cfg.seed, 11, n])
    subset = RADCHEST_SETS[n % 3]
    acc = f"{RADCHEST_PREFIX[subset]}{10000 + n}"
    anatomy = sample_anatomy(rng, scale=0.5)
    phantom = Phantom(anatomy, sample_lesions(rng, anatomy, cfg.prevalence))
    shape_zyx = (120, 160, 224)
    origin = (anatomy.shift[0] + 0.8 * (shape_zyx[2] - 1) / -2, anatomy.shift[1] - 0.8 * 80,
              anatomy.z_apex + 6)
    steps = ((0, 0, -0.8), (0, 0.8, 0), (0.8, 0, 0))  # axis 0 runs head to feet
    hu = sample_volume(phantom, origin, steps, shape_zyx, rng, cfg.noise_hu)
    np.savez_compressed(root / f"{acc}.npz", ct=np.clip(np.rint(hu), -1000, 1000).astype(np.int16))
    row = {"MRN_DEID": f"MRN{20000 + n}", "NoteAcc_DEID": acc, "Set_Assigned": subset,
           "Subset_Assigned": f"{subset}_1"}
    present = {RADCHEST_SOURCE[label] for label in phantom.labels}
    labels = {"NoteAcc_DEID": acc, "_set": subset,
              **{f"{a}*{loc}": int((a, loc) in present) for a in RADCHEST_ABNORMALITIES for loc in RADCHEST_LOCATIONS}}
    return row, labels


# ---- Merlin and INSPECT --------------------------------------------------------------------------------------
MERLIN_SPLIT_CYCLE = ("test", "train", "train", "val", "test", "train", "train", "test", "train", "test")
INSPECT_SPLIT_CYCLE = ("train", "train", "valid", "train", "test", "train", "train", "valid", "train", "train")
INSPECT_BROKEN_DEMO_ID = "PE877f77"  # on RadFinder's list of 4-D INSPECT scans: written as a 4-D file
INSPECT_RELEASE = "20250611"


def _small_scan(cfg: MiniConfig, rng: np.random.Generator, z_top_offset: float, slices: int, spacing: float = 3.0):
    """A phantom volume in RAS (int16 HU) whose top slice lies ``z_top_offset`` mm below the lung apex."""
    anatomy = sample_anatomy(rng)
    phantom = Phantom(anatomy, sample_lesions(rng, anatomy, cfg.prevalence))
    n, dz = 96, 4.0
    half = (n - 1) * spacing / 2
    z0 = anatomy.z_apex - z_top_offset - dz * (slices - 1)
    steps = ((spacing, 0, 0), (0, spacing, 0), (0, 0, dz))
    hu = sample_volume(phantom, (-half, -half, z0), steps, (n, n, slices), rng, cfg.noise_hu)
    lps = np.eye(4)
    lps[:3, :3] = np.array(steps).T
    lps[:3, 3] = (-half, -half, z0)
    return phantom, np.clip(np.rint(hu), -1024, 3071).astype(np.int16), LPS_TO_RAS @ lps


def _merlin_report(phantom: Phantom, style: int, rng: np.random.Generator) -> str:
    """The one ``Findings`` text of reports_final.xlsx in the styles RadFinder's splitter handles."""
    found = [positive_sentence(lesion, "en", rng) + "." for lesion in phantom.lesions]
    body = " ".join(found + ["Liver: Normal in size and attenuation.", "Spleen: Unremarkable.",
                             "Kidneys: No hydronephrosis."])
    conclusion = ("; ".join(lesion.label.lower() for lesion in phantom.lesions) or "no acute abdominal process")
    if style == 0:    # explicit header (most reports)
        return f"FINDINGS: {body}\n \nIMPRESSION: {conclusion.capitalize()}."
    if style == 1:    # numbered conclusions, no header
        return f"{body}\n1. {conclusion.capitalize()}.\n2. No free fluid."
    if style == 2:    # all uppercase with header
        return f"FINDINGS: {body}\n IMPRESSIONS: {conclusion}.".upper()
    return body       # no boundary: stays unsplit


def generate_merlin(root: Path, cfg: MiniConfig) -> pd.DataFrame:
    """Merlin: ``merlin_data/<study id>.nii.gz`` (one ``.nii``), ``reports_final.xlsx`` (study id, Findings, Split);
    one report row without its volume (quarantined by the adapter)."""
    data = Path(root) / "merlin_data"
    data.mkdir(parents=True, exist_ok=True)
    rows = []
    for n in range(cfg.merlin_scans):
        rng = np.random.default_rng([cfg.seed, 13, n])
        study = f"AC{int(rng.integers(16**7, 16**8)):08x}"
        phantom, hu, affine = _small_scan(cfg, rng, z_top_offset=120.0, slices=40)
        suffix = ".nii" if n == 1 else ".nii.gz"
        nib.save(nib.Nifti1Image(hu, affine), data / f"{study}{suffix}")
        rows.append({"study id": study, "Findings": _merlin_report(phantom, n % 4, rng),
                     "Split": MERLIN_SPLIT_CYCLE[n % len(MERLIN_SPLIT_CYCLE)],
                     **{label: int(label in phantom.labels) for label in CTRATE_LABELS}})
    table = pd.DataFrame(rows)
    sheet = table[["study id", "Findings", "Split"]]
    orphan = pd.DataFrame([{"study id": "ACffffffff", "Findings": "FINDINGS: Normal. IMPRESSION: Normal.",
                            "Split": "train"}])
    write_xlsx(pd.concat([sheet, orphan], ignore_index=True), Path(root) / "reports_final.xlsx")
    return table


FIXED_TIME = (2020, 1, 1, 0, 0, 0)


def write_xlsx(table: pd.DataFrame, path: Path) -> None:
    """An .xlsx with the same bytes for the same table: openpyxl stamps the zip members and the document
    properties with the current time, so both are set to a fixed date (the demo is byte-reproducible)."""
    import io
    import re
    import zipfile

    buffer = io.BytesIO()
    table.to_excel(buffer, index=False, engine="openpyxl")
    stamp = "%04d-%02d-%02dT%02d:%02d:%02dZ" % FIXED_TIME
    with zipfile.ZipFile(buffer) as src, zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            data = src.read(info.filename)
            if info.filename == "docProps/core.xml":
                data = re.sub(rb"(<dcterms:(?:created|modified)[^>]*>)[^<]*", rb"\g<1>" + stamp.encode(), data)
            dst.writestr(zipfile.ZipInfo(info.filename, date_time=FIXED_TIME), data, zipfile.ZIP_DEFLATED)


def generate_inspect(root: Path, cfg: MiniConfig) -> pd.DataFrame:
    """INSPECT: ``full/CTPA/<image_id>.nii.gz`` and ``full/{study_mapping,impressions,splits}_<release>.tsv`` (an
    older study_mapping release beside the newest), plus one scan on RadFinder's broken list, written 4-D."""
    full = Path(root) / "full"
    (full / "CTPA").mkdir(parents=True, exist_ok=True)
    rows = []
    for n in range(cfg.inspect_scans):
        rng = np.random.default_rng([cfg.seed, 17, n])
        image_id = f"PE{int(rng.integers(16**5, 16**6)):06x}"
        phantom, hu, affine = _small_scan(cfg, rng, z_top_offset=-4.0, slices=40)
        nib.save(nib.Nifti1Image(hu, affine), full / "CTPA" / f"{image_id}.nii.gz")
        conclusion = "; ".join(lesion.label.lower() for lesion in phantom.lesions) or "no acute cardiopulmonary process"
        text = f"IMPRESSION: 1. No pulmonary embolism. 2. {conclusion.capitalize()}."
        rows.append({"image_id": image_id, "impression_id": f"{1000 + n}",
                     "impressions": text.upper() if n == 2 else text,
                     "split": INSPECT_SPLIT_CYCLE[n % len(INSPECT_SPLIT_CYCLE)],
                     **{label: int(label in phantom.labels) for label in CTRATE_LABELS}})
    broken = np.zeros((8, 8, 4, 2), dtype=np.int16)
    nib.save(nib.Nifti1Image(broken, np.eye(4)), full / "CTPA" / f"{INSPECT_BROKEN_DEMO_ID}.nii.gz")
    rows.append({"image_id": INSPECT_BROKEN_DEMO_ID, "impression_id": "1999", "impressions": "IMPRESSION: Normal.",
                 "split": "train"})
    table = pd.DataFrame(rows)
    table[["impression_id", "image_id"]].to_csv(full / f"study_mapping_{INSPECT_RELEASE}.tsv", sep="\t", index=False)
    table[["impression_id", "image_id"]].iloc[:1].to_csv(full / "study_mapping_20240101.tsv", sep="\t", index=False)
    table[["impression_id", "impressions"]].to_csv(full / f"impressions_{INSPECT_RELEASE}.tsv", sep="\t", index=False)
    table[["impression_id", "split"]].to_csv(full / f"splits_{INSPECT_RELEASE}.tsv", sep="\t", index=False)
    return table


# ---- RATE question labels for the minis ---------------------------------------------------------------------
# The demo's own questions (not the authors' texts) in RadFinder's layout: question maps, prompt files and
# long-format answers per dataset, so the rate_labels rule runs on the demo. Chest questions ask for the
# simulated CT-RATE findings; the abdomen questions are answered "No" (the phantom has no abdominal findings).
DEMO_ABDOMEN_QUESTIONS = ("Is there a liver lesion?", "Is there splenomegaly?", "Is there ascites?")


def demo_rate_questions() -> dict[str, list[tuple[str, str, str]]]:
    from ctvlp.demo.findings import SIMULATED_LABELS

    chest = [(f"q{227 + i:04d}", "Chest", f"Is there {label.lower()}?") for i, label in enumerate(SIMULATED_LABELS)]
    abdomen = [(f"q{1 + i:04d}", "Abdomen", q) for i, q in enumerate(DEMO_ABDOMEN_QUESTIONS)]
    return {"chest": chest, "abdomen": abdomen}


def generate_rate_config(root: Path) -> Path:
    """``<root>/modalities_en/question_maps/question_map_{chest,abdomen}.csv`` and ``prompts_abdomen_chest_ct/``."""
    import yaml

    base = Path(root) / "modalities_en"
    (base / "question_maps").mkdir(parents=True, exist_ok=True)
    (base / "prompts_abdomen_chest_ct").mkdir(parents=True, exist_ok=True)
    for modality, questions in demo_rate_questions().items():
        pd.DataFrame(questions, columns=["qid", "category", "question"]).to_csv(
            base / "question_maps" / f"question_map_{modality}.csv", index=False)
        entries = []
        for _, _, q in questions:
            finding = q[len("Is there "):-1]
            entries.append({"question": q, "positive": [f"There is {finding}.", f"{finding.capitalize()} is present.",
                                                        f"Findings show {finding}."],
                            "negative": [f"There is no {finding}.", f"No {finding}.",
                                         f"{finding.capitalize()} is absent."]})
        (base / "prompts_abdomen_chest_ct" / f"{modality}.yaml").write_text(
            yaml.safe_dump({"category": modality, "description": "demo questions", "prompts": entries}))
    return base


def write_rate_answers(folder: Path, modality: str, split: str, reports: dict[str, set[str]]) -> None:
    """``questions_<modality>_<split>.csv`` (report_id, category, question, answer) from each report's labels."""
    from ctvlp.demo.findings import SIMULATED_LABELS

    folder.mkdir(parents=True, exist_ok=True)
    questions = demo_rate_questions()[modality]
    rows = []
    for report_id, labels in reports.items():
        for (_, category, question), label in zip(questions, SIMULATED_LABELS if modality == "chest" else questions):
            answer = "Yes." if modality == "chest" and label in labels else "No"
            rows.append({"report_id": report_id, "category": category, "question": question, "answer": answer})
    pd.DataFrame(rows, columns=["report_id", "category", "question", "answer"]).to_csv(
        folder / f"questions_{modality}_{split}.csv", index=False)


def generate_rate_minis(root: Path, ctrate: pd.DataFrame, merlin: pd.DataFrame, inspect: pd.DataFrame) -> None:
    """RATE label files in ``report_structuring/p0rate_en/`` of the CT-RATE, Merlin and INSPECT minis."""
    root = Path(root)
    generate_rate_config(root / "rate")
    by_split: dict[str, dict[str, set[str]]] = {}
    for _, r in ctrate.iterrows():  # one report per scan: the report key
        labels = {label for label in CTRATE_LABELS if r[label] == 1}
        by_split.setdefault(r["split"], {})[r["name"].rsplit("_", 1)[0]] = labels
    for split, reports in by_split.items():
        write_rate_answers(root / "ct_rate" / "report_structuring" / "p0rate_en", "chest", split, reports)
    split_names = {"train": "train", "val": "valid", "test": "test", "valid": "valid"}
    for name, table, key, modality in (("merlin", merlin, "study id", "abdomen"),
                                       ("inspect", inspect, "image_id", "chest")):
        if len(table) == 0:
            continue
        table = table.dropna(subset=[CTRATE_LABELS[0]])
        groups: dict[str, dict[str, set[str]]] = {}
        for _, r in table.iterrows():
            split = split_names[str(r["Split" if name == "merlin" else "split"])]
            groups.setdefault(split, {})[str(r[key])] = {label for label in CTRATE_LABELS if r[label] == 1}
        for split, reports in groups.items():
            write_rate_answers(root / name / "report_structuring" / "p0rate_en", modality, split, reports)
