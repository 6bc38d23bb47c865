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

from ctvlp.text.context import (FirstCharIndex, StartGate, Trigger, compile_lower, default_rules_file,
                                find_triggers, load_rules, lower, status)
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
    # label -> (synonyms that start a word, compound-word synonyms searched inside words), lower case
    patterns: dict[str, tuple[re.Pattern | None, re.Pattern | None]]
    prompts: dict[str, dict[str, list[str]]]  # label -> positive/negative -> prompts
    # One pass per report, not one per label. Word-start synonyms: per first character, one pattern with an
    # optional lookahead group per label, so a single match call at a word start says which labels' synonyms begin
    # there and where each ends (several labels may share a start: "calcification of the aorta and coronary").
    anchored_index: FirstCharIndex | None = None
    # Compound-word synonyms: where any of them occurs, then the same one-call test of every label there.
    infix_scan: StartGate | None = None
    infix_at_once: tuple[re.Pattern, tuple[tuple[int, str], ...]] | None = None
    # The word starts where a word-start synonym may begin (one regex scan per report, ``StartGate``)
    anchored_gate: StartGate | None = None


def _at_once(alternatives: dict[str, list[str]], word_start: bool) -> tuple[re.Pattern, tuple[tuple[int, str], ...]] | None:
    """One optional lookahead group per label with alternatives: (pattern, ((group number, label), ...))."""
    parts, names = [], []
    for j, (label, alts) in enumerate(alternatives.items()):
        if alts:
            start = r"(?<!\w)" if word_start else ""
            parts.append(rf"(?=(?P<g{j}>{start}(?:{'|'.join(alts)})(?!\w)))?")
            names.append((f"g{j}", label))
    if not parts:
        return None
    pattern = compile_lower("".join(parts))
    return pattern, tuple((pattern.groupindex[name], label) for name, label in names)


def default_label_set_file() -> str:
    return str(resources.files("ctvlp") / "resources" / "labels_ctrate18.yaml")


@functools.lru_cache(maxsize=8)
def load_label_set(path: str | None = None) -> LabelSet:
    spec = yaml.safe_load(Path(path or default_label_set_file()).read_text(encoding="utf-8"))
    patterns, prompts, synonyms_of = {}, {}, {}
    for label, entry in spec["labels"].items():
        synonyms = [s for lang in ("en", "de") for s in entry.get(lang) or []]
        # synonyms that start with \w* (compound words: "Lungenrundherd") are searched from their fixed part,
        # which the regex engine finds much faster; the match is then widened to its word start
        anchored = [s for s in synonyms if not s.startswith("\\w*")]
        infix = [s[3:] for s in synonyms if s.startswith("\\w*")]
        bodies = (r"(?:" + "|".join(anchored) + r")(?!\w)" if anchored else None,
                  r"(?:" + "|".join(infix) + r")(?!\w)" if infix else None)
        try:
            patterns[label] = tuple(compile_lower(b) if b else None for b in bodies)
        except re.error as err:
            raise ValueError(f"{path or default_label_set_file()}: label '{label}': bad synonym pattern: {err}") from err
        synonyms_of[label] = (anchored, infix)
        prompts[label] = {"positive": list(entry["prompts"]["positive"]),
                          "negative": list(entry["prompts"]["negative"])}
        if len(prompts[label]["positive"]) < 1 or len(prompts[label]["negative"]) < 1:
            raise ValueError(f"{path}: label '{label}' needs positive and negative prompts")
    flat = [(label, syn) for label, (anchored, _) in synonyms_of.items() for syn in anchored]
    anchored_index = FirstCharIndex([syn for _, syn in flat], lambda keep: _at_once(
        {label: [syn for (lab, syn), k in zip(flat, keep) if k and lab == label] for label in synonyms_of}, True))
    infix = {label: compound for label, (_, compound) in synonyms_of.items()}
    every_infix = [x for alts in infix.values() for x in alts]
    infix_scan = StartGate(every_infix, word_start=False) if every_infix else None
    return LabelSet(spec["name"], str(spec["version"]), tuple(spec["labels"]), patterns, prompts, anchored_index,
                    infix_scan, _at_once(infix, False), StartGate([syn for _, syn in flat]))


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
        label_set = self.label_set
        found, seen = [], set()
        index = label_set.anchored_index
        for i in label_set.anchored_gate.starts(low) if index is not None else ():  # one match call per candidate
            at_once = index.get(low[i])
            if at_once is None:
                continue
            m = at_once[0].match(low, i)
            if m.lastindex is None:  # no label's synonym begins here
                continue
            regs = m.regs
            for g, label in at_once[1]:
                end = regs[g][1]
                if end > i:
                    found.append((label, i, end))
        for i in label_set.infix_scan.starts(low) if label_set.infix_scan is not None else ():  # compound words
            m = label_set.infix_at_once[0].match(low, i)
            if m.lastindex is None:
                continue
            regs = m.regs
            for g, label in label_set.infix_at_once[1]:
                end = regs[g][1]
                if end > i and (key := (label, _word_start(low, i), end)) not in seen:
                    seen.add(key)
                    found.append(key)
        if not found:
            return []
        out = []
        triggers = find_triggers(low, self.rules, lowered=True)
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
