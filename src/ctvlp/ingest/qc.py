"""The QC table: every input item exactly once, accepted or rejected, with the stage and reason.

Invariant checked here and in the tests: per dataset, accepted + rejected = inputs. A volume
that passes ingestion but fails preprocessing is updated in place (stage ``preprocess``), so it
is never counted twice and never disappears.
"""

from __future__ import annotations

import pandas as pd

QC_COLUMNS = ["dataset", "kind", "item", "volume_id", "status", "role", "stage", "reason", "n_inputs"]


def _row(dataset, kind, item, status, reason="", volume_id="", role="", n_inputs=1) -> dict:
    return {"dataset": dataset, "kind": kind, "item": item, "volume_id": volume_id,
            "status": "accepted" if status == "ok" else "rejected", "role": role or ("volume" if status == "ok" else ""),
            "stage": "ingest", "reason": reason, "n_inputs": int(n_inputs)}


def hospital_qc(index: pd.DataFrame, series: pd.DataFrame) -> list[dict]:
    rows = []
    for _, f in index[index.reason != ""].iterrows():
        # the salted key when the path names the patient (the index keeps no such path), else the relative path
        item = f.path if f.get("path") else "file:" + str(f.get("path_key", ""))
        rows.append(_row("hospital", "file", item, "rejected", f.reason))
    n_files = index[index.reason == ""].groupby("series_key")["path_key"].nunique() if "path_key" in index else {}
    for _, s in series.iterrows():
        volume_id = "V" + s.series_key[1:] if s.selected else ""
        rows.append(_row("hospital", "series", s.series_key, s.status, s.reason, volume_id, s.role,
                         n_inputs=n_files.get(s.series_key, s.n_files) if len(n_files) else s.n_files))
    return rows


def public_qc(dataset: str, found: pd.DataFrame, volume_ids: dict[str, str]) -> list[dict]:
    return [_row(dataset, "volume", f.source, f.status, f.reason, volume_ids.get(f.source, ""))
            for _, f in found.iterrows()]


def build_qc(rows: list[dict]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=QC_COLUMNS)


def apply_preprocess_results(qc: pd.DataFrame, results: pd.DataFrame) -> pd.DataFrame:
    """Every source that failed while reading or checking pixels turns rejected at stage 'preprocess' with
    its reason (a hospital study's first choice and any fallback tried after it); a fallback that worked
    becomes the study's volume, and its row says what was tried before it."""
    qc = qc.copy()
    by_item = {item: i for i, item in zip(qc.index, qc["item"])}
    for r in results.itertuples():
        sources = list(r.failed_sources) if getattr(r, "failed_sources", None) is not None else []
        reasons = list(r.failed_reasons) if getattr(r, "failed_reasons", None) is not None else []
        hit = qc.index[qc.volume_id == r.volume_id]
        for source, reason in zip(sources, reasons):
            i = by_item.get(source, hit[0] if len(hit) else None)
            if i is None:
                continue
            qc.loc[i, ["status", "stage", "reason", "role", "volume_id"]] = ["rejected", "preprocess", reason, "", ""]
        if r.status == "ok" and r.source in by_item:
            i = by_item[r.source]
            qc.loc[i, ["status", "role", "volume_id"]] = ["accepted", "volume", r.volume_id]
            if sources:
                qc.loc[i, ["stage", "reason"]] = ["preprocess", r.reason]
    return qc


def merge_results(manifest: pd.DataFrame, results: pd.DataFrame) -> pd.DataFrame:
    """volumes.parquet: the manifest with each volume's preprocessing result; ``source``, ``frame_key`` and
    ``series_number`` are those of the series actually used (a fallback may differ from the first choice)."""
    used = [c for c in ("source", "frame_key", "series_number") if c in results]
    return manifest.drop(columns=used).merge(results, on="volume_id", how="left", validate="one_to_one")


class EmptySourceError(ValueError):
    """A configured source gave no accepted volume: the run stops instead of training without it."""


def check_sources_yield(qc: pd.DataFrame, datasets) -> None:
    """Raise EmptySourceError naming each configured dataset without an accepted volume, with its
    rejection reasons counted (numbers folded, so 'gap of 5.0 mm' and 'gap of 7.5 mm' count together)."""
    problems = []
    for dataset in datasets:
        part = qc[qc.dataset == dataset]
        if ((part.status == "accepted") & (part.role == "volume")).any():
            continue
        kinds = part[part.status == "rejected"].reason.str.replace(r"\d+(\.\d+)?", "N", regex=True)
        counts = ", ".join(f"{n} x {reason}" for reason, n in kinds.value_counts().items()) or "no inputs found"
        problems.append(f"{dataset}: 0 accepted volumes of {len(part)} items ({counts})")
    if problems:
        raise EmptySourceError("configured source(s) yielded nothing: " + "; ".join(problems))


# HTML's characters as entities, Markdown's punctuation backslash-escaped (``\|`` keeps a cell whole)
_MARKUP = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;", **{c: "\\" + c for c in "\\|*_`[]#~$"}})


def md_cell(value) -> str:
    """A value as one Markdown table cell: on one line, every character Markdown or HTML reads as markup escaped
    (``|`` that would end the cell, ``*``, ``[`` ... with a backslash; ``<``, ``>``, ``&`` as entities). Reasons carry header
    values verbatim (a Modality, a transfer syntax): they must neither break the table nor pass markup through."""
    return " ".join(str(value).split()).translate(_MARKUP)


def summary_markdown(qc: pd.DataFrame, inputs: dict[str, int] | None = None) -> str:
    """Counts per dataset and per rejection reason. ``inputs`` are counted from the inputs themselves
    (files walked in the export, volume files found on disk, rows of a dataset's list), not from this
    table, so ``lost`` = inputs - accepted - rejected is a real check: an input no QC row covers shows."""
    inputs = inputs or {}
    lines = ["# QC summary", "", "| dataset | inputs | accepted | rejected | lost |", "|---|---:|---:|---:|---:|"]
    n = qc["n_inputs"] if "n_inputs" in qc else pd.Series(1, index=qc.index)
    for dataset, part in qc.groupby("dataset"):
        weights = n[part.index]
        acc = int(weights[part.status == "accepted"].sum())
        rej = int(weights[part.status == "rejected"].sum())
        total = int(inputs.get(dataset, acc + rej))
        lines.append(f"| {md_cell(dataset)} | {total} | {acc} | {rej} | {total - acc - rej} |")
    lines += ["", "Counts are input files (hospital: DICOM files walked in the export; public data: volume files "
              "on disk and listed ones missing), counted apart from this table.",
              "", "| dataset | stage | reason | count |", "|---|---|---|---:|"]
    rejected = qc[qc.status == "rejected"].copy()
    rejected["reason_kind"] = rejected.reason.str.replace(r"\d+(\.\d+)?", "N", regex=True)
    for (dataset, stage, reason), count in rejected.groupby(["dataset", "stage", "reason_kind"]).size().items():
        lines.append(f"| {md_cell(dataset)} | {md_cell(stage)} | {md_cell(reason)} | {count} |")
    return "\n".join(lines) + "\n"
