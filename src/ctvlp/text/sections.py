"""Report sections (clinical information, comparison, technique, findings, impression) in German and English.

Headings come from ``resources/sections.yaml`` (plus a site's own file): with or without a colon, all-caps,
numbered, combined ("Befund und Beurteilung" is findings). Everything before the first recognised heading is
the report header, which carries PHI (name, birth date, ids, physician): it is dropped, never passed on. A
report without any heading is kept whole as findings and flagged ``no_headings`` (its identifiers are scrubbed
by ``ctvlp.text.deidentify`` like every body). CT-RATE ships its sections as columns, where a missing section
holds the literal "Not given.".
"""

from __future__ import annotations

import functools
import html
import re
from importlib import resources
from pathlib import Path

import yaml

SECTIONS = ("clinical", "comparison", "technique", "findings", "impression")
CTRATE_COLUMNS = {"clinical": "ClinicalInformation_EN", "technique": "Technique_EN", "findings": "Findings_EN",
                  "impression": "Impressions_EN"}


def default_headings_file() -> str:
    return str(resources.files("ctvlp") / "resources" / "sections.yaml")


@functools.lru_cache(maxsize=8)
def heading_pattern(extra_file: str | None = None) -> tuple[re.Pattern, dict[str, str]]:
    """One regex for every heading, and the section of each alternative (by group name)."""
    by_section: dict[str, list[str]] = {name: [] for name in SECTIONS}
    for path in filter(None, (default_headings_file(), extra_file)):
        spec = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
        for name, words in spec.items():
            if name not in by_section:
                raise ValueError(f"{path}: unknown section '{name}' (known: {', '.join(SECTIONS)})")
            by_section[name].extend(words)
    groups, names = [], {}
    for name, words in by_section.items():
        for i, word in enumerate(sorted(set(words), key=len, reverse=True)):
            group = f"{name}_{i}"
            names[group] = name
            groups.append((len(word), f"(?P<{group}>{word})"))
    alternatives = "|".join(g for _, g in sorted(groups, key=lambda x: -x[0]))
    # a heading: line start, optional number/bullet, the words, then ":" / " -" (text may follow) or the line end
    pattern = re.compile(rf"^[ \t]*(?:\d{{1,2}}[.)][ \t]*|[-*•][ \t]*)?(?:{alternatives})[ \t]*"
                         rf"(?::|[ \t]-[ \t]|(?=[ \t]*$))[ \t]*", re.IGNORECASE | re.MULTILINE)
    return pattern, names


def sections_and_flags(text: str, extra_headings: str | None = None) -> tuple[dict[str, str], list[str]]:
    """Section name -> text, and flags; the header before the first heading is discarded (PHI)."""
    out = {name: "" for name in SECTIONS}
    pattern, names = heading_pattern(extra_headings)
    matches = list(pattern.finditer(text))
    if not matches:
        out["findings"] = text.strip()
        return out, ["no_headings"] if text.strip() else []
    for m, nxt in zip(matches, matches[1:] + [None]):
        name = names[m.lastgroup]
        body = text[m.end(): nxt.start() if nxt else len(text)].strip()
        out[name] = (out[name] + "\n" + body).strip() if out[name] else body
    return out, []


def split_sections(text: str, extra_headings: str | None = None) -> dict[str, str]:
    """Section name -> text (see ``sections_and_flags``)."""
    return sections_and_flags(text, extra_headings)[0]


def ctrate_sections(row: dict) -> dict[str, str]:
    """CT-RATE columns as sections; "Not given." (and empty cells) mean an empty section."""
    out = {name: "" for name in SECTIONS}
    for name, column in CTRATE_COLUMNS.items():
        value = row.get(column)
        value = "" if value is None or (isinstance(value, float)) else str(value).strip()
        out[name] = "" if value in ("Not given.", "Not given") else value
    return out


def training_text(sections: dict[str, str]) -> str:
    """The text a model sees: findings then impression (no header, no clinical question, no comparison)."""
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
