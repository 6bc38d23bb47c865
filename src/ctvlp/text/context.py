"""ConText (Harkema et al. 2009): is a mentioned finding negated, uncertain, resolved or only an indication?

Why our own small engine and not medspaCy/negspacy: both run on spaCy (about twenty compiled packages, a
pipeline of ~0.5-2 ms per report) and the rule path must label >= 2,000 reports/s per core; the algorithm itself
is a page (triggers with a direction and a scope that ends at clause boundaries and termination terms). The
rules are data in medspaCy's ConTextRule field names (``resources/context_rules.yaml``), so a site can run the
same file through medspaCy or extend ours.

Scope: a FORWARD trigger governs findings after it, a BACKWARD trigger findings before it, up to ``max_scope``
words, never across a termination term ("but", "jedoch"), a semicolon, or a comma, except that a forward
negation runs on through a list ("No pleural effusion, pericardial effusion or lymphadenopathy": the commas
are followed by a disjunction), and an INDICATION trigger runs to the end of its sentence. A trigger inside
the finding's own words negates it ("Lymphknoten nicht vergrößert", "the heart is not enlarged").
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import yaml

ABSENT = ("NEGATED_EXISTENCE", "RESOLVED", "INDICATION", "HISTORICAL")
UNCERTAIN = "POSSIBLE_EXISTENCE"
DEFAULT_SCOPE = 8
LIST_JOINER = re.compile(r"\b(?:or|nor|oder|noch|bzw)\b|\bor\s+any\b", re.IGNORECASE)
WORD = re.compile(r"\w+")
QUESTION = re.compile(r"[^.;:,]{0,20}\?")


@dataclass(frozen=True)
class Rule:
    literal: str
    category: str
    direction: str
    pattern: re.Pattern
    max_scope: int
    body: str = ""


@dataclass(frozen=True)
class Trigger:
    rule: Rule
    start: int
    end: int


def lower(text: str) -> str:
    """Lower case with every offset kept ("İ" would grow to two characters and shift the spans)."""
    low = text.lower()
    return low if len(low) == len(text) else "".join(c.lower() if len(c.lower()) == 1 else c for c in text)


def compile_lower(body: str) -> re.Pattern:
    """Patterns run on lower-cased text without IGNORECASE (about 2x faster with Unicode); a pattern with an
    upper-case literal keeps IGNORECASE."""
    upper = re.search(r"[A-ZÄÖÜ]", re.sub(r"\\.", "", body))
    return re.compile(body, re.IGNORECASE if upper else 0)


WORD_START = re.compile(r"(?<!\w)\w")


def word_starts(low: str) -> list[int]:
    return [m.start() for m in WORD_START.finditer(low)]


def match_at_word_starts(pattern: re.Pattern, low: str, starts: list[int]) -> list[re.Match]:
    """Non-overlapping matches of ``pattern`` tried only where a word begins: the same matches as a search
    for a pattern that must start a word, at a fraction of the cost of trying every character."""
    found, last = [], -1
    for i in starts:
        if i < last:
            continue
        m = pattern.match(low, i)
        if m and m.end() > m.start():
            found.append(m)
            last = m.end()
    return found


def default_rules_file() -> str:
    return str(resources.files("ctvlp") / "resources" / "context_rules.yaml")


@functools.lru_cache(maxsize=8)
def load_rules(path: str | None = None) -> tuple[Rule, ...]:
    """Every language's rules (reports mix languages); a bad rule names the file and the rule."""
    path = path or default_rules_file()
    spec = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    rules = []
    for lang, entries in spec.items():
        for entry in entries:
            try:
                body = entry.get("pattern") or re.escape(entry["literal"])
                rules.append(Rule(entry["literal"], entry["category"], entry["direction"],
                                  re.compile(rf"(?<!\w)(?:{body})(?!\w)", re.IGNORECASE),
                                  int(entry.get("max_scope") or DEFAULT_SCOPE), body))
            except (KeyError, re.error) as err:
                raise ValueError(f"{path}: {lang} rule {entry!r}: {err}") from err
    return tuple(rules)


@functools.lru_cache(maxsize=8)
def _combined(rules: tuple[Rule, ...]) -> re.Pattern:
    """All rules as one alternation (one scan per report instead of one per rule). At a position the first
    alternative that matches wins, so pseudo-triggers come first, then longer patterns before shorter ones."""
    order = sorted(range(len(rules)), key=lambda i: (rules[i].direction != "PSEUDO", -len(rules[i].pattern.pattern)))
    parts = [f"(?P<r{i}>{rules[i].body})" for i in order]
    return compile_lower(r"(?:" + "|".join(parts) + r")(?!\w)")  # tried at word starts only


def find_triggers(text: str, rules: tuple[Rule, ...], lowered: bool = False,
                  starts: list[int] | None = None) -> list[Trigger]:
    """Non-overlapping trigger matches, left to right ("no change" is a pseudo-trigger, not "no")."""
    low = text if lowered else lower(text)
    starts = word_starts(low) if starts is None else starts
    return [Trigger(rules[int(m.lastgroup[1:])], m.start(), m.end())
            for m in match_at_word_starts(_combined(rules), low, starts)]


def _words(text: str) -> int:
    return len(WORD.findall(text))


def _blocked(text: str, a: int, b: int, terminators: list[Trigger], forward: bool, to_sentence_end: bool) -> bool:
    """Whether a clause boundary lies in text[a:b] (between trigger and finding)."""
    if any(a <= t.start < b for t in terminators) or ";" in text[a:b]:
        return True
    if to_sentence_end:
        return False
    for m in re.finditer(",", text[a:b]):
        if not forward:
            return True
        rest = text[a + m.end():]
        clause_end = min([i for i in (rest.find(";"), rest.find(":")) if i >= 0] + [len(rest)])
        if not LIST_JOINER.search(rest[:clause_end]):
            return True
    return False


def status(sentence: str, start: int, end: int, triggers: list[Trigger]) -> str:
    """'present', 'absent' or 'uncertain' for the finding at sentence[start:end]; one followed by a question
    mark is a question ("Fragestellung: Pneumonie?"), not a finding."""
    if QUESTION.match(sentence, end):
        return "absent"
    terminators = [t for t in triggers if t.rule.direction == "TERMINATE"]
    absent = uncertain = False
    for t in triggers:
        d = t.rule.direction
        if d in ("TERMINATE", "PSEUDO"):
            continue
        applies = start <= t.start < end  # inside the finding's words
        if not applies and d in ("FORWARD", "BIDIRECTIONAL") and t.end <= start:
            indication = t.rule.category == "INDICATION"
            applies = ((indication or _words(sentence[t.end:start]) <= t.rule.max_scope)
                       and not _blocked(sentence, t.end, start, terminators, True, indication))
        if not applies and d in ("BACKWARD", "BIDIRECTIONAL") and t.start >= end:
            applies = (_words(sentence[end:t.start]) <= t.rule.max_scope
                       and not _blocked(sentence, end, t.start, terminators, False, False))
        if applies:
            absent |= t.rule.category in ABSENT
            uncertain |= t.rule.category == UNCERTAIN
    return "absent" if absent else "uncertain" if uncertain else "present"
