"""The text stage over whole datasets: reports, labels, prompts and mined snippets, with QC rows.

Hospital reports are joined to volumes by the salted accession key; CT-RATE by VolumeName (its
shipped labels are used as they are); Rad-ChestCT labels are mapped to the CT-RATE names with the
shipped mapping file. Every report is accepted or rejected with a reason; nothing is dropped silently.
"""

from __future__ import annotations

from collections import Counter
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd
import pydicom
import yaml

from ctvlp.core.ids import Pseudonymizer
from ctvlp.core.label_set import CTRATE_LABELS
from ctvlp.io import ctrate
from ctvlp.text.deidentify import Identifier, identifiers_of, scrub
from ctvlp.text.labels import Labeler
from ctvlp.text.mining import detect_language, find_references, meets, min_confidence_of
from ctvlp.text.report_io import read_report_table
from ctvlp.text.resolve import REASONS, StudyResolver
from ctvlp.text.sections import ctrate_sections, decode_report, sections_and_flags, training_text

REPORT_COLUMNS = ["volume_id", "dataset", "split", "accession_key", "language", "findings", "impression", "text",
                  "flags"]


def _qc(dataset: str, item: str, ok: bool, reason: str = "", flags: str = "") -> dict:
    return {"dataset": dataset, "kind": "report", "item": item, "status": "accepted" if ok else "rejected",
            "reason": reason, "flags": flags}


def dicom_identities(index: pd.DataFrame, dicom_root: str | Path) -> dict[str, list[Identifier]]:
    """scan_id -> what the study's DICOM header says about the patient (name, id, accession, birth date),
    read from one instance per study; only for scrubbing report bodies, never written anywhere."""
    out: dict[str, list[Identifier]] = {}
    if index is None or index.empty or "study_key" not in index.columns:
        return out
    ok = index[(index.reason == "") & (index.study_key != "")]
    for study_key, rows in ok.groupby("study_key"):
        try:
            ds = pydicom.dcmread(Path(dicom_root) / rows.path.iloc[0], stop_before_pixels=True,
                                 specific_tags=["PatientName", "PatientID", "AccessionNumber", "PatientBirthDate",
                                                "OtherPatientNames", "OtherPatientIDs"])
        except Exception:  # the index already read this file; a vanished file only loses extra scrubbing
            continue
        others = tuple(str(n) for n in (ds.get("OtherPatientNames") or []) if str(n))
        out["C" + str(study_key)[1:]] = identifiers_of(str(ds.get("PatientName", "")), str(ds.get("PatientID", "")),
                                                        str(ds.get("AccessionNumber", "")),
                                                        str(ds.get("PatientBirthDate", "")), others)
    return out


def _join(rows: list[dict], hosp: pd.DataFrame, pseudo: Pseudonymizer, fallback: list[str]) -> list[tuple]:
    """Per report: (volume row or None, how it was joined, why not). By accession number when it is present,
    unique in the export and names exactly one study; otherwise by the configured fallbacks (study instance
    UID; patient id + study date); a study claimed by several reports takes none of them."""
    counts = Counter(r.get("accession", "").strip() for r in rows)
    by_acc = {k: g for k, g in hosp.groupby("accession_key")} if len(hosp) else {}
    by_scan = {k: g for k, g in hosp.groupby("scan_id")} if len(hosp) else {}
    by_patient = {k: g for k, g in hosp.groupby("patient_id")} if len(hosp) else {}
    joined = []
    for r in rows:
        accession = r.get("accession", "").strip()
        candidates = by_acc.get(pseudo("hospital", "accession", accession), hosp.iloc[:0]) if accession else None
        if not accession:
            problem = "blank accession number"
        elif counts[accession] > 1:
            problem = f"accession number repeated in the export ({counts[accession]} reports)"
        elif len(candidates) == 1:
            joined.append((candidates.iloc[0], "accession", ""))
            continue
        elif len(candidates) > 1:
            problem = f"accession number shared by {candidates.scan_id.nunique()} studies"
        else:
            problem = "report matches no volume"
        found = None
        for method in fallback:
            if method == "study_uid" and r.get("study_uid", "").strip():
                scan = "C" + pseudo("hospital", "study", r["study_uid"].strip())[1:]
                candidates = by_scan.get(scan, hosp.iloc[:0])
            elif method == "patient_date" and r.get("patient_id", "").strip():
                candidates = by_patient.get(pseudo("hospital", "patient", r["patient_id"].strip()), hosp.iloc[:0])
                if "study_date" in hosp.columns and r.get("study_date", "").strip():
                    candidates = candidates[candidates.study_date == r["study_date"].strip()]
            else:
                continue
            if len(candidates) == 1:
                found = (candidates.iloc[0], method, "")
                break
        tried = [m for m in fallback if (m == "study_uid" and r.get("study_uid", "").strip())
                 or (m == "patient_date" and r.get("patient_id", "").strip())]
        joined.append(found or (None, "", problem + (f"; no single study by {' or '.join(tried)}" if tried else "")))
    claims = Counter(v.volume_id for v, _, _ in joined if v is not None)
    return [(None, "", f"{claims[v.volume_id]} reports join one study") if v is not None and claims[v.volume_id] > 1
            else (v, how, why) for v, how, why in joined]


def hospital_reports(reports_file: str | Path, volumes: pd.DataFrame, salt: bytes, text_cfg: dict | None = None,
                     identities: dict[str, list[Identifier]] | None = None) -> tuple[pd.DataFrame, list[dict]]:
    """One row per report that joins a hospital volume, its body scrubbed of the patient's identifiers; a QC
    row for every report (accepted or rejected with the reason)."""
    text_cfg = text_cfg or {}
    rows, facts = read_report_table(reports_file, text_cfg.get("report_columns"))
    pseudo = Pseudonymizer(salt)
    hosp = volumes[(volumes.dataset == "hospital") & (volumes.status == "ok")]
    file_flags = [] if facts["encoding"] in ("utf-8", "utf-8+escapes", "xlsx") else [f"encoding_{facts['encoding']}"]
    out, qc = [], []
    for i, (r, (volume, how, why)) in enumerate(zip(rows, _join(rows, hosp, pseudo,
                                                                list(text_cfg.get("join_fallback", []))))):
        key = pseudo("hospital", "accession", r.get("accession", ""))
        item = key or f"row {i + 1}"
        text, flags = decode_report(r.get("text", ""))
        flags = file_flags + flags
        if "empty" in flags:
            qc.append(_qc("hospital", item, False, "empty report", ",".join(flags)))
            continue
        if volume is None:
            qc.append(_qc("hospital", item, False, why, ",".join(flags)))
            continue
        if how != "accession":
            flags.append(f"joined_by_{how}")
        known = identifiers_of(r.get("patient_name", ""), r.get("patient_id", ""), r.get("accession", ""),
                               r.get("birth_date", "")) + (identities or {}).get(volume.scan_id, [])
        sections, section_flags = sections_and_flags(text, text_cfg.get("section_headings"))
        flags += section_flags
        scrubbed = {name: scrub(sections[name], known)[0] for name in ("findings", "impression")}
        body = training_text(scrubbed)
        if not body:
            qc.append(_qc("hospital", item, False, "no findings or impression section", ",".join(flags)))
            continue
        out.append({"volume_id": volume.volume_id, "dataset": "hospital", "split": volume.split,
                    "accession_key": volume.accession_key, "language": detect_language(body),
                    "findings": scrubbed["findings"], "impression": scrubbed["impression"], "text": body,
                    "flags": ",".join(flags)})
        qc.append(_qc("hospital", item, True, "", ",".join(flags)))
    return pd.DataFrame(out, columns=REPORT_COLUMNS), qc


CTRATE_REPORT_FILES = {"train": "train_reports.csv", "valid": "validation_reports.csv"}
CTRATE_LABEL_FILES = {"train": "train_predicted_labels.csv", "valid": "valid_predicted_labels.csv"}


def ctrate_text(root: str | Path, volumes: pd.DataFrame, salt: bytes) -> tuple[pd.DataFrame, pd.DataFrame, list[dict]]:
    """CT-RATE reports (sections from columns) and its shipped labels, for volumes in the manifest."""
    root, pseudo = Path(root), Pseudonymizer(salt)
    ours = volumes[(volumes.dataset == "ct_rate") & (volumes.status == "ok")].set_index("volume_id")
    reports, labels, qc = [], [], []
    for split in ("train", "valid"):
        path = root / "radiology_text_reports" / CTRATE_REPORT_FILES[split]
        if path.exists():
            for _, r in pd.read_csv(path, dtype=str, keep_default_na=False).iterrows():
                name = ctrate.volume_name(Path(r.VolumeName))
                vid = pseudo("ct_rate", "volume", name)
                sections = ctrate_sections(r.to_dict())
                body = training_text(sections)
                if vid not in ours.index or not body:
                    qc.append(_qc("ct_rate", name, False, "empty report" if not body else "report matches no volume"))
                    continue
                reports.append({"volume_id": vid, "dataset": "ct_rate", "split": ours.loc[vid, "split"],
                                "accession_key": "", "language": "en", "findings": sections["findings"],
                                "impression": sections["impression"], "text": body, "flags": ""})
                qc.append(_qc("ct_rate", name, True))
        label_path = root / "multi_abnormality_labels" / CTRATE_LABEL_FILES[split]
        if label_path.exists():
            table = pd.read_csv(label_path)
            absent = [c for c in CTRATE_LABELS if c not in table.columns]
            if absent:
                qc.append(_qc("ct_rate", label_path.name, False, f"labels file lacks column(s) {', '.join(absent)}: "
                                                                 "those labels are unknown (-1)"))
            for _, r in table.iterrows():
                vid = pseudo("ct_rate", "volume", ctrate.volume_name(Path(r.VolumeName)))
                if vid in ours.index:
                    labels.append({"volume_id": vid, "dataset": "ct_rate", "labeler": "ct_rate_shipped",
                                   "labeler_version": "predicted_labels",
                                   **{c: int(r[c]) if c in table.columns and pd.notna(r[c]) else -1
                                      for c in CTRATE_LABELS}})
    return pd.DataFrame(reports, columns=REPORT_COLUMNS), pd.DataFrame(labels), qc


def radchest_labels(root: str | Path, volumes: pd.DataFrame, salt: bytes) -> pd.DataFrame:
    """Rad-ChestCT abnormality*location columns mapped to the CT-RATE names (mosaic unknown)."""
    mapping = yaml.safe_load((resources.files("ctvlp") / "resources" / "radchestct_to_ctrate.yaml").read_text())
    pseudo, root = Pseudonymizer(salt), Path(root)
    ours = set(volumes[(volumes.dataset == "rad_chestct") & (volumes.status == "ok")].volume_id)
    rows = []
    for path in sorted(root.glob("img*_Abnormality_and_Location_Labels.csv")):
        table = pd.read_csv(path)
        for _, r in table.iterrows():
            vid = pseudo("rad_chestct", "volume", str(r.NoteAcc_DEID))
            if vid not in ours:
                continue
            present = {a for a in mapping if any(r[c] == 1 for c in table.columns if c.split("*")[0] == a)}
            out = {label: 0 for label in CTRATE_LABELS}
            out["Mosaic attenuation pattern"] = -1
            for abnormality in present:
                for label in mapping[abnormality]:
                    out[label] = 1
            rows.append({"volume_id": vid, "dataset": "rad_chestct", "labeler": "radchestct_mapped",
                         "labeler_version": "standard-1", **out})
    return pd.DataFrame(rows)


def label_reports(reports: pd.DataFrame, labeler: Labeler) -> tuple[pd.DataFrame, list[dict]]:
    """Labels per report and QC rows for reports the labeler could not answer (LLM: unparsable answers)."""
    if hasattr(labeler, "label_batch"):
        answers = labeler.label_batch(list(reports.text))
    else:
        answers = [(labeler(r.text, r.language), "") for r in reports.itertuples()]
    rows, qc = [], []
    for r, (labels, problem) in zip(reports.itertuples(), answers):
        rows.append({"volume_id": r.volume_id, "dataset": r.dataset, "labeler": labeler.name,
                     "labeler_version": labeler.version, **labels})
        if problem:
            qc.append({"dataset": r.dataset, "kind": "labels", "item": r.volume_id, "status": "rejected",
                       "reason": f"labels unknown (-1): {problem}", "flags": labeler.name})
    return pd.DataFrame(rows), qc


def translate_reports(reports: pd.DataFrame, translator) -> pd.DataFrame:
    """Findings, impression and text translated (``text.translate``); language set to the target."""
    src, dst = translator.glossary.source, translator.glossary.target
    todo = reports.language == src
    if not todo.any():
        return reports
    out = reports.copy()
    for column in ("findings", "impression"):
        out.loc[todo, column] = translator.translate_batch(list(reports.loc[todo, column]))
    out.loc[todo, "text"] = [training_text({"findings": f, "impression": i})
                             for f, i in zip(out.loc[todo, "findings"], out.loc[todo, "impression"])]
    out.loc[todo, "language"] = dst
    out.loc[todo, "flags"] = [f"{f},translated_{src}_{dst}".strip(",") for f in out.loc[todo, "flags"]]
    return out


def mine_snippets(reports: pd.DataFrame, index: pd.DataFrame, series: pd.DataFrame, volumes: pd.DataFrame,
                  bin_voxels: int, pattern_files: tuple[str, ...] | None = None,
                  min_confidence: str | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(snippets, mining QC): every reference found, resolved or rejected with its reason. A reference whose
    confidence is below ``min_confidence`` (``text.mining.min_confidence``; None = the schema's default) never
    becomes a localization target: this is the one place that filters; it stays in the QC with the reason."""
    min_confidence = min_confidence or min_confidence_of(None)
    hosp = reports[reports.dataset == "hospital"]
    vols = volumes[(volumes.dataset == "hospital") & (volumes.status == "ok")].set_index("volume_id")
    # by study, not by accession: two studies may share an accession number
    study_of = {vid: "S" + str(v.scan_id)[1:] for vid, v in vols.iterrows()}
    group = "study_key" if "study_key" in index.columns else "accession_key"
    by_study = {k: g for k, g in index[index.reason == ""].groupby(group)}
    valid = ({k: g for k, g in series[series.status == "ok"].groupby(group)}
             if len(series) and group in series.columns else {})
    snippets, qc = [], []
    for r in hosp.itertuples():
        volume = vols.loc[r.volume_id] if r.volume_id in vols.index else None
        study = study_of.get(r.volume_id, "") if group == "study_key" else r.accession_key
        resolver = StudyResolver(by_study.get(study, index.iloc[:0]), valid.get(study, series.iloc[:0]), volume,
                                 bin_voxels)
        for section in ("findings", "impression"):
            for ref in find_references(getattr(r, section) or "", pattern_files, r.language):
                if ref.prior:
                    code, target, used = "prior_study", None, ref.series
                elif not meets(ref.confidence, min_confidence):
                    code, target, used = "below_min_confidence", None, ref.series
                else:
                    code, target, used = resolver.resolve(ref.series, ref.image)
                row = {"volume_id": r.volume_id, "split": r.split, "snippet": ref.snippet,
                       "series": ref.series if ref.series is not None else -1, "resolved_series": used or -1,
                       "image": ref.image, "image_range": list(ref.image_range) if ref.image_range else [],
                       "pattern": ref.pattern, "prior": ref.prior, "confidence": ref.confidence,
                       "language": r.language, "section": section}
                reason = REASONS[code] + (f" ({ref.confidence} < {min_confidence})"
                                          if code == "below_min_confidence" else "")
                qc.append({**row, "reason_code": code, "reason": reason})
                if target is not None:
                    snippets.append({**row, "z_mm": target.z_mm, "k_voxel": target.k_voxel,
                                     "depth_bin": target.depth_bin, "n_bins": target.n_bins})
    snippet_cols = ["volume_id", "split", "snippet", "series", "resolved_series", "image", "image_range", "pattern",
                    "prior", "confidence", "language", "section", "z_mm", "k_voxel", "depth_bin", "n_bins"]
    return pd.DataFrame(snippets, columns=snippet_cols), pd.DataFrame(qc)


def mining_stats(mining_qc: pd.DataFrame) -> str:
    """Markdown counts per pattern, language and reason."""
    if mining_qc.empty:
        return "# Snippet mining\n\nNo references found.\n"
    lines = ["# Snippet mining", "", f"references found: {len(mining_qc)}; resolved: "
             f"{int((mining_qc.reason_code == 'ok').sum())}", ""]
    for column in [c for c in ("confidence", "pattern", "language", "reason") if c in mining_qc.columns]:
        counts = mining_qc.groupby(column).size().sort_values(ascending=False)
        lines += [f"| {column} | count |", "|---|---:|"] + [f"| {k} | {v} |" for k, v in counts.items()] + [""]
    return "\n".join(lines)


def prompts_table(label_set) -> pd.DataFrame:
    return pd.DataFrame([{"label": label, "polarity": polarity, "rank": i, "prompt": prompt}
                         for label in label_set.labels for polarity in ("positive", "negative")
                         for i, prompt in enumerate(label_set.prompts[label][polarity])])


def labels_summary(labels: pd.DataFrame) -> pd.DataFrame:
    cols = [c for c in CTRATE_LABELS if c in labels.columns]
    return labels.groupby("dataset")[cols].agg(lambda s: int((np.asarray(s) == 1).sum()))
