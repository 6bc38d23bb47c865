"""Report bodies without identifiers: every identifier known for the patient, plus generic patterns.

Before any text leaves the text stage (tables, snippets, prompts, logs, figures) the body is scrubbed of what
the DICOM headers and the report export say about this patient: the name and each of its parts, the patient
id, the accession number, the birth date in the ways reports write dates. Matching ignores case and
diacritics ("MÜLLER", "Muller" and "Mueller" are one name). Then generic patterns: dates, phone numbers,
e-mail addresses. Each hit becomes a typed placeholder ([NAME], [ID], [ACCESSION], [BIRTHDATE], [DATE],
[PHONE], [EMAIL]) so the sentence still reads.

Libraries: phone numbers are found by ``phonenumbers`` (Google's libphonenumber, which presidio's own phone
recognizer uses), in German and international formats. presidio-analyzer itself is not used: it imports spaCy
and an NLP engine at import time, and its date and e-mail recognizers are regular expressions like the ones
here; what presidio cannot know, the patient's own identifiers, is the main part of this module.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

import phonenumbers

EMAIL = re.compile(r"\b[\w.+-]+@[\w-]+(?:\.[\w-]+)+\b")
MONTHS = (r"(?:jan(?:uar|uary)?|feb(?:ruar|ruary)?|m(?:ä|ae)rz|march|mar|apr(?:il)?|mai|may|jun[ei]?|jul[iy]?|"
          r"aug(?:ust)?|sep(?:t(?:ember)?)?|okt(?:ober)?|oct(?:ober)?|nov(?:ember)?|dez(?:ember)?|dec(?:ember)?)\.?")
DATES = re.compile(
    r"\b(?:\d{1,2}\.\s?\d{1,2}\.\s?(?:\d{4}|\d{2})(?!\d)"           # 12.03.2019, 1.3.19
    r"|\d{4}-\d{1,2}-\d{1,2}"                                        # 2019-03-12
    r"|\d{1,2}/\d{1,2}/(?:\d{4}|\d{2})(?!\d)"                        # 03/12/2019
    rf"|\d{{1,2}}\.?\s{MONTHS}\s\d{{4}}"                              # 12. März 2019
    rf"|{MONTHS}\s\d{{1,2}},?\s\d{{4}}"                               # March 12, 2019
    r"|(?:0?[1-9]|1[0-2])/(?:19|20)\d{2})\b", re.IGNORECASE)        # 03/2019
PLACEHOLDER = re.compile(r"\[(?:NAME|ID|ACCESSION|BIRTHDATE|DATE|PHONE|EMAIL)\]")


@dataclass(frozen=True)
class Identifier:
    kind: str  # NAME, ID, ACCESSION, BIRTHDATE
    value: str


def _fold_char(c: str) -> str:
    lower = c.lower()
    if lower == "ß":
        return "ss"
    return "".join(ch for ch in unicodedata.normalize("NFKD", lower) if not unicodedata.combining(ch))


def fold(text: str) -> tuple[str, list[int]]:
    """Case- and diacritics-folded text ("ü", "ue" -> "u"; "ß" -> "ss") and, per folded character, the index
    of the original character it came from."""
    chars, index = [], []
    for i, c in enumerate(text):
        for f in _fold_char(c):
            chars.append(f)
            index.append(i)
    out, out_index, k = [], [], 0
    while k < len(chars):
        out.append(chars[k])
        out_index.append(index[k])
        digraph = chars[k] in "aou" and k + 1 < len(chars) and chars[k + 1] == "e" and index[k + 1] == index[k] + 1
        k += 2 if digraph else 1  # "ae"/"oe"/"ue": a transcribed umlaut, folded like the umlaut itself
    return "".join(out), out_index


def _date_variants(yyyymmdd: str) -> list[str]:
    digits = re.sub(r"\D", "", yyyymmdd)
    if len(digits) != 8:
        return [yyyymmdd] if yyyymmdd else []
    y, m, d = digits[:4], digits[4:6], digits[6:]
    mi, di = str(int(m)), str(int(d))
    return sorted({f"{d}.{m}.{y}", f"{di}.{mi}.{y}", f"{d}.{m}.{y[2:]}", f"{y}-{m}-{d}", f"{d}/{m}/{y}",
                   f"{m}/{d}/{y}", digits, f"{d}. {m}. {y}"}, key=len, reverse=True)


def identifiers_of(name: str = "", patient_id: str = "", accession: str = "", birth_date: str = "",
                   other_names: tuple[str, ...] = ()) -> list[Identifier]:
    """The identifiers to remove for one patient: the DICOM name "Family^Given^Middle^Prefix^Suffix" or a plain
    "Given Family" and each part of two or more letters, the ids, the birth date in its written forms."""
    out = []
    for full in (name, *other_names):
        full = str(full or "")
        parts = [p for p in re.split(r"[\^,\s]+", full) if len(p) >= 2 and not re.fullmatch(r"(?i)dr\.?|prof\.?", p)]
        if parts:
            out.append(Identifier("NAME", " ".join(parts)))
            pieces = {q for p in parts for q in [p, *p.split("-")] if len(q) >= 2}
            out += [Identifier("NAME", q) for q in sorted(pieces)]
    for kind, value in (("ID", patient_id), ("ACCESSION", accession)):
        if value and str(value).strip():
            out.append(Identifier(kind, str(value).strip()))
    out += [Identifier("BIRTHDATE", v) for v in _date_variants(str(birth_date or ""))]
    return out


def scrub(text: str, identifiers: list[Identifier], region: str = "DE") -> tuple[str, dict[str, int]]:
    """``text`` with every identifier and generic pattern replaced by a typed placeholder; counts per type."""
    spans: list[tuple[int, int, str]] = []
    folded, index = fold(text)
    for ident in sorted(identifiers, key=lambda i: -len(i.value)):
        needle = fold(ident.value)[0].strip()
        if len(needle) < 2:
            continue
        for m in re.finditer(r"(?<![\w])" + re.escape(needle).replace(r"\ ", r"[\s^,]+") + r"(?![\w])", folded):
            spans.append((index[m.start()], index[m.end() - 1] + 1, ident.kind))
    spans += [(m.start(), m.end(), "EMAIL") for m in EMAIL.finditer(text)]
    spans += [(m.start, m.end, "PHONE") for m in phonenumbers.PhoneNumberMatcher(text, region)]
    spans += [(m.start(), m.end(), "DATE") for m in DATES.finditer(text)]
    spans.sort(key=lambda s: (s[0], -(s[1] - s[0])))
    out, pos, counts = [], 0, {}
    for a, b, kind in spans:
        if a < pos:
            continue
        out.append(text[pos:a])
        out.append(f"[{kind}]")
        counts[kind] = counts.get(kind, 0) + 1
        pos = b
    out.append(text[pos:])
    return "".join(out), counts
