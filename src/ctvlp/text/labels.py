"""Disease labels from report text: 1 present, 0 absent, -1 not mentioned or uncertain.

The labeler sits behind a small interface (``Labeler``: a name, a version and a call on text) so
an LLM backend can replace the rule labeler without touching the workflow. Label sets are YAML
files carrying, per label, synonyms in each language and the positive/negative prompts of the
disease-prompt loss.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Protocol

import yaml

from ctvlp.text.sentences import sentence_spans

NEGATION_BEFORE = {
    "en": r"\b(?:no|not|without|free of|absence of|negative for|neither|nor|none)\b",
    "de": r"\b(?:kein\w*|nicht|ohne|frei von|weder|noch)\b",
}
NEGATION_AFTER = {
    "en": r"\b(?:(?:is|are|was|were) not (?:seen|present|identified|detected)|not seen|absent|(?:has|have) resolved|excluded)\b",
    "de": r"\b(?:ausgeschlossen|nicht (?:mehr )?(?:nachweisbar|abgrenzbar|erkennbar)|regredient)\b",
}
UNCERTAIN = {
    "en": r"\b(?:possible|possibly|probable|questionable|suspicious for|suspected|cannot be (?:excluded|ruled out)"
          r"|may represent|differential)\b",
    "de": r"(?:\bfraglich\w*|\bmöglich\w*|\bv\.\s?a\.|\bverdacht auf\b|\bnicht auszuschlie\w+|\bam ehesten\b|\bdd\b)",
}
CONTRAST = r"\b(?:but|however|whereas|while|aber|jedoch|wohingegen|allerdings)\b"


class Labeler(Protocol):
    """What the workflow needs of a labeler (rules today, an LLM later)."""

    name: str
    version: str

    def __call__(self, text: str, lang: str = "en") -> dict[str, int]: ...


@dataclass(frozen=True)
class LabelSet:
    name: str
    version: str
    labels: tuple[str, ...]
    patterns: dict[str, dict[str, re.Pattern]]  # label -> lang -> regex
    prompts: dict[str, dict[str, list[str]]]  # label -> positive/negative -> prompts


def default_label_set_file() -> str:
    return str(resources.files("ctvlp") / "resources" / "labels_ctrate18.yaml")


@functools.lru_cache(maxsize=8)
def load_label_set(path: str | None = None) -> LabelSet:
    spec = yaml.safe_load(Path(path or default_label_set_file()).read_text(encoding="utf-8"))
    patterns, prompts = {}, {}
    for label, entry in spec["labels"].items():
        patterns[label] = {lang: re.compile(r"(?<!\w)(?:" + "|".join(entry[lang]) + ")", re.IGNORECASE)
                           for lang in ("en", "de") if entry.get(lang)}
        prompts[label] = {"positive": list(entry["prompts"]["positive"]),
                          "negative": list(entry["prompts"]["negative"])}
        if len(prompts[label]["positive"]) < 1 or len(prompts[label]["negative"]) < 1:
            raise ValueError(f"{path}: label '{label}' needs positive and negative prompts")
    return LabelSet(spec["name"], str(spec["version"]), tuple(spec["labels"]), patterns, prompts)


def _sentences(text: str, lang: str = "en") -> list[str]:
    """Sentences (abbreviation-aware, as the miner splits them), then clauses at semicolons."""
    return [part for a, b in sentence_spans(text, lang) for part in text[a:b].split(";") if part.strip()]


def mention_status(sentence: str, start: int, end: int, lang: str) -> int:
    """1, 0 or -1 for one mention, from cues in its sentence (scope ends at a contrast word)."""
    before, after = sentence[:start], sentence[end:]
    contrast = list(re.finditer(CONTRAST, before, re.IGNORECASE))
    if contrast:
        before = before[contrast[-1].end():]
    after = re.split(CONTRAST, after, maxsplit=1, flags=re.IGNORECASE)[0]
    langs = (lang, "de" if lang == "en" else "en")  # reports mix languages: own cues first, then the other's
    if any(re.search(UNCERTAIN[lg], before + " " + after, re.IGNORECASE) for lg in langs):
        return -1
    if any(re.search(NEGATION_BEFORE[lg], before, re.IGNORECASE) for lg in langs):
        return 0
    clause_after = re.split(r"[,;]", after, maxsplit=1)[0]
    if any(re.search(NEGATION_AFTER[lg], clause_after, re.IGNORECASE) for lg in langs):
        return 0
    return 1


class RuleLabeler:
    """Synonyms plus negation and uncertainty cues; a present mention wins over absent ones."""

    name = "rules"

    def __init__(self, label_set: LabelSet | None = None):
        self.label_set = label_set or load_label_set()
        self.version = f"{self.label_set.name}-{self.label_set.version}"

    def __call__(self, text: str, lang: str = "en") -> dict[str, int]:
        result = {label: -1 for label in self.label_set.labels}
        statuses: dict[str, set[int]] = {label: set() for label in self.label_set.labels}
        for sentence in _sentences(text, lang):
            for label, by_lang in self.label_set.patterns.items():
                for pattern in by_lang.values():  # synonyms of every language: reports mix them
                    for m in pattern.finditer(sentence):
                        statuses[label].add(mention_status(sentence, m.start(), m.end(), lang))
        for label, seen in statuses.items():
            if 1 in seen:
                result[label] = 1
            elif 0 in seen:
                result[label] = 0
        return result


def extract_labels(text: str, lang: str = "en") -> dict[str, int]:
    """Labels of the default label set (18 CT-RATE abnormalities) with the rule labeler."""
    return _default_labeler()(text, lang)


@functools.lru_cache(maxsize=1)
def _default_labeler() -> RuleLabeler:
    return RuleLabeler()
