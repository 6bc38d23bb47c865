"""Merlin and INSPECT reports for the text stage, in the text stage's report table and QC rows.

Merlin: one ``Findings`` text per study, cut into findings and impressions by RadFinder's rule
(``ctvlp.io.merlin.split_report``). INSPECT: impressions only. Joined to the manifest by the pseudonym of the
public name (Merlin ``study id``, INSPECT ``image_id``); every report row is accepted or rejected with a reason.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ctvlp.core.ids import Pseudonymizer
from ctvlp.io import inspect_ct, merlin
from ctvlp.text.pipeline import REPORT_COLUMNS
from ctvlp.text.sections import training_text


def _qc(dataset: str, item: str, ok: bool, reason: str = "") -> dict:
    return {"dataset": dataset, "kind": "report", "item": item, "status": "accepted" if ok else "rejected",
            "reason": reason, "flags": ""}


def _join(dataset: str, table: pd.DataFrame, volumes: pd.DataFrame, salt: bytes) -> tuple[pd.DataFrame, list]:
    pseudo = Pseudonymizer(salt)
    ours = volumes[(volumes.dataset == dataset) & (volumes.status == "ok")].set_index("volume_id")
    rows, qc = [], []
    for r in table.itertuples():
        vid = pseudo(dataset, "volume", r.name)
        sections = {"findings": getattr(r, "findings", ""), "impression": r.impressions}
        body = training_text(sections)
        if vid not in ours.index:
            qc.append(_qc(dataset, r.name, False, "report matches no volume"))
            continue
        if not body:
            qc.append(_qc(dataset, r.name, False, "empty report"))
            continue
        rows.append({"volume_id": vid, "dataset": dataset, "split": ours.loc[vid, "split"], "accession_key": "",
                     "language": "en", "findings": sections["findings"], "impression": sections["impression"],
                     "text": body, "flags": ""})
        qc.append(_qc(dataset, r.name, True))
    return pd.DataFrame(rows, columns=REPORT_COLUMNS), qc


def merlin_reports(root: str | Path, volumes: pd.DataFrame, salt: bytes) -> tuple[pd.DataFrame, list[dict]]:
    return _join("merlin", merlin.reports_table(root), volumes, salt)


def inspect_reports(root: str | Path, volumes: pd.DataFrame, salt: bytes) -> tuple[pd.DataFrame, list[dict]]:
    return _join("inspect", inspect_ct.reports_table(root).assign(findings=""), volumes, salt)
