"""Report sections (clinical information, technique, findings, impression) in German and English.

Everything before the first recognised heading is the report header, which carries PHI (name,
birth date, ids, physician): it is dropped, never passed on. CT-RATE ships its sections as
columns, where a missing section holds the literal "Not given.".
"""

from __future__ import annotations

import html
import re

SECTION_HEADINGS = {
    "clinical": ["clinical information", "clinical history", "indication", "history", "klinische angaben",
                 "fragestellung", "anamnese", "indikation"],
    "technique": ["technique", "technik", "methode", "untersuchungstechnik"],
    "findings": ["findings", "befund", "befunde"],
    "impression": ["impression", "conclusion", "beurteilung", "zusammenfassung", "bewertung"],
}
SECTIONS = tuple(SECTION_HEADINGS)
CTRATE_COLUMNS = {"clinical": "ClinicalInformation_EN", "technique": "Technique_EN", "findings": "Findings_EN",
                  "impression": "Impressions_EN"}
_HEADING = re.compile(
    r"^[ \t]*(?P<h>" + "|".join(sorted((h for hs in SECTION_HEADINGS.values() for h in hs), key=len, reverse=True))
    + r")[ \t]*:[ \t]*", re.IGNORECASE | re.MULTILINE)


def split_sections(text: str) -> dict[str, str]:
    """Section name -> text; the header before the first heading is discarded (PHI)."""
    out = {name: "" for name in SECTIONS}
    matches = list(_HEADING.finditer(text))
    for m, nxt in zip(matches, matches[1:] + [None]):
        heading = m.group("h").lower()
        name = next(n for n, hs in SECTION_HEADINGS.items() if heading in hs)
        body = text[m.end(): nxt.start() if nxt else len(text)].strip()
        out[name] = (out[name] + "\n" + body).strip() if out[name] else body
    return out


def ctrate_sections(row: dict) -> dict[str, str]:
    """CT-RATE columns as sections; "Not given." (and empty cells) mean an empty section."""
    out = {}
    for name, column in CTRATE_COLUMNS.items():
        value = row.get(column)
        value = "" if value is None or (isinstance(value, float)) else str(value).strip()
        out[name] = "" if value in ("Not given.", "Not given") else value
    return out


def training_text(sections: dict[str, str]) -> str:
    """The text a model sees: findings then impression (no header, no clinical question)."""
    return "\n".join(s for s in (sections.get("findings", ""), sections.get("impression", "")) if s).strip()


def decode_report(value: object) -> tuple[str, list[str]]:
    """Text plus flags: bytes or surrogate-escaped text that is not UTF-8 is decoded as cp1252
    ("non_utf8"), HTML is reduced to text ("html"), nothing left is "empty"."""
    flags: list[str] = []
    if isinstance(value, bytes):
        raw = value
    elif isinstance(value, str):
        raw = value.encode("utf-8", "surrogateescape")
    else:
        raw = b""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = raw.decode("cp1252", errors="replace")
        flags.append("non_utf8")
    if re.search(r"<\s*(?:br|p|div|span|b|i|html|body|font)\b[^>]*>", text, re.IGNORECASE):
        text = re.sub(r"<\s*(?:br|/p|/div)\s*/?\s*>", "\n", text, flags=re.IGNORECASE)
        text = html.unescape(re.sub(r"<[^>]+>", "", text))
        flags.append("html")
    if not text.strip():
        flags.append("empty")
    return text, flags
