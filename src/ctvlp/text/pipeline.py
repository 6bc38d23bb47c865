"""The text stage over whole datasets: reports, labels, prompts and mined snippets, with QC rows.

Hospital reports are joined to volumes by the salted accession key; CT-RATE by VolumeName (its
shipped labels are used as they are); Rad-ChestCT labels are mapped to the CT-RATE names with the
shipped mapping file. Every report is accepted or rejected with a reason; nothing is dropped silently.
"""

from __future__ import annotations

import csv
import io

from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from ctvlp.ids import Pseudonymizer
from ctvlp.io import ctrate
from ctvlp.labels import CTRATE_LABELS
from ctvlp.text.labels import Labeler
from ctvlp.text.mining import detect_language, find_references
from ctvlp.text.resolve import REASONS, StudyResolver
from ctvlp.text.sections import ctrate_sections, decode_report, split_sections, training_text

REPORT_COLUMNS = ["volume_id", "dataset", "split", "accession_key", "language", "findings", "impression", "text",
                  "flags"]


def _qc(dataset: str, item: str, ok: bool, reason: str = "", flags: str = "") -> dict:
    return {"dataset": dataset, "kind": "report", "item": item, "status": "accepted" if ok else "rejected",
            "reason": reason, "flags": flags}


def _scrub(text: str, identifiers: list[str]) -> str:
    """Remove identifiers the RIS row gives us if they also appear in the body."""
    for ident in identifiers:
        if ident and len(ident) >= 4:
            text = text.replace(ident, "[removed]")
    return text


def hospital_reports(reports_csv: str | Path, volumes: pd.DataFrame, salt: bytes) -> tuple[pd.DataFrame, list[dict]]:
    """One row per report that matches a hospital volume; QC rows for every report."""
    # csv, not pandas: pandas' arrow strings cannot hold the surrogate escapes of a non-UTF-8 report, which
    # decode_report turns into cp1252 text with a flag (found by the fault corpus)
    raw = Path(reports_csv).read_bytes().decode("utf-8", errors="surrogateescape")
    reader = csv.DictReader(io.StringIO(raw, newline=""))
    table = list(reader)
    missing = {"AccessionNumber", "ReportText"} - set(reader.fieldnames or [])
    if missing:
        return pd.DataFrame(columns=REPORT_COLUMNS), [_qc("hospital", Path(reports_csv).name, False,
                                                          f"reports file lacks column(s) {', '.join(sorted(missing))}")]
    pseudo = Pseudonymizer(salt)
    hosp = volumes[(volumes.dataset == "hospital") & (volumes.status == "ok")].set_index("accession_key")
    rows, qc = [], []
    for r in table:
        key = pseudo("hospital", "accession", r["AccessionNumber"])
        text, flags = decode_report(r["ReportText"])
        item = key or f"row {len(qc) + 1}"
        if "empty" in flags:
            qc.append(_qc("hospital", item, False, "empty report", ",".join(flags)))
            continue
        if key not in hosp.index:
            qc.append(_qc("hospital", item, False, "report matches no volume", ",".join(flags)))
            continue
        sections = split_sections(_scrub(text, [r["AccessionNumber"], r.get("PatientID") or ""]))
        body = training_text(sections)
        if not body:
            qc.append(_qc("hospital", item, False, "no findings or impression section", ",".join(flags)))
            continue
        volume = hosp.loc[key]
        rows.append({"volume_id": volume.volume_id, "dataset": "hospital", "split": volume.split,
                     "accession_key": key, "language": detect_language(body), "findings": sections["findings"],
                     "impression": sections["impression"], "text": body, "flags": ",".join(flags)})
        qc.append(_qc("hospital", item, True, "", ",".join(flags)))
    return pd.DataFrame(rows, columns=REPORT_COLUMNS), qc


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


def label_reports(reports: pd.DataFrame, labeler: Labeler) -> pd.DataFrame:
    rows = [{"volume_id": r.volume_id, "dataset": r.dataset, "labeler": labeler.name,
             "labeler_version": labeler.version, **labeler(r.text, r.language)}
            for r in reports.itertuples()]
    return pd.DataFrame(rows)


def mine_snippets(reports: pd.DataFrame, index: pd.DataFrame, series: pd.DataFrame, volumes: pd.DataFrame,
                  bin_voxels: int, pattern_files: tuple[str, ...] | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(snippets, mining QC): every reference found, resolved or rejected with its reason."""
    hosp = reports[reports.dataset == "hospital"]
    by_study = {k: g for k, g in index[index.reason == ""].groupby("accession_key")}
    valid = {k: g for k, g in series[series.status == "ok"].groupby("accession_key")} if len(series) else {}
    vols = volumes[(volumes.dataset == "hospital") & (volumes.status == "ok")].set_index("accession_key")
    snippets, qc = [], []
    for r in hosp.itertuples():
        volume = vols.loc[r.accession_key] if r.accession_key in vols.index else None
        resolver = StudyResolver(by_study.get(r.accession_key, index.iloc[:0]),
                                 valid.get(r.accession_key, series.iloc[:0]), volume, bin_voxels)
        for section in ("findings", "impression"):
            for ref in find_references(getattr(r, section) or "", pattern_files, r.language):
                code, target, used = ("prior_study", None, ref.series) if ref.prior else resolver.resolve(
                    ref.series, ref.image)
                row = {"volume_id": r.volume_id, "split": r.split, "snippet": ref.snippet,
                       "series": ref.series if ref.series is not None else -1, "resolved_series": used or -1,
                       "image": ref.image, "image_range": list(ref.image_range) if ref.image_range else [],
                       "pattern": ref.pattern, "prior": ref.prior, "language": r.language, "section": section}
                qc.append({**row, "reason_code": code, "reason": REASONS[code]})
                if target is not None:
                    snippets.append({**row, "z_mm": target.z_mm, "k_voxel": target.k_voxel,
                                     "depth_bin": target.depth_bin, "n_bins": target.n_bins})
    snippet_cols = ["volume_id", "split", "snippet", "series", "resolved_series", "image", "image_range", "pattern",
                    "prior", "language", "section", "z_mm", "k_voxel", "depth_bin", "n_bins"]
    return pd.DataFrame(snippets, columns=snippet_cols), pd.DataFrame(qc)


def mining_stats(mining_qc: pd.DataFrame) -> str:
    """Markdown counts per pattern, language and reason."""
    if mining_qc.empty:
        return "# Snippet mining\n\nNo references found.\n"
    lines = ["# Snippet mining", "", f"references found: {len(mining_qc)}; resolved: "
             f"{int((mining_qc.reason_code == 'ok').sum())}", ""]
    for column in ("pattern", "language", "reason"):
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
