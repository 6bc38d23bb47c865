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

try:  # the regex parser of CPython 3.11+ (private): literal_prefixes reads patterns with it; without it, no gate
    from re import _constants as sre
    from re import _parser as sre_parse
except ImportError:  # pragma: no cover - another Python
    sre = sre_parse = None

ABSENT = ("NEGATED_EXISTENCE", "RESOLVED", "INDICATION", "HISTORICAL")
UNCERTAIN = "POSSIBLE_EXISTENCE"
DEFAULT_SCOPE = 8
LIST_JOINER = re.compile(r"\b(?:or|nor|oder|noch|bzw)\b|\bor\s+any\b", re.IGNORECASE)
# a trigger with ``lists: and`` ("free of", "frei von", "without", "ohne") also runs through a list joined by "and"
LIST_JOINER_AND = re.compile(LIST_JOINER.pattern + r"|\b(?:and|und|sowie)\b", re.IGNORECASE)
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
    lists_with_and: bool = False


@dataclass(frozen=True)
class Trigger:
    rule: Rule
    start: int
    end: int


def lower(text: str) -> str:
    """Lower case with every offset kept ("İ" would grow to two characters and shift the spans)."""
    low = text.lower()
    return low if len(low) == len(text) else "".join(c.lower() if len(c.lower()) == 1 else c for c in text)


def _case_flag(body: str) -> int:
    return re.IGNORECASE if re.search(r"[A-ZÄÖÜ]", re.sub(r"\\.", "", body)) else 0


def compile_lower(body: str) -> re.Pattern:
    """Patterns run on lower-cased text without IGNORECASE (about 2x faster with Unicode); a pattern with an
    upper-case literal keeps IGNORECASE."""
    return re.compile(body, _case_flag(body))


WORD_START = re.compile(r"(?<!\w)\w")


def word_starts(low: str) -> list[int]:
    return [m.start() for m in WORD_START.finditer(low)]


def first_chars(body: str) -> frozenset[str] | None:
    """The characters (both cases) a match of regular expression ``body`` can begin with, or None where that is
    not simple to tell (a class such as \\w, an empty match): the index by first character below."""
    if sre_parse is None:
        return None
    try:
        tree = sre_parse.parse(body)
    except re.error:
        return None
    repeats = (sre.MAX_REPEAT, sre.MIN_REPEAT, getattr(sre, "POSSESSIVE_REPEAT", sre.MAX_REPEAT))

    def sequence(items: list, k: int = 0) -> set[str] | None:
        while k < len(items):
            op, av = items[k]
            if op in (sre.ASSERT, sre.ASSERT_NOT, sre.AT):
                k += 1
                continue
            if op in repeats and av[0] == 0:  # optional: what it starts with, or what follows it
                head, rest = sequence(list(av[2])), sequence(items, k + 1)
                return None if head is None or rest is None else head | rest
            return single(op, av)
        return None

    def single(op, av) -> set[str] | None:
        if op is sre.LITERAL:
            return {chr(av)}
        if op is sre.IN:
            out: set[str] = set()
            for o, a in av:
                if o is sre.LITERAL:
                    out.add(chr(a))
                elif o is sre.RANGE and a[1] - a[0] < 300:
                    out.update(map(chr, range(a[0], a[1] + 1)))
                else:
                    return None
            return out
        if op is sre.SUBPATTERN:
            return sequence(list(av[3]))
        if op is sre.BRANCH:
            out = set()
            for alternative in av[1]:
                first = sequence(list(alternative))
                if first is None:
                    return None
                out |= first
            return out
        if op in repeats:
            return sequence(list(av[2]))
        return None

    found = sequence(list(tree))
    return None if found is None else frozenset(c for x in found for c in (x.lower(), x.upper()) if len(c) == 1)


class FirstCharIndex:
    """Patterns tried at word starts, indexed by the character there: ``build`` makes one pattern of the
    ``bodies`` (in order) that can begin with a given character, so a position tries only those (a body whose
    first character is unknown is in every pattern). Same matches as the pattern of all bodies, less work."""

    def __init__(self, bodies: list[str], build):
        firsts = [first_chars(b) for b in bodies]
        chars = sorted({c for f in firsts if f is not None for c in f})
        self.build = build
        self.patterns = {c: build([f is None or c in f for f in firsts]) for c in chars}
        self.other = build([f is None for f in firsts])

    def get(self, char: str):
        return self.patterns.get(char, self.other)


_REPEATS = () if sre is None else (sre.MAX_REPEAT, sre.MIN_REPEAT, getattr(sre, "POSSESSIVE_REPEAT", sre.MAX_REPEAT))


def literal_prefixes(body: str, limit: int = 10, most: int = 256) -> frozenset[str] | None:
    """Literal strings (at most ``limit`` characters) one of which begins every match of regular expression
    ``body``, or None where a match may begin with a character class, a dot or the like ("\\w+ly"). Assertions
    are skipped and a repeat ends the prefix, so the set may say too much, never too little: a gate, not a test."""
    if sre_parse is None:
        return None
    try:
        tree = sre_parse.parse(body)
    except re.error:
        return None

    class TooMany(Exception):
        pass

    def capped(found: set) -> set:
        if len(found) > most:
            raise TooMany
        return found

    def sequence(items: list, k: int, head: str) -> set[tuple[str, bool]]:
        """(prefix, complete) pairs: complete when ``items`` were literal to their end."""
        while k < len(items):
            if len(head) >= limit:
                return {(head, False)}
            op, av = items[k]
            if op in (sre.ASSERT, sre.ASSERT_NOT, sre.AT):
                k += 1
                continue
            if op is sre.LITERAL:
                head += chr(av)
                k += 1
                continue
            if op is sre.IN and len(av) <= 8 and all(o is sre.LITERAL for o, _ in av):
                return capped({x for _, a in av for x in sequence(items, k + 1, head + chr(a))})
            if (op is sre.SUBPATTERN and not (av[1] or av[2])) or op is sre.BRANCH:
                alternatives = [list(av[3])] if op is sre.SUBPATTERN else [list(a) for a in av[1]]
                out: set[tuple[str, bool]] = set()
                for alternative in alternatives:
                    for prefix, complete in sequence(alternative, 0, head):
                        out |= sequence(items, k + 1, prefix) if complete else {(prefix, False)}
                return capped(out)
            if op in _REPEATS:
                low_count, _, sub = av
                out = sequence(items, k + 1, head) if low_count == 0 else set()
                return capped(out | {(prefix, False) for prefix, _ in sequence(list(sub), 0, head)})
            return {(head, False)}
        return {(head, True)}

    try:
        found = {prefix for prefix, _ in sequence(list(tree), 0, "")}
    except TooMany:
        return None
    return None if "" in found else frozenset(found)


def trie_regex(words: set[str] | frozenset[str]) -> str:
    """A regular expression matching where one of ``words`` (literal strings) begins, written as a trie: a position
    tries one branch per next character rather than every word, and every branch opens with a literal, which lets
    the regex engine skip to the characters that can begin a word. A word ends the branch (it suffices)."""
    tree: dict = {}
    for word in words:
        node = tree
        for c in word:
            node = node.setdefault(c, {})
        node[""] = {}

    def emit(node: dict) -> str:
        if "" in node:
            return ""
        branches = [re.escape(c) + emit(node[c]) for c in sorted(node)]
        return branches[0] if len(branches) == 1 else "(?:" + "|".join(branches) + ")"

    return emit(tree)


class StartGate:
    """Where one of ``bodies`` may match, found by a single regex scan (in C) over the report instead of one Python
    step per word: at word starts (``word_start``: positions of ``word_starts``) or anywhere. The positions are a
    superset of the real matches (literal prefixes as a trie, and a body without a literal prefix as itself), so a
    caller that matches its patterns at each of them finds what it would find at every word start (or position)."""

    def __init__(self, bodies: list[str], word_start: bool = True):
        prefixes = [literal_prefixes(b) for b in bodies]
        # at a word start the first character is a word character: a prefix opening with another never matches there
        words = {w for found in prefixes if found for w in found if not word_start or re.match(r"\w", w)}
        branches = ([trie_regex(words)] if words else []) + [(r"(?=\w)" if word_start else "") + f"(?:{b})"
                                                             for b, found in zip(bodies, prefixes) if found is None]
        flags = max([_case_flag(b) for b in bodies] + [0])  # what the callers' patterns may match, at least
        self.word_start = word_start
        self.pattern = None if not branches else re.compile(
            r"(?<!\w)(?=" + "|".join(branches) + ")" if word_start else "|".join(branches), flags)

    def starts(self, low: str) -> list[int]:
        if self.pattern is None:
            return []
        if self.word_start:
            return [m.start() for m in self.pattern.finditer(low)]
        out, pos = [], 0
        while (hit := self.pattern.search(low, pos)) is not None:  # overlapping: every position where one begins
            out.append(hit.start())
            pos = hit.start() + 1
        return out


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
                                  int(entry.get("max_scope") or DEFAULT_SCOPE), body, entry.get("lists") == "and"))
            except (KeyError, re.error) as err:
                raise ValueError(f"{path}: {lang} rule {entry!r}: {err}") from err
    return tuple(rules)


@functools.lru_cache(maxsize=8)
def _combined(rules: tuple[Rule, ...]) -> FirstCharIndex:
    """All rules as one alternation (one scan per report instead of one per rule), indexed by first character.
    At a position the first alternative that matches wins, so pseudo-triggers come first, then longer patterns
    before shorter ones."""
    order = sorted(range(len(rules)), key=lambda i: (rules[i].direction != "PSEUDO", -len(rules[i].pattern.pattern)))

    def build(keep: list[bool]) -> re.Pattern | None:
        parts = [f"(?P<r{i}>{rules[i].body})" for i, k in zip(order, keep) if k]
        return compile_lower(r"(?:" + "|".join(parts) + r")(?!\w)") if parts else None  # tried at word starts only

    return FirstCharIndex([rules[i].body for i in order], build)


_TABLES: dict[int, tuple[tuple[Rule, ...], FirstCharIndex, StartGate]] = {}


def _tables(rules: tuple[Rule, ...]) -> tuple[tuple[Rule, ...], FirstCharIndex, StartGate]:
    """The first-character index and the start gate of a rule tuple, looked up by identity: an lru_cache would hash
    every rule (a dataclass of ~50) on every report. The entry keeps the tuple alive, so its id is not reused."""
    found = _TABLES.get(id(rules))
    if found is None or found[0] is not rules:
        found = _TABLES[id(rules)] = (rules, _combined(rules), StartGate([r.body for r in rules]))
    return found


def find_triggers(text: str, rules: tuple[Rule, ...], lowered: bool = False,
                  starts: list[int] | None = None) -> list[Trigger]:
    """Non-overlapping trigger matches, left to right ("no change" is a pseudo-trigger, not "no"). ``starts`` (word
    starts) are where a trigger is tried; by default only those where one may begin (``StartGate``)."""
    low = text if lowered else lower(text)
    _, index, gate = _tables(rules)
    starts = gate.starts(low) if starts is None else starts
    found, last = [], -1
    for i in starts:
        if i < last:
            continue
        pattern = index.get(low[i])
        m = pattern.match(low, i) if pattern is not None else None
        if m and m.end() > i:
            found.append(Trigger(rules[int(m.lastgroup[1:])], i, m.end()))
            last = m.end()
    return found


def _words(text: str) -> int:
    return len(WORD.findall(text))


def _blocked(text: str, a: int, b: int, terminators: list[Trigger], forward: bool, to_sentence_end: bool,
             joiner: re.Pattern = LIST_JOINER) -> bool:
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
        if not joiner.search(rest[:clause_end]):
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
                       and not _blocked(sentence, t.end, start, terminators, True, indication,
                                        LIST_JOINER_AND if t.rule.lists_with_and else LIST_JOINER))
        if not applies and d in ("BACKWARD", "BIDIRECTIONAL") and t.start >= end:
            applies = (_words(sentence[end:t.start]) <= t.rule.max_scope
                       and not _blocked(sentence, end, t.start, terminators, False, False))
        if applies:
            absent |= t.rule.category in ABSENT
            uncertain |= t.rule.category == UNCERTAIN
    return "absent" if absent else "uncertain" if uncertain else "present"
