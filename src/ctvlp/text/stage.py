"""The text stage of the workflow (rule ``report_text``) over every configured source: reports (header PHI
scrubbed from hospital bodies, optionally translated), labels of every volume, the prompt table and one QC row
per report. The rule script only reads and writes files.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ctvlp.core.salt import fingerprint, salt_changed
from ctvlp.text.labels import Labeler, LabelSet, RuleLabeler, load_label_set
from ctvlp.text.llm import ChatClient, LLMLabeler, LLMSettings, Translator, load_glossary, load_question_set
from ctvlp.text.pipeline import (ctrate_text, dicom_identities, hospital_reports, label_reports, prompts_table,
                                 radchest_labels, translate_reports)
from ctvlp.text.public_reports import inspect_reports, merlin_reports

# The `text:` keys this stage reads (the rule passes exactly these as params; mining and RATE read their own).
TEXT_KEYS = ("label_set", "labeler", "context_rules", "uncertain_value", "section_headings", "report_columns",
             "join_fallback", "llm", "translate")
PUBLIC_REPORTS = {"merlin": merlin_reports, "inspect": inspect_reports}  # no CT-RATE-18 labels: -1


@dataclass
class TextTables:
    reports: pd.DataFrame
    labels: pd.DataFrame
    prompts: pd.DataFrame
    qc: pd.DataFrame


def input_files(sources: dict, text_cfg: dict) -> dict[str, str]:
    """The files :func:`build_text` reads besides the manifest and the DICOM index, as rule inputs (an edited
    reports export or label set reruns the text stage and what follows): the hospital reports export and the
    configured text files (label set, ConText rules, section headings, glossary, LLM question set)."""
    files = {}
    if (sources.get("hospital") or {}).get("reports_csv"):
        files["reports_export"] = str(sources["hospital"]["reports_csv"])
    for name in ("label_set", "context_rules", "section_headings"):
        if text_cfg.get(name):
            files[name] = str(text_cfg[name])
    if (text_cfg.get("translate") or {}).get("glossary"):
        files["glossary"] = str(text_cfg["translate"]["glossary"])
    if needs_llm(text_cfg) and (text_cfg.get("llm") or {}).get("question_set"):
        files["question_set"] = str(text_cfg["llm"]["question_set"])
    return files


def needs_llm(text_cfg: dict) -> bool:
    return text_cfg.get("labeler", "rules") == "llm" or bool(text_cfg.get("translate"))


def chat_client(text_cfg: dict, cache_dir: str | Path) -> ChatClient | None:
    """The OpenAI-compatible client of ``text.llm`` when the labeler or the translation needs one, else None."""
    if not needs_llm(text_cfg):
        return None
    return ChatClient(LLMSettings.from_config(text_cfg["llm"], str(cache_dir)))


def make_labeler(text_cfg: dict, label_set: LabelSet, client: ChatClient | None = None) -> Labeler:
    """``text.labeler``: rules (ConText over the label set's synonyms) or llm (the question set, via ``client``)."""
    uncertain = text_cfg.get("uncertain_value", -1)
    if text_cfg.get("labeler", "rules") == "llm":
        if client is None:
            raise ValueError("text.labeler is llm but no LLM client was given")
        return LLMLabeler(client, load_question_set((text_cfg.get("llm") or {}).get("question_set")), uncertain)
    return RuleLabeler(label_set, text_cfg.get("context_rules"), uncertain)


class ReportsJoinError(ValueError):
    """No hospital report joined a study of the index: the message says how many were read, why they did not
    join and, when the pseudonyms no longer match the index, that the salt changed since ingestion."""


def check_reports_joined(qc_rows: list[dict], joined: int, reports_file: str | Path,
                         salt_note: str | None = None) -> None:
    """Raise :class:`ReportsJoinError` when none of the reports export's reports joined a volume (``salt_note``:
    ``ctvlp.core.salt.salt_changed``'s line when the salt now set is not the index's); a salt that changed
    stops the stage even if some reports joined, since every pseudonym made now is foreign to the index."""
    if joined and not salt_note:
        return
    reports = [r for r in qc_rows if r.get("kind") == "report"]
    why = pd.Series([r.get("reason") or "joined" for r in reports], dtype=object).value_counts()
    counts = "; ".join(f"{n} x {reason}" for reason, n in why.items())
    name = Path(str(reports_file)).name
    text = f"hospital: {joined} of {len(reports)} reports in {name} joined a study of the index"
    if not reports:
        text += " (the file holds no report, only its header)"
    elif counts:
        text += f" ({counts})"
    raise ReportsJoinError(text + (f"; {salt_note}" if salt_note else ""))


def _concat(frames: list[pd.DataFrame]) -> pd.DataFrame:
    frames = [f for f in frames if len(f)]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def build_text(sources: dict, volumes: pd.DataFrame, salt: bytes, text_cfg: dict,
               index: pd.DataFrame | None = None, client: ChatClient | None = None,
               index_salt_check: str | None = None) -> TextTables:
    """Every source's reports and labels for the volumes of the manifest.

    ``index``: the hospital DICOM index's ``path``, ``reason`` and ``study_key`` columns (one header per study is
    read to scrub the patient's identifiers from report bodies); ``client``: the LLM client when
    :func:`needs_llm` (labeler llm or translation); ``index_salt_check``: the salt fingerprint stored with the
    index (``ctvlp.core.salt``). No hospital report joining a study stops the stage with
    :class:`ReportsJoinError`, which says how many were read and whether the salt changed since ingestion."""
    label_set = load_label_set(text_cfg.get("label_set"))
    labeler = make_labeler(text_cfg, label_set, client)
    reports, labels, qc = [], [], []
    if "hospital" in sources:
        identities = dicom_identities(index, sources["hospital"]["dicom_root"])
        rep, rows = hospital_reports(sources["hospital"]["reports_csv"], volumes, salt, text_cfg, identities)
        check_reports_joined(rows, len(rep), sources["hospital"]["reports_csv"],
                             salt_changed(index_salt_check, fingerprint(salt), "the DICOM index"))
        if text_cfg.get("translate"):
            tr = text_cfg["translate"]
            rep = translate_reports(rep, Translator(client, load_glossary(tr.get("glossary"), tr["from"], tr["to"])))
        reports.append(rep)
        lab, label_qc = label_reports(rep, labeler)
        labels.append(lab)
        qc += rows + label_qc
    if "ct_rate" in sources:
        rep, lab, rows = ctrate_text(sources["ct_rate"]["root"], volumes, salt)
        reports.append(rep)
        labels.append(lab)
        qc += rows
    if "rad_chestct" in sources:
        labels.append(radchest_labels(sources["rad_chestct"]["root"], volumes, salt))
    for name, read in PUBLIC_REPORTS.items():
        if name in sources:
            rep, rows = read(sources[name]["root"], volumes, salt)
            reports.append(rep)
            qc += rows
    return TextTables(_concat(reports), _concat(labels), prompts_table(label_set), pd.DataFrame(qc))
