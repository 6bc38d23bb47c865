"""Sentence boundaries of report text: pySBD, plus what radiology shorthand needs.

Why pySBD (measured on the issue-19 cases, see the README text section): it is maintained rule-based
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
_WORD_BEFORE = re.compile(r"(\S+)$")


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
    m = _WORD_BEFORE.search(line, 0, i)
    return m.group(1) if m else ""


def _is_abbreviation(word: str) -> bool:
    token = word.lower().lstrip("([").rstrip(".")
    return token in _abbreviations() or (len(token) == 1 and token.isalpha()) or bool(
        re.fullmatch(r"(?:[a-zäöü]\.)+[a-zäöü]?", token))


def _plain(line: str, m: re.Match, lang: str) -> bool:
    """A candidate boundary no splitter could doubt: "!"/"?", or "." after a word of two or more letters that is
    no abbreviation, after a closing parenthesis, or (English only: German "14." may be an ordinal) after a number
    that does not open the line; in every case followed by a capital or "("."""
    nxt = line[m.end():].lstrip()[:1]
    if not (nxt.isupper() or nxt == "("):
        return False
    if m.group().endswith(("!", "?")):
        return True
    word = _word_before(line, m.start())
    if re.fullmatch(r"[^\W\d_]{2,}(?:-[^\W\d_]+)*", word):
        return not _is_abbreviation(word)
    if re.search(r"[^.\s][)\]]$", word):
        return True
    return lang == "en" and word.isdigit() and bool(line[:m.start() - len(word)].strip())


def _unambiguous(line: str, lang: str = "de") -> list[int] | None:
    """Cut points when every candidate boundary of ``line`` is plain; else None."""
    cuts = []
    for m in _CANDIDATE.finditer(line):
        if not _plain(line, m, lang):
            return None
        cuts.append(m.end())
    return cuts


@functools.lru_cache(maxsize=8192)
def _line_cuts(line: str, lang: str) -> tuple[int, ...]:
    """Offsets inside ``line`` where a new sentence starts: plain boundaries cut directly, and pySBD asked
    only about the pieces between them that hold a doubtful one (it costs ~1-5 ms a call)."""
    cuts, piece_start, doubtful = [], 0, False
    pieces = []
    for m in _CANDIDATE.finditer(line):
        if _plain(line, m, lang):
            pieces.append((piece_start, m.end(), doubtful))
            piece_start, doubtful = m.end(), False
        else:
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
