"""RATE question labels (the paper's disease labels) as label tables the prompt loss can use.

Files, as RadFinder's RATE pipeline writes them into ``report_structuring/p0rate_en/`` of each dataset
(lmb-freiburg/radfinder @7c6ab92: src/rate/engine_from_data.py, src/radfinder/tasks/question_vector_loader.py):
``questions_{chest|abdomen}_{split}.csv``, long format, columns ``report_id``, ``category``, ``question``,
``answer``; split ``train`` / ``valid`` (also read as ``val``) / ``test``. The project's own LLM labeler writes
the same format, so a site's hospital reports join them.

Question sets and prompts come from RadFinder's configuration (MIT licence; not copied into this project:
point ``text.rate.config_dir`` at a checkout's ``configs/rate/modalities_en``):
``question_maps/question_map_{chest|abdomen}.csv`` (``qid``, ``category``, ``question``: 93 chest questions
q0227-q0319, 226 abdomen questions q0001-q0226) and ``prompts_abdomen_chest_ct/*.yaml`` (``prompts: [{question,
positive: [3], negative: [3]}]``).

Answer mapping as the authors': stripped, a trailing "." removed, lower-cased; ``yes`` -> 1, anything else -> 0;
a question missing for a listed report -> 0; a report not in a modality's file -> -1 (unknown, masked) for that
modality's questions. Label groups for the loss (RadFinder's ``question_group_weights``): ``abdomen`` 1.0,
``chest`` 1.0, ``ctrate`` (the 18 CT-RATE classes of the text stage's label table) 5.0.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from ctvlp.core.ids import Pseudonymizer
from ctvlp.io import ctrate

MODALITIES = ("abdomen", "chest")  # RadFinder's "both" order: abdomen [0:226], chest [226:319]
SPLIT_FILES = {"train": ("train",), "valid": ("valid", "val"), "test": ("test",)}
LONG_COLUMNS = ("report_id", "category", "question", "answer")
DEFAULT_GROUP_WEIGHTS = {"abdomen": 1.0, "chest": 1.0, "ctrate": 5.0}
# Known spelling differences between RadFinder's question maps and its prompt files (binary_zs_rate_task.py).
PROMPT_TEXT_FIXES = {"debice": "device", "dilation": "dilatation", "lymphomas": "lymphoma"}


class RateLabelError(ValueError):
    """A RATE file that cannot be read as published: the message names the file and the reason."""


def answer_value(answer: object) -> int:
    """1 for "yes" (any case, surrounding spaces or a trailing full stop), else 0."""
    return int(str(answer).strip().rstrip(".").lower() == "yes")


def read_question_map(config_dir: str | Path, modality: str) -> pd.DataFrame:
    path = Path(config_dir) / "question_maps" / f"question_map_{modality}.csv"
    if not path.is_file():
        raise RateLabelError(f"{path}: question map not found")
    table = pd.read_csv(path, dtype=str)
    missing = {"qid", "category", "question"} - set(table.columns)
    if missing:
        raise RateLabelError(f"{path}: lacks column(s) {', '.join(sorted(missing))}")
    return table.assign(group=modality)


def _prompt_key(question: str) -> str:
    for old, new in PROMPT_TEXT_FIXES.items():
        question = question.replace(old, new)
    return question[:1].upper() + question[1:]


def read_prompts(config_dir: str | Path, questions: pd.DataFrame) -> pd.DataFrame:
    """3 positive and 3 negative prompts per qid, matched to the question map by question text."""
    folder = Path(config_dir) / "prompts_abdomen_chest_ct"
    by_text: dict[str, dict] = {}
    for path in sorted(folder.glob("*.yaml")):
        for entry in (yaml.safe_load(path.read_text()) or {}).get("prompts", []):
            by_text[entry["question"]] = entry
    rows, missing = [], []
    for q in questions.itertuples():
        entry = by_text.get(q.question) or by_text.get(_prompt_key(q.question))
        if entry is None:
            missing.append(q.qid)
            continue
        for polarity in ("positive", "negative"):
            for rank, prompt in enumerate(entry[polarity]):
                rows.append({"label": q.qid, "polarity": polarity, "rank": rank, "prompt": prompt,
                             "question": q.question, "category": q.category, "group": q.group})
    if missing:
        raise RateLabelError(f"{folder}: no prompts for {len(missing)} question(s), e.g. {', '.join(missing[:3])}")
    return pd.DataFrame(rows)


def long_file(folder: str | Path, modality: str, split: str) -> Path | None:
    for name in SPLIT_FILES[split]:
        path = Path(folder) / f"questions_{modality}_{name}.csv"
        if path.is_file():
            return path
    return None


def read_answers(path: Path, questions: pd.DataFrame) -> pd.DataFrame:
    """Wide 0/1 table (index report_id, one column per qid) from one long-format file."""
    table = pd.read_csv(path, dtype=str, keep_default_na=False)
    missing = set(LONG_COLUMNS) - set(table.columns)
    if missing:
        raise RateLabelError(f"{path}: lacks column(s) {', '.join(sorted(missing))}")
    qid_of = dict(zip(questions.question, questions.qid))
    unknown = sorted(set(table.question) - set(qid_of))
    if unknown:
        raise RateLabelError(f"{path}: {len(unknown)} question(s) not in the question map, e.g. {unknown[0]!r}")
    table = table.assign(qid=table.question.map(qid_of), value=table.answer.map(answer_value))
    wide = table.pivot_table(index="report_id", columns="qid", values="value", aggfunc="last")  # a repeat: the last
    return wide.reindex(columns=list(questions.qid)).fillna(0).astype(np.int64)


def report_index(dataset: str, volumes: pd.DataFrame, salt: bytes):
    """report_id -> (QC item, volume ids). CT-RATE: the report key (every reconstruction of the scan);
    Merlin ``study id`` / INSPECT ``image_id``: the pseudonym of the public name; hospital: the accession number,
    joined by its salted key and never written in clear."""
    ok = volumes[(volumes.dataset == dataset) & (volumes.status == "ok")]
    pseudo = Pseudonymizer(salt)
    if dataset == "hospital":
        by_key = ok.groupby("accession_key").volume_id.apply(list).to_dict()

        def lookup(report_id: str):
            key = pseudo("hospital", "accession", report_id)
            return key, by_key.get(key, [])
        return lookup
    if dataset == "ct_rate":
        by_report: dict[str, list[str]] = {}
        for v in ok.itertuples():
            by_report.setdefault(ctrate.scan_of(ctrate.volume_name(Path(v.source))), []).append(v.volume_id)
        return lambda report_id: (report_id, by_report.get(report_id, []))
    ids = set(ok.volume_id)
    return lambda report_id: (report_id, [v] if (v := pseudo(dataset, "volume", report_id)) in ids else [])


def rate_labels(folders: dict[str, str | Path], volumes: pd.DataFrame, salt: bytes, config_dir: str | Path,
                splits=("train", "valid", "test")) -> tuple[pd.DataFrame, pd.DataFrame, list[dict]]:
    """(labels, prompts, QC rows). ``labels``: one row per labelled volume, ``volume_id``, ``dataset``,
    ``labeler`` = rate, ``labeler_version`` = the files read, and one 1/0/-1 column per qid (abdomen then chest);
    ``prompts``: the text stage's prompt table (label = qid) with question, category and group."""
    questions = pd.concat([read_question_map(config_dir, m) for m in MODALITIES], ignore_index=True)
    prompts = read_prompts(config_dir, questions)
    rows: dict[str, dict] = {}
    qc: list[dict] = []
    for dataset, folder in folders.items():
        lookup = report_index(dataset, volumes, salt)
        for modality in MODALITIES:
            qs = questions[questions.group == modality]
            for split in splits:
                path = long_file(folder, modality, split)
                if path is None:
                    continue
                wide = read_answers(path, qs)
                for report_id, answers in wide.iterrows():
                    item, vids = lookup(str(report_id))
                    qc.append({"dataset": dataset, "kind": "rate_labels", "item": f"{path.name}:{item}",
                               "status": "accepted" if vids else "rejected",
                               "reason": "" if vids else "report matches no volume", "flags": ""})
                    for vid in vids:
                        row = rows.setdefault(vid, {"volume_id": vid, "dataset": dataset, "labeler": "rate",
                                                    "labeler_version": set()})
                        row.update(answers.to_dict())
                        row["labeler_version"].add(path.name)
    qids = list(questions.qid)
    table = pd.DataFrame([{**{q: -1 for q in qids}, **r, "labeler_version": ",".join(sorted(r["labeler_version"]))}
                          for r in rows.values()],
                         columns=["volume_id", "dataset", "labeler", "labeler_version", *qids])
    table[qids] = table[qids].fillna(-1).astype(np.int64)
    return table, prompts, qc


def label_groups(questions_or_prompts: pd.DataFrame, ctrate_labels, weights: dict[str, float] | None = None) -> dict:
    """The label layout and group weights for the prompt loss: {group: {"labels": [...], "weight": w}} in
    RadFinder's order abdomen, chest, ctrate."""
    weights = {**DEFAULT_GROUP_WEIGHTS, **(weights or {})}
    table = questions_or_prompts.drop_duplicates("label" if "label" in questions_or_prompts else "qid")
    key = "label" if "label" in table else "qid"
    out = {g: {"labels": list(table[table.group == g][key]), "weight": float(weights[g])} for g in MODALITIES}
    out["ctrate"] = {"labels": list(ctrate_labels), "weight": float(weights["ctrate"])}
    return out
