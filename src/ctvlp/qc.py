"""The QC table: every input item exactly once, accepted or rejected, with the stage and reason.

Invariant checked here and in the tests: per dataset, accepted + rejected = inputs. A volume
that passes ingestion but fails preprocessing is updated in place (stage ``preprocess``), so it
is never counted twice and never disappears.
"""

from __future__ import annotations

import hashlib

import pandas as pd

QC_COLUMNS = ["dataset", "kind", "item", "volume_id", "status", "role", "stage", "reason"]


def _row(dataset, kind, item, status, reason="", volume_id="", role="") -> dict:
    return {"dataset": dataset, "kind": kind, "item": item, "volume_id": volume_id,
            "status": "accepted" if status == "ok" else "rejected", "role": role or ("volume" if status == "ok" else ""),
            "stage": "ingest", "reason": reason}


def hospital_qc(index: pd.DataFrame, series: pd.DataFrame) -> list[dict]:
    rows = []
    for _, f in index[index.reason != ""].iterrows():
        identifying = "patient identifier" in f.reason
        item = "file:" + hashlib.sha256(f.path.encode()).hexdigest()[:16] if identifying else f.path
        rows.append(_row("hospital", "file", item, "rejected", f.reason))
    for _, s in series.iterrows():
        volume_id = "V" + s.series_key[1:] if s.selected else ""
        rows.append(_row("hospital", "series", s.series_key, s.status, s.reason, volume_id, s.role))
    return rows


def public_qc(dataset: str, found: pd.DataFrame, volume_ids: dict[str, str]) -> list[dict]:
    return [_row(dataset, "volume", f.source, f.status, f.reason, volume_ids.get(f.source, ""))
            for _, f in found.iterrows()]


def build_qc(rows: list[dict]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=QC_COLUMNS)


def apply_preprocess_results(qc: pd.DataFrame, results: pd.DataFrame) -> pd.DataFrame:
    """Volumes rejected while reading or checking pixels turn rejected at stage 'preprocess'."""
    qc = qc.copy()
    failed = results[results.status != "ok"].set_index("volume_id")["reason"]
    hit = qc.volume_id.isin(failed.index) & (qc.volume_id != "")
    qc.loc[hit, "status"] = "rejected"
    qc.loc[hit, "stage"] = "preprocess"
    qc.loc[hit, "reason"] = qc.loc[hit, "volume_id"].map(failed)
    return qc


def summary_markdown(qc: pd.DataFrame) -> str:
    """Counts per dataset (inputs = accepted + rejected) and per rejection reason."""
    lines = ["# QC summary", "", "| dataset | inputs | accepted | rejected | lost |", "|---|---:|---:|---:|---:|"]
    for dataset, part in qc.groupby("dataset"):
        acc, rej = int((part.status == "accepted").sum()), int((part.status == "rejected").sum())
        lines.append(f"| {dataset} | {len(part)} | {acc} | {rej} | {len(part) - acc - rej} |")
    lines += ["", "| dataset | stage | reason | count |", "|---|---|---|---:|"]
    rejected = qc[qc.status == "rejected"].copy()
    rejected["reason_kind"] = rejected.reason.str.replace(r"\d+(\.\d+)?", "N", regex=True)
    for (dataset, stage, reason), n in rejected.groupby(["dataset", "stage", "reason_kind"]).size().items():
        lines.append(f"| {dataset} | {stage} | {reason} | {n} |")
    return "\n".join(lines) + "\n"
