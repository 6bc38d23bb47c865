"""Disease labels from report text: 1 present, 0 absent or not mentioned, -1 uncertain (configurable).

A finding the report does not mention is 0, as in the paper's answer mapping ("yes" -> 1, anything else -> 0);
-1 is kept for uncertain mentions ("possible nodule", "Erguss nicht auszuschließen"), so the prompt loss masks
only those. The labeler sits behind a small interface (``Labeler``: a name, a version and a call on text) so the
LLM backend (``ctvlp.text.llm``) can replace the rule labeler without touching the workflow. Label sets are YAML
files carrying, per label, synonyms in each language and the positive/negative prompts of the disease-prompt loss;
negation, uncertainty, resolution and indication come from ConText rules (``ctvlp.text.context``).
"""

from __future__ import annotations

import functools
import hashlib
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Protocol

import yaml

from ctvlp.text.context import (Trigger, compile_lower, default_rules_file, find_triggers, load_rules, lower,
                                status, word_starts)
from ctvlp.text.sentences import sentence_spans


class Labeler(Protocol):
    """What the workflow needs of a labeler (rules or an LLM)."""

    name: str
    version: str

    def __call__(self, text: str, lang: str = "en") -> dict[str, int]: ...


@dataclass(frozen=True)
class LabelSet:
    name: str
    version: str
    labels: tuple[str, ...]
    # label -> (synonyms that start a word, matched where ``any_anchored`` found one; compound-word synonyms,
    # searched) in lower case
    patterns: dict[str, tuple[re.Pattern | None, re.Pattern | None]]
    prompts: dict[str, dict[str, list[str]]]  # label -> positive/negative -> prompts
    any_anchored: re.Pattern | None = None  # every label's word-start synonyms: where to look at all


def default_label_set_file() -> str:
    return str(resources.files("ctvlp") / "resources" / "labels_ctrate18.yaml")


@functools.lru_cache(maxsize=8)
def load_label_set(path: str | None = None) -> LabelSet:
    spec = yaml.safe_load(Path(path or default_label_set_file()).read_text(encoding="utf-8"))
    patterns, prompts = {}, {}
    for label, entry in spec["labels"].items():
        synonyms = [s for lang in ("en", "de") for s in entry.get(lang) or []]
        # synonyms that start with \w* (compound words: "Lungenrundherd") are searched from their fixed part,
        # which the regex engine finds much faster; the match is then widened to its word start
        anchored = [s for s in synonyms if not s.startswith("\\w*")]
        infix = [s[3:] for s in synonyms if s.startswith("\\w*")]
        try:
            patterns[label] = (compile_lower(r"(?:" + "|".join(anchored) + r")(?!\w)") if anchored else None,
                               compile_lower(r"(?:" + "|".join(infix) + r")(?!\w)") if infix else None)
        except re.error as err:
            raise ValueError(f"{path or default_label_set_file()}: label '{label}': bad synonym pattern: {err}") from err
        prompts[label] = {"positive": list(entry["prompts"]["positive"]),
                          "negative": list(entry["prompts"]["negative"])}
        if len(prompts[label]["positive"]) < 1 or len(prompts[label]["negative"]) < 1:
            raise ValueError(f"{path}: label '{label}' needs positive and negative prompts")
    everything = [p.pattern for p, _ in patterns.values() if p is not None]
    any_anchored = compile_lower(r"(?<!\w)(?:" + "|".join(everything) + ")") if everything else None
    return LabelSet(spec["name"], str(spec["version"]), tuple(spec["labels"]), patterns, prompts, any_anchored)


def _word_start(text: str, i: int) -> int:
    while i > 0 and (text[i - 1].isalnum() or text[i - 1] == "_"):
        i -= 1
    return i


class RuleLabeler:
    """Synonyms found per sentence, each judged by ConText; a present mention wins, then an uncertain one."""

    name = "rules"

    def __init__(self, label_set: LabelSet | None = None, rules_file: str | None = None, uncertain_value: int = -1):
        self.label_set = label_set or load_label_set()
        self.rules = load_rules(rules_file)
        self.uncertain_value = int(uncertain_value)
        rules_hash = hashlib.sha256(Path(rules_file or default_rules_file()).read_bytes()).hexdigest()[:8]
        self.version = f"{self.label_set.name}-{self.label_set.version}-context-{rules_hash}-u{self.uncertain_value}"

    def mentions(self, text: str, lang: str = "en") -> list[tuple[str, str, str]]:
        """(label, mention text, status) for every synonym found: what the labels are made of."""
        low = lower(text)
        starts = word_starts(low)
        candidates, pos, scan = [], 0, self.label_set.any_anchored
        while scan is not None and (hit := scan.search(low, pos)):  # one C-speed scan for every label
            candidates.append(hit.start())
            pos = hit.start() + 1
        found = []
        for label, (anchored, infix) in self.label_set.patterns.items():
            if anchored is not None:
                found += [(label, i, m.end()) for i in candidates if (m := anchored.match(low, i))]
            if infix is not None:
                found += [(label, _word_start(low, m.start()), m.end()) for m in infix.finditer(low)]
        if not found:
            return []
        out = []
        triggers = find_triggers(low, self.rules, lowered=True, starts=starts)
        for a, b in sentence_spans(text, lang):
            inside = [f for f in found if a <= f[1] < b]
            if not inside:
                continue
            local = [Trigger(t.rule, t.start - a, t.end - a) for t in triggers if a <= t.start and t.end <= b]
            sentence = low[a:b]
            for label, start, end in inside:
                out.append((label, text[start:end], status(sentence, start - a, min(end, b) - a, local)))
        return out

    def __call__(self, text: str, lang: str = "en") -> dict[str, int]:
        seen: dict[str, set[str]] = {label: set() for label in self.label_set.labels}
        for label, _, state in self.mentions(text, lang):
            seen[label].add(state)
        return {label: 1 if "present" in s else self.uncertain_value if "uncertain" in s else 0
                for label, s in seen.items()}


def extract_labels(text: str, lang: str = "en") -> dict[str, int]:
    """Labels of the default label set (18 CT-RATE abnormalities) with the rule labeler."""
    return _default_labeler()(text, lang)


@functools.lru_cache(maxsize=1)
def _default_labeler() -> RuleLabeler:
    return RuleLabeler()
