"""Sentence boundaries of report text: pySBD, plus what radiology shorthand needs.

Why pySBD (measured on the issue-19 cases, see docs/text.md): it is maintained rule-based
segmentation with German and English abbreviation and ordinal rules, and it kept "im 4. ICR", "ca. 8 mm",
"vgl. Voruntersuchung" and "(Se. 3/Bi. 45). Erguss" right where syntok split "im 4." and "ca." and did not cut
after "45).". It is slower (about 1.3 ms for a 220-character German findings line against syntok's 0.3 ms),
so it is only asked about lines with an ambiguous boundary; a line whose every candidate boundary is a full
word of three or more letters (not an abbreviation) followed by a capital is cut there without the call.
Two additions are ours: pySBD's abbreviation list gains report shorthand ("li.", "approx.", "Z. n.",
``resources/sentence_rules.yaml``) and loses units that end report sentences ("8 mm."), and a period right
after an image reference ("Serie 2 Bild 14. Rundherd") ends the sentence although pySBD reads "14." as an
ordinal.
"""

from __future__ import annotations

import functools
import re
from importlib import resources

import pysbd
import yaml
from pysbd.languages import Language

_CANDIDATE = re.compile(r"[.!?;]?[.!?](?=\s+\S)")
_LETTERS = re.compile(r"[^\W\d_]{2,}(?:-[^\W\d_]+)*")
_CLOSING = re.compile(r"[^.\s][)\]]$")
_DOTTED = re.compile(r"(?:[a-zäöü]\.)+[a-zäöü]?")
_DATE = re.compile(r"\d{1,2}\.\d{1,2}\.\d{2,4}")
# words after which a number is an image or a measurement, never an ordinal: "Bild 59. Normal", "Serie 3. Kein"
_COUNTED = re.compile(r"(?:bild(?:er|ern|nr)?|ima|image|images|img|schicht(?:en)?|slice|serie|series|se|bi|"
                      r"segment|mm|cm|ml|hu|he|grad|x)", re.IGNORECASE)


UNITS = frozenset({"mm", "cm", "ml", "op"})  # in pySBD's German list, but they end report sentences ("8 mm.")


@functools.lru_cache(maxsize=1)
def _ours() -> frozenset[str]:
    spec = yaml.safe_load((resources.files("ctvlp") / "resources" / "sentence_rules.yaml").read_text("utf-8"))
    return frozenset(a.lower().rstrip(".") for a in spec["abbreviations"].split())


@functools.lru_cache(maxsize=2)
def _language(lang: str):
    """pySBD's language module with the report shorthand added and the units taken out."""
    base = Language.get_language_code("de" if lang == "de" else "en")
    letters = set("abcdefghijklmnopqrstuvwxyzäöü")  # "s. Serie 3", "Z. n.", "V. a."
    words = sorted(({a.strip().lower() for a in base.Abbreviation.ABBREVIATIONS} | _ours() | letters) - UNITS)
    abbreviation = type("Abbreviation", (base.Abbreviation,), {"ABBREVIATIONS": words})
    return type(f"Radiology{base.__name__}", (base,), {"Abbreviation": abbreviation})


@functools.lru_cache(maxsize=1)
def _abbreviations() -> frozenset[str]:
    return frozenset(w.rstrip(".") for lang in ("de", "en") for w in _language(lang).Abbreviation.ABBREVIATIONS)


@functools.lru_cache(maxsize=2)
def _segmenter(lang: str):
    segmenter = pysbd.Segmenter(language="de" if lang == "de" else "en", clean=False, char_span=True)
    segmenter.language_module = _language(lang)
    return segmenter


def _word_before(line: str, i: int) -> str:
    """The run of non-space characters that ends at ``line[i]`` (what ``re.search(r"(\\S+)$", line[:i])`` finds,
    walked back from ``i``: the regular expression tried every start of the line, quadratic on long lines)."""
    j = i
    while j > 0 and not line[j - 1].isspace():
        j -= 1
    return line[j:i]


def _is_abbreviation(word: str) -> bool:
    token = word.lower().lstrip("([").rstrip(".")
    return token in _abbreviations() or (len(token) == 1 and token.isalpha()) or bool(_DOTTED.fullmatch(token))


CUT, KEEP, DOUBT = "cut", "keep", "doubt"


def _decide(line: str, m: re.Match, lang: str) -> str:
    """What a candidate boundary is, where no splitter could doubt it: no cut before a lower-case letter or after
    an abbreviation ("li. Unterlappen", "Bi. 45", "ca. 8 mm"); a cut after "!"/"?", after a word of two or more
    letters, or after a closing parenthesis, before a capital or "(", and (English only: German "14." may be an
    ordinal) after a number that does not open the line. Everything else is pySBD's to decide."""
    nxt = line[m.end():].lstrip()[:1]
    word = _word_before(line, m.start())
    if nxt.islower() or (m.group().endswith(".") and _is_abbreviation(word)):
        return KEEP
    if not (nxt.isupper() or nxt == "("):
        return DOUBT
    if m.group().endswith(("!", "?")) or _LETTERS.fullmatch(word) or _CLOSING.search(word) or _DATE.fullmatch(word):
        return CUT
    head = line[:m.start() - len(word)].rstrip()
    if word.isdigit() and head:
        # "8." opening a line is a list number; elsewhere English numbers end sentences, and German ones do after
        # an image/series word or a unit, or with three or more digits ("Bild 140."); "im 4. ICR" goes to pySBD
        if lang == "en" or len(word) > 2 or _COUNTED.fullmatch(_word_before(head, len(head)).strip(",;:(") or "-"):
            return CUT
    return DOUBT


def _unambiguous(line: str, lang: str = "de") -> list[int] | None:
    """Cut points when no candidate boundary of ``line`` is doubtful; else None."""
    cuts = []
    for m in _CANDIDATE.finditer(line):
        decision = _decide(line, m, lang)
        if decision == DOUBT:
            return None
        if decision == CUT:
            cuts.append(m.end())
    return cuts


@functools.lru_cache(maxsize=8192)
def _line_cuts(line: str, lang: str) -> tuple[int, ...]:
    """Offsets inside ``line`` where a new sentence starts: plain boundaries cut directly, and pySBD asked
    only about the pieces between them that hold a doubtful one (it costs ~1-5 ms a call)."""
    cuts, piece_start, doubtful = [], 0, False
    pieces = []
    for m in _CANDIDATE.finditer(line):
        decision = _decide(line, m, lang)
        if decision == CUT:
            pieces.append((piece_start, m.end(), doubtful))
            piece_start, doubtful = m.end(), False
        elif decision == DOUBT:
            doubtful = True
    pieces.append((piece_start, len(line), doubtful))
    for start, end, doubt in pieces:
        if start:
            cuts.append(start)
        if not doubt:
            continue
        piece = line[start:end]
        for sent in _segmenter(lang).segment(piece)[1:]:
            head = piece[:sent.start].rstrip()
            if head.endswith(".") and _is_abbreviation(_word_before(head, len(head))):
                continue  # pySBD's English rules still cut after some listed shorthand ("s. Serie 3")
            cuts.append(start + sent.start)
    return tuple(cuts)


def sentence_spans(text: str, lang: str = "en", protected: list[tuple[int, int]] | tuple = ()) -> list[tuple[int, int]]:
    """(start, end) of every sentence, whitespace trimmed: lines first, then pySBD inside a line.

    ``protected`` spans are image references: no cut falls inside one, and a period right after one,
    followed by a capital, always ends the sentence.
    """
    spans: list[tuple[int, int]] = []
    for line_match in re.finditer(r"[^\n]+", text):
        line, offset = line_match.group(), line_match.start()
        cuts = {offset + c for c in _line_cuts(line, lang)}
        for a, b in protected:
            if offset <= a < offset + len(line):
                cuts = {c for c in cuts if not a < c < b}
                after = re.match(r"\s*\)?\s*[.]\s+(?=[A-ZÄÖÜ])", text[b:offset + len(line)])
                if after:
                    cuts.add(b + after.end())
        bounds = [offset] + sorted(cuts) + [offset + len(line)]
        for a, b in zip(bounds, bounds[1:]):
            piece = text[a:b]
            lead, trail = len(piece) - len(piece.lstrip()), len(piece.rstrip())
            if piece.strip():
                spans.append((a + lead, a + trail))
    return spans
