"""Find "series X, image Y" references in report text and the snippet each one belongs to.

Radiologists cite images in many styles ("series 3, image 45", "(Se 2/Bi 17)", "Bild 45 der
Serie 3", "Ima 45", "images 40-44", "images 12 and 30"). The vocabulary lives in one YAML file per
language (``ctvlp/resources/mining_*.yaml``); a site adds its own styles with another file. All
files are merged, because reports mix languages ("Befund ... Se 2/Im 17").

Three shapes are matched, longest first: series then image, image then series, image alone. A
number must not be a decimal, a measurement (mm, cm, HU, ...) or a duration, which keeps dates,
sizes, counts and follow-up intervals out; "a series of nodules" has no number and never matches.

Every reference carries a confidence (``CONFIDENCES``): ``high`` when series and image are both stated in a
known pattern ("series 3, image 45", "Bi. 44 (Se. 3)", "series:image 3:58"); ``medium`` when an unambiguous
image word stands alone ("image 45") or takes its series from the governing clause ("On series 4, ... image
145", "image 87 and ... image 92, both in series 3"); ``low`` for guesses: bare numbers and viewer overlays
("210/380"), and short image words that are also ordinary words ("Im 33": German "im"). What the workflow keeps as
a localization target is chosen by ``text.mining.min_confidence`` (``meets``).
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import yaml

from ctvlp.text.sentences import sentence_spans

UNITS = (r"(?!\s*(?:mm|cm|ml|%|x\b|hu\b|he\b|mmhg\b|jahre?n?\b|years?\b|monate?n?\b|months?\b|wochen\b|weeks?\b"
         r"|tage?n?\b|days?\b|h\b|min\b|mgy|msv|kg\b|°))")
NUM = rf"\d{{1,4}}(?![.,]?\d)(?![^\W\d_]){UNITS}"  # not "image 3D", not "2.5", not "12 mm"
HEADINGS = r"(?:findings|impression|befund|beurteilung|clinical information|technique|technik|klinische angaben)\s*:"
OPTIONAL_KEYS = ("number_markers", "compact_series", "compact_image", "prior_cues", "current_cues",
                 "ambiguous_image_words", "distributive_words", "comparison_cues", "compact_separators",
                 "linking_words", "intro_words", "short_image", "short_series", "time_words", "ratio_words",
                 "relative_words", "resolved_cues", "resolved_blockers", "plane_words", "postfix_prior_words", "position_words")
CONFIDENCES = ("high", "medium", "low")  # best first
HIGH_SHAPES = ("series_image", "image_series", "pair", "compact", "compact_reversed", "series_pair", "short_image_series",
               "short_series_image")


def meets(confidence: str, minimum: str) -> bool:
    """Whether a reference of ``confidence`` is kept at ``minimum`` (``text.mining.min_confidence``)."""
    if minimum not in CONFIDENCES:
        raise ValueError(f"min_confidence '{minimum}': expected one of {', '.join(CONFIDENCES)}")
    return CONFIDENCES.index(confidence) <= CONFIDENCES.index(minimum)


def min_confidence_of(text_cfg: dict | None) -> str:
    """``text.mining.min_confidence`` of a ``text:`` config section, or the schema's default (the schema is the
    one place a default is written)."""
    value = ((text_cfg or {}).get("mining") or {}).get("min_confidence")
    if value is None:
        schema = yaml.safe_load((resources.files("ctvlp") / "resources" / "config.schema.yaml").read_text(
            encoding="utf-8"))
        value = schema["properties"]["text"]["properties"]["mining"]["properties"]["min_confidence"]["default"]
    meets("high", value)  # a ValueError naming the allowed values
    return value
NEVER = r"(?!x)x"  # an empty vocabulary entry matches nothing


@dataclass(frozen=True)
class Reference:
    """One cited image: ``series`` is None when the text names no series; ``prior`` marks a reference to a
    prior study ("previously series 3, image 198"), which is reported but never resolved."""

    series: int | None
    image: int
    span: tuple[int, int]
    snippet: str
    pattern: str
    image_range: tuple[int, int] | None = None
    prior: bool = False
    confidence: str = "high"


def _alt(words: list[str]) -> str:
    return "(?:" + "|".join(sorted(set(words), key=len, reverse=True)) + ")" if words else NEVER


@dataclass(frozen=True)
class Vocabulary:
    series: str
    image: str
    image_only: str
    ranges: str
    lists: str
    connectors: str
    articles: str
    cues: str
    number_markers: str
    compact_series: str
    compact_image: str
    prior_cues: str
    current_cues: str
    ambiguous_image_words: str
    distributive_words: str
    comparison_cues: str
    compact_separators: str
    linking_words: str
    intro_words: str
    short_image: str
    short_series: str
    time_words: str
    ratio_words: str
    relative_words: str
    resolved_cues: str
    resolved_blockers: str
    plane_words: str
    postfix_prior_words: str
    position_words: str

    @classmethod
    def from_files(cls, files: tuple[str, ...]) -> "Vocabulary":
        merged: dict[str, list[str]] = {k: [] for k in OPTIONAL_KEYS}
        for f in files:
            for key, words in yaml.safe_load(Path(f).read_text(encoding="utf-8")).items():
                if isinstance(words, list):
                    merged.setdefault(key, []).extend(words)
        return cls(*(_alt(merged[k]) for k in ("series_words", "image_words", "image_only_words", "range_joiners",
                                                 "list_joiners", "image_series_connectors", "articles",
                                                 "cue_words") + OPTIONAL_KEYS))


def default_pattern_files() -> tuple[str, ...]:
    base = resources.files("ctvlp") / "resources"
    return tuple(str(base / name) for name in ("mining_en.yaml", "mining_de.yaml"))


@functools.lru_cache(maxsize=8)
def compiled(files: tuple[str, ...]) -> dict[str, re.Pattern]:
    """The reference shapes as regular expressions (cached per set of vocabulary files).

    series_image  "series 3, image 45", "Se: 3 Im: 187/312", "in Serie 3 auf den Bildern 80, 95 und 130"
    pair          "(Se/Im 3/45)", "Serie/Bild 4/112", "(series:image 3:58)"
    image_series  "image 45 of series 3", "image 97 (series 2)", "Bild 66/Serie 2", "Bi. 44 (Se. 3)"
    compact       "s3 i88", "S3/B88", "S3:I88"
    image_only    "image 45", "image no. 142", "image 150 of 312"
    overlay       "210/380" (a viewer's image counter: image 210 of 380)
    """
    v = Vocabulary.from_files(files)
    marker = rf"(?:\s*{v.number_markers})?"
    total_of = r"\s*(?:of|von|/)\s*\d{1,4}(?![.,]?\d)"
    # "images 40-44", "from image 160 through image 185", "images 40, 52 and 61", "images 190-205 and 212-220"
    upto = rf"\s*{v.ranges}\s*(?:{v.image_only}(?![^\W\d_])\.?\s*)?"
    numspec = (rf"{marker}\s*(?P<a>{NUM})(?:{total_of}|(?:{upto}(?P<b>{NUM}))?"
               rf"(?P<more>(?:\s*,?\s*{v.lists}\s*(?:#\s*)?{NUM}(?:\s*{v.ranges}\s*{NUM})?)+)?)")  # "#77 and #81"
    series = rf"{v.series}(?![^\W\d_])\.?{marker}\s*(?P<s>\d{{1,4}})(?![.,]?\d)"
    # a series governs the images of its clause; across a semicolon only the next word ("Se 4; Im 20")
    between = r"(?:\s*[,:/\-–(]?\s*(?:[^\W\d]+[,):]*\s+){0,4}?|\s*;\s*)"
    flags = re.IGNORECASE
    return {
        "series_image": re.compile(rf"\b{series}(?P<gap>{between}){v.image}(?![^\W\d_])\.?{numspec}", flags),
        # words between the image and its series ("image 92, both in series 3", "Bild 190 im Knochenfenster (Serie 8)")
        # only without a semicolon, and not where the series has an image of its own: "image 88; effusion series 4",
        # "image 88, effusion at series 4, image 20", "image 88, Se 4/Im 92" are two references
        "image_series": re.compile(rf"\b{v.image_only}(?![^\W\d_])\.?{numspec}(?:\s*[,/]?\s*(?P<w>(?:[^\W\d]+\s+){{1,3}}?)?"
                                   rf"|\s*;\s*)\(?\s*(?P<c>{v.connectors}\s+)?"
                                   rf"(?:{v.articles}\s+)?\b{series}(?(w)(?!\s*[,;:/]?\s*{v.image}(?![^\W\d_])))"
                                   rf"(?(c)|(?!\s*[:/]?\s*{v.image}(?![^\W\d_])\.?\s*#?\s*\d))", flags),  # "image 88, Se 4/Im 92"
        # "Serie/Bild 3/160 und 3/175": every further pair of the list is series/image too
        "pair": re.compile(rf"\b{v.series}\.?\s*[/:]\s*{v.image}\.?\s*:?\s*(?P<s>\d{{1,4}})\s*[/:]\s*(?P<a>\d{{1,4}})"
                           rf"(?![.,]?\d)(?P<b>(?!x)x)?(?P<more>(?:\s*,?\s*{v.lists}\s*\d{{1,2}}\s*[/:]\s*(?=\d\d){NUM}"
                           r"(?!\s*(?:of|des|der|von)\b))+)?", flags),
        "pair_item": re.compile(r"(?P<s>\d{1,2})\s*[/:]\s*(?P<a>\d{1,4})"),
        "compact": re.compile(rf"\b{v.compact_series}(?P<s>\d{{1,4}})\s*{v.compact_separators}?\s*{v.compact_image}"
                              r"(?P<a>\d{1,4})\b(?P<b>(?!x)x)?(?P<more>(?!x)x)?", flags),
        # "series 5:143", "Serie 3: 130-140"
        "series_pair": re.compile(rf"\b{v.series}(?![^\W\d_])\.?\s*(?P<s>\d{{1,4}})\s*:\s*(?P<a>{NUM})"
                                  rf"(?:\s*[-–]\s*(?P<b>{NUM}))?(?P<more>(?!x)x)?", flags),
        # a bare colon pair is series:image ("(3:112)", "at 2:58", "(3:130-140)"); clock times and ratios are not
        "colon_pair": re.compile(rf"(?<![\w:./-])(?P<s>\d{{1,4}}):(?P<a>{NUM})(?:\s*[-–]\s*(?P<b>{NUM}))?"
                                 r"(?![\w:/]|[.,]\d)(?P<more>(?!x)x)?", flags),
        # the compact form image first: "IM45/SE3", "B77/S4"
        "compact_reversed": re.compile(rf"\b{v.compact_image}(?P<a>\d{{1,4}})\s*{v.compact_separators}?\s*"
                                       rf"{v.compact_series}(?P<s>\d{{1,4}})\b(?P<b>(?!x)x)?(?P<more>(?!x)x)?", flags),
        # a bare slash pair standing alone in parentheses after a finding ("(3/97)"): read as series/image, a guess
        "slash_pair": re.compile(r"\((?P<s>\d{1,2})\s*/\s*(?P<a>\d{2,4})\)(?P<b>(?!x)x)?(?P<more>(?!x)x)?", flags),
        # the short forms with a dot on both halves, either order: "B. 67 / S. 3", "S. 3 / B. 67"
        "short_image_series": re.compile(rf"\b{v.short_image}\s*(?P<a>{NUM})\s*[/,;]\s*{v.short_series}\s*"
                                         r"(?P<s>\d{1,4})\b(?P<b>(?!x)x)?(?P<more>(?!x)x)?", flags),
        "short_series_image": re.compile(rf"\b{v.short_series}\s*(?P<s>\d{{1,4}})\s*[/,;]\s*{v.short_image}\s*"
                                         rf"(?P<a>{NUM})(?P<b>(?!x)x)?(?P<more>(?!x)x)?", flags),
        "time_context": re.compile(rf"{v.time_words}", flags),
        "ratio_context": re.compile(rf"\b{v.ratio_words}\W*$", flags),
        "image_only": re.compile(rf"\b{v.image_only}(?![^\W\d_])\.?{numspec}(?!\s*:)", flags),
        "overlay": re.compile(r"(?<![\w/.,:-])(?P<a>\d{1,4})\s*/\s*(?P<n>\d{2,4})(?![\w/.,]\d|\s*(?:mm|cm|ml|%))"
                              r"(?P<b>(?!x)x)?(?P<more>(?!x)x)?", flags),
        "cue": re.compile(rf"(?:\b{v.cues}\s*)$", flags),
        # one item of a list: an image or a range ("and 212-220")
        "list_item": re.compile(rf"(?P<x>\d{{1,4}})(?:\s*{v.ranges}\s*(?P<y>\d{{1,4}}))?", flags),
        "series_word": re.compile(rf"\b{v.series}(?![^\W\d_])", flags),
        # a series named without an image ("On series 4, the nodule is at image 145"): it governs its sentence
        "series_mention": re.compile(rf"\b{series}", flags),
        "ambiguous": re.compile(rf"{v.ambiguous_image_words}(?![^\W\d_])", flags),
        "distributive": re.compile(rf"\b{v.distributive_words}\b", flags),
        # words that may stand between a series and its image without lowering the confidence
        "linking_gap": re.compile(rf"(?:[\s,;:/\-–(]|\b(?:{v.connectors}|{v.articles}|{v.cues}|{v.linking_words})\b)*",
                                  flags),
        "prior": re.compile(rf"(?<!\w){v.prior_cues}(?!\w)", flags),
        # a "then"/"damals" or a "now"/"jetzt" right after a reference, standing alone, dates it: "(image 88 then,
        # image 92 now, series 3)", "(Bild 88 damals, Bild 92 jetzt)"
        "postfix_prior": re.compile(rf"\)?\s+{v.postfix_prior_words}\s*(?=[,;)\]]|$)", flags),
        "postfix_current": re.compile(rf"\)?\s+{v.current_cues}\s*(?=[,;)\]]|$)", flags),
        "prior_after": re.compile(rf"\s*[,)\]]?\s*(?:{v.connectors}|at|auf|im|vom|zur)\s+(?:{v.articles}\s+)?"
                                  rf"{v.prior_cues}(?!\w)", flags),
        # a clause after the compared study that refers back to it
        "relative": re.compile(rf"[^,;()]*(?:,|\s[–—-])\s*{v.relative_words}\b[^,;]*$", flags),
        # between two items of one list ("prior images 3:30 and 3:105", "auf 3:30 bzw. 3:105")
        "list_gap": re.compile(rf"\s*,?\s*(?:{v.lists})?\s*", flags),
        # between an image and a series after it, only further references of one list ("@"): "(image 88, image 92,
        # series 3)", "Bild 88 und Bild 92 der Serie 3"
        "list_to_series": re.compile(rf"(?:\s*[,;]?\s*(?:{v.lists})?\s*@)+\s*", flags),
        "current": re.compile(rf"\b{v.current_cues}\b", flags),
        # a finding called resolved ("has resolved", "nicht mehr abgrenzbar") is cited where it was: in the prior study;
        # not one resolved in part ("partially resolved", "nicht vollständig regredient")
        "resolved": re.compile(rf"(?<!\w){v.resolved_cues}(?!\w)", flags),
        "resolved_blocker": re.compile(rf"\b{v.resolved_blockers}\W+(?:\w+\W+)?$", flags),
        # gone in another position of the same study ("in Bauchlage nicht mehr nachweisbar"): still current
        "position": re.compile(rf"\b{v.position_words}\b", flags),
        # what ends the clause of a resolved finding
        "clause_break": re.compile(r"[;,:.]|\b(?:and|but|while|whereas|however|und|aber|jedoch|während|wohingegen|"
                                   r"sowie)\b", flags),
        # a reformatted plane or a window: another series ("(series 3, image 72; coronal image 80)")
        "plane": re.compile(rf"\b{v.plane_words}", flags),
        # what may stand between a prior-study cue and the colon of a heading ("Prior study: ...", "Vor-CT (2019): ...")
        "heading_gap": re.compile(r"[)\]]?(?:\s*(?:[^\W\d_][\w/-]*|\([^()]*\)|\[[^\]]*\])){0,3}\s*", flags),
        # "new since the prior study (series 3, image 45)": a comparison, the image is in the current study
        "since": re.compile(r"\b(?:since|seit)\s+(?:\w+\s+)?$", flags),
        # "compared with the CT of [DATE] (series 5, image 88)": the cited image is in the compared study only
        # when it stands right after it; "compared with the prior study, the nodule (series 3, image 45)" is current
        "comparison": re.compile(rf"\b{v.comparison_cues}\b", flags),
        "adjacent": re.compile(rf"(?:[\s,:(\[–—-]|\b(?:{v.cues}|{v.linking_words}|{v.articles})\b)*", flags),
        # a prior cue reaches across a comma only from an introductory phrase: "Previously, the nodule was seen at
        # Se 4/Im 110", "On the prior CT dated [DATE], this lesion was seen on image 77 of series 3"
        "intro": re.compile(rf"\s*(?:{v.intro_words})\b", flags),
        # "the previously described nodule (series 3, image 45)", "der in der Voruntersuchung beschriebene Rundherd":
        # the cue dates the finding, the image is in the current study
        "described": re.compile(r"\s*(?:\w+\s+)?(?:described|seen|noted|mentioned|known|reported|identified|"
                                r"demonstrated|visible|beschrieben\w*|bekannt\w*|gesehen\w*|erwähnt\w*|"
                                r"abgrenzbar\w*|nachgewiesen\w*|dokumentiert\w*|sichtbar\w*)\b", flags),
    }


SHAPES = ("series_image", "image_series", "pair", "compact", "compact_reversed", "series_pair", "short_image_series", "short_series_image",
          "image_only", "colon_pair", "slash_pair", "overlay")


def _colon_pair_plausible(m: re.Match, patterns: dict[str, re.Pattern]) -> bool:
    """A colon pair is no clock time ("at 14:35", "um 10:15 Uhr": hour <= 23, two-digit minutes, with a time word
    or a date nearby) and no ratio ("1:1", "3:2", "ratio of 1:10")."""
    s, a = int(m.group("s")), int(m.group("a"))
    if s == 0 or a == 0 or (s <= 9 and a <= 9):
        return False
    text = m.string
    if patterns["ratio_context"].search(text, max(0, m.start() - 40), m.start()):
        return False
    if not (s <= 23 and len(m.group("a")) == 2 and a <= 59):
        return True
    if m.group("s").startswith("0") or (s >= 7 and re.search(r"\b(?:at|um|gegen|ab|since|seit|until|bis)\s*$",
                                                               text[max(0, m.start() - 8): m.start()], re.I)):
        return False  # "09:45", "at 14:35"
    return not patterns["time_context"].search(text[max(0, m.start() - 100): m.end() + 20])


def _plausible(name: str, m: re.Match, patterns: dict[str, re.Pattern]) -> bool:
    """German "Im 4. ICR" is "in the 4th intercostal space", not image 4; an overlay "M/N" counts only as a
    viewer's counter: M <= N, N >= 20, not a month/year or a ratio."""
    if name == "image_only":
        return not (re.match(r"im\b", m.group(), re.IGNORECASE) and re.match(r"\.\s*[^\W\d_]", m.string[m.end():]))
    if name == "colon_pair":
        return _colon_pair_plausible(m, patterns)
    if name == "slash_pair":
        s, a = int(m.group("s")), int(m.group("a"))
        return 1 <= s <= 20 and a > s and not 1900 <= a <= 2100
    if name != "overlay":
        return True
    a, n = int(m.group("a")), int(m.group("n"))
    before = m.string[max(0, m.start() - 20): m.start()]
    if re.search(r"[^\W\d_]\s*$", before) and not re.search(r"\b(?:at|on|auf|see|siehe|vgl\.|cf\.)\s*$", before, re.I):
        return False  # a labelled quantity ("score of 12/25", "RR 130/85"), not a viewer's counter
    return 1 <= a <= n and n >= 20 and not (1900 <= n <= 2100 and a <= 12)


def _matches(text: str, patterns: dict[str, re.Pattern]) -> list[tuple[str, re.Match]]:
    """Non-overlapping matches; where shapes overlap the longer (series-bearing) one wins."""
    found = [(name, m) for name in SHAPES for m in patterns[name].finditer(text) if _plausible(name, m, patterns)]
    found.sort(key=lambda nm: (nm[1].start(), -(nm[1].end() - nm[1].start())))
    chosen, last_end = [], -1
    for name, m in found:
        if m.start() >= last_end:
            chosen.append((name, m))
            last_end = m.end()
    return chosen


def _clause_cuts(text: str, spans: list[tuple[int, int]]) -> list[int]:
    """Cut points between consecutive references of one sentence, outside parentheses."""
    cuts = []
    for (_, end_prev), (start_next, _) in zip(spans, spans[1:]):
        best = None
        for pattern in (r";", r",?\s+(?:and|und|sowie|as well as)\s+", r",\s"):
            for m in re.finditer(pattern, text[end_prev:start_next]):
                pos = end_prev + m.start()
                depth = text[:pos].count("(") - text[:pos].count(")")
                if depth <= 0:
                    best = pos
            if best is not None:
                break
        cuts.append(best if best is not None else -1)
    return cuts


def _tidy(text: str) -> str:
    text = re.sub(r"^\s*" + HEADINGS, "", text, flags=re.IGNORECASE)
    text = re.sub(r"[\(\[]\s*[\)\]]", "", text)
    text = re.sub(r"\s+", " ", text)
    text = re.sub(r"\s+([,;:.)\]])", r"\1", text)
    text = re.sub(r"([(\[])\s+", r"\1", text)
    text = re.sub(r"[,;:]+(?=[.)\]]|$)", "", text)
    text = re.sub(r"^(?:\s|[,;:.]|and\b|und\b|sowie\b)+", "", text, flags=re.IGNORECASE)
    text = text.strip().rstrip(".,;: ")
    if text.count("(") < text.count(")"):
        text = text.replace(")", "", text.count(")") - text.count("("))
    if text.count("(") > text.count(")"):
        text = text.rsplit("(", 1)[0].rstrip(" ,;:") if text.rstrip().endswith("(") else text + ")"
    return text.strip()


def _snippet(clause: str, local_spans: list[tuple[int, int]], cue: re.Pattern) -> str:
    """The clause with its references (and the "see"/"siehe" pointing at them) removed."""
    out, pos = [], 0
    for a, b in local_spans:
        head = clause[pos:a]
        cue_match = cue.search(head)
        if cue_match:
            head = head[: cue_match.start()]
        head = re.sub(r"[,;:]?\s*[\(\[]?\s*$", lambda m: "(" if "(" in m.group() or "[" in m.group() else "", head)
        out.append(head)
        pos = b
        tail = re.match(r"\s*[\)\]]", clause[pos:])
        if tail and out[-1].endswith("("):
            out[-1] = out[-1][:-1]
            pos += tail.end()
    out.append(clause[pos:])
    return _tidy("".join(out))


def _references(name: str, m: re.Match, patterns: dict[str, re.Pattern]
                ) -> list[tuple[int | None, int, tuple[int, int] | None, str]]:
    series = int(m.group("s")) if "s" in m.re.groupindex and m.group("s") else None
    items = [(int(m.group("a")), int(m.group("b")) if m.group("b") else None)]
    if name == "pair" and m.group("more"):
        return [(series, items[0][0], None, "pair_list")] + [
            (int(i["s"]), int(i["a"]), None, "pair_list") for i in patterns["pair_item"].finditer(m.group("more"))]
    if m.group("more"):
        items += [(int(i["x"]), int(i["y"]) if i["y"] else None)
                  for i in patterns["list_item"].finditer(m.group("more"))]
    kind = "_list" if len(items) > 1 else ""
    out = []
    for a, b in items:
        if b is None:
            out.append((series, a, None, name + kind))
        else:
            lo, hi = sorted((a, b))
            out.append((series, (lo + hi) // 2, (lo, hi), f"{name}_range{kind}"))
    return out


def _outside_parens(text: str, pos: int) -> bool:
    return text[:pos].count("(") <= text[:pos].count(")")


def _is_prior(sentence: str, start: int, end: int, previous_end: int, patterns: dict[str, re.Pattern]) -> bool:
    """A prior-study cue before a reference (from the previous reference or the last semicolon outside
    parentheses, whichever is later), or right after it ("image 45 on the prior study", "Bild 20 der
    Voruntersuchung"). The cue's reach ends at a "now"/"aktuell"; it crosses a comma only from an introductory
    phrase ("Previously, ...", "On the prior CT dated [DATE], ..."); after a comparison ("compared with",
    "since", "im Vergleich zur") only a reference right after the compared study is in it."""
    if patterns["postfix_current"].match(sentence, end):
        return False
    if patterns["prior_after"].match(sentence, end) or patterns["postfix_prior"].match(sentence, end):
        return True
    window_start = previous_end
    for m in re.finditer(r";", sentence[previous_end:start]):
        pos = previous_end + m.start()
        if _outside_parens(sentence, pos):
            window_start = pos + 1
    window = sentence[:start]
    cues = [c for c in patterns["prior"].finditer(sentence, window_start) if c.start() < start]  # lookahead may see on
    for c in reversed(cues):
        cue_end = min(c.end(), start)
        if patterns["relative"].match(window, cue_end) and not patterns["current"].search(window, cue_end):
            return True  # "since the 2021 CT, where it was seen on image 201", "im Vor-CT vom 11/2023, wo ..."
        if patterns["since"].search(window, window_start, c.start()) or patterns["described"].match(window, cue_end):
            continue
        if patterns["current"].search(window, cue_end):
            return False
        gap = window[cue_end:]
        clause_start = max([m.end() for m in re.finditer(r"[,:]", window[:c.start()]) if m.start() >= window_start
                            and _outside_parens(sentence, m.start())] + [window_start])
        if patterns["comparison"].search(window, clause_start, c.start()):
            return patterns["adjacent"].fullmatch(gap) is not None
        crossed = [m for m in re.finditer(r"[,:]", gap) if _outside_parens(sentence, cue_end + m.start())]
        if not crossed or (len(crossed) == 1 and crossed[0].group() == ":"  # "Prior CT: nodule (series 2, image 80)",
                           and patterns["heading_gap"].fullmatch(gap, 0, crossed[0].start())):  # "the prior study: ..."
            return True
        return patterns["intro"].match(window, clause_start) is not None
    return False


def _without_parens(text: str) -> str:
    """``text`` with its balanced parentheses and their content removed."""
    while True:
        shorter = re.sub(r"\([^()]*\)", " ", text)
        if shorter == text:
            return text
        text = shorter


def _resolved(sentence: str, start: int, end: int, patterns: dict[str, re.Pattern]) -> bool:
    """Whether the finding cited at sentence[start:end] is called resolved in its clause ("Previously noted
    consolidation at series 3 image 145 has resolved", "Der Knoten (IM 138 SE 3) ist nicht mehr abgrenzbar"): the
    image shows where it was, in the prior study. Not across a clause break or a "now"/"jetzt", not when resolved in
    part ("partially resolved", "nicht vollständig regredient") or only in another position of the same study
    ("in Bauchlage nicht mehr nachweisbar")."""
    for cue in patterns["resolved"].finditer(sentence):
        if cue.start() >= end:
            between = sentence[end:cue.start()]
        elif cue.end() <= start:
            between = sentence[cue.end():start]
        else:
            continue
        if patterns["resolved_blocker"].search(sentence, max(0, cue.start() - 40), cue.start()):
            continue
        between = _without_parens(between)
        if patterns["clause_break"].search(between) or patterns["current"].search(between):
            continue
        after = sentence[cue.end():]
        clause_end = patterns["clause_break"].search(after)
        if not patterns["position"].search(sentence, min(start, cue.start()),
                                           cue.end() + (clause_end.start() if clause_end else len(after))):
            return True
    return False


def _semicolon_blocks(sentence: str, a: int, b: int, patterns: dict[str, re.Pattern]) -> bool:
    """Whether a semicolon between a series (ending at ``a``) and an image (at ``b``) keeps the series from the
    image: yes, except inside the parentheses of one citation ("(series 3, image 72; also image 80)", "(Bild 70;
    Bild 79; jeweils Serie 3)"), unless a reformatted plane or a window names another series there."""
    gap = sentence[a:b]
    if ";" not in gap:
        return False
    return ("(" in gap or ")" in gap or _outside_parens(sentence, a) or patterns["plane"].search(gap) is not None)


def _series_of_images(sentence: str, inside: list[tuple[str, re.Match]], offset: int,
                      patterns: dict[str, re.Pattern], priors: list[bool]) -> list[int | None]:
    """The series an image-only reference takes from its sentence: the nearest series before it (a reference
    with a series, or a series named alone: "On series 4, the nodule is at image 145"), unless a semicolon or
    another series word stands between; else a series after it that a distributive word hands to every image
    before it ("image 87 and ... image 92, both in series 3", "Bild 87 ... Bild 92, jeweils Serie 3"). A reference
    to a prior study never lends its series to a current one, nor the other way round."""
    spans = [(m.start() - offset, m.end() - offset) for _, m in inside]
    anchors = [(m.start("s") - offset, m.end("s") - offset, int(m.group("s")), prior)
               for (_, m), prior in zip(inside, priors) if "s" in m.re.groupindex and m.group("s")]
    anchors += [(m.start("s"), m.end("s"), int(m.group("s")), None)
                for m in patterns["series_mention"].finditer(sentence) if not any(a <= m.start() < b for a, b in spans)]
    anchors.sort()
    out: list[int | None] = []
    for (name, m), (a, b), prior in zip(inside, spans, priors):
        if name != "image_only":
            out.append(None)
            continue
        series = None
        before = [x for x in anchors if x[1] <= a and x[3] in (None, prior)]
        if before:
            gap = sentence[before[-1][1]:a]
            if not _semicolon_blocks(sentence, before[-1][1], a, patterns) and not patterns["series_word"].search(gap):
                series = before[-1][2]
        if series is None:
            after = [x for x in anchors if x[0] >= b]
            # "damals Bild 246, jetzt Bild 254, jeweils Serie 4": a distributive series spans prior and current images
            if after and after[0][3] not in (None, prior) and not patterns["distributive"].search(
                    sentence[b:after[0][0]]):
                after = [x for x in after if x[3] in (None, prior)]
            if after:
                gap = sentence[b:after[0][0]]
                words = patterns["series_word"].findall(gap)
                alone = not any(b <= x < after[0][0] for x, _ in spans)  # no other reference between
                # the other references between, each as "@": images only, the last one perhaps with the series after
                # it ("image 92, series 3"), never a series before its own image ("image 88, Se 4/Im 92")
                chain, own_series = sentence[b:after[0][0]], False
                for (other, _), (x, y) in sorted(zip(inside, spans), key=lambda item: -item[1][0]):
                    if b <= x < after[0][0]:
                        chain = chain[:x - b] + "@" + chain[min(y, after[0][0]) - b:]
                        own_series |= other not in ("image_only", "image_series", "short_image_series",
                                                    "compact_reversed")
                listed = (not alone and not own_series
                          and patterns["list_to_series"].fullmatch(chain) is not None)
                # "images 87 and 92, both in series 3"; "image 88, best seen on the ... windows of series 2",
                # "image 54 (1 mm slice thickness, series 4)": a series after the image with words between
                if (not _semicolon_blocks(sentence, b, after[0][0], patterns) and len(words) <= 1
                        and (patterns["distributive"].search(gap) or listed or (
                        alone and len(re.findall(r"[^\W\d_]+", gap)) <= 10 and not re.search(r"[.!?]\s", gap)))):
                    series = after[0][2]
        out.append(series)
    return out


def _confidence(name: str, m: re.Match, series: int | None, inherited: bool, patterns: dict[str, re.Pattern]) -> str:
    if name in HIGH_SHAPES:
        gap = m.group("gap") if "gap" in m.re.groupindex and m.group("gap") else ""
        return "high" if patterns["linking_gap"].fullmatch(gap) else "medium"
    if name == "colon_pair":
        return "medium"
    if name == "image_only":
        if inherited:
            return "medium"
        return "low" if patterns["ambiguous"].match(m.group()) and series is None else "medium"
    return "low"


def find_references(text: str, pattern_files: tuple[str, ...] | None = None,
                    lang: str | None = None) -> list[Reference]:
    """Every image reference in ``text`` with its series, image, span, prior flag, confidence and cleaned snippet.

    Snippets come from the clause of the reference inside its sentence (``ctvlp.text.sentences``), so a
    snippet never runs into the next sentence."""
    patterns = compiled(tuple(pattern_files) if pattern_files else default_pattern_files())
    matches = _matches(text, patterns)
    if not matches:
        return []
    spans = [(m.start(), m.end()) for _, m in matches]
    refs: list[Reference] = []
    for s_start, s_end in sentence_spans(text, lang or detect_language(text), spans):
        inside = [(name, m) for name, m in matches if s_start <= m.start() < s_end]
        if not inside:
            continue
        local = [(m.start() - s_start, m.end() - s_start) for _, m in inside]
        sentence = text[s_start:s_end]
        cuts = [0] + [c if c >= 0 else None for c in _clause_cuts(sentence, local)] + [len(sentence)]
        priors = [_is_prior(sentence, a, b, local[i - 1][1] if i else 0, patterns) or _resolved(sentence, a, b, patterns)
                  for i, (a, b) in enumerate(local)]
        # the items of one list ("prior images 3:30 and 3:105", "3:30 and 3:105 on the prior study") share a study
        group = [0]
        for i in range(1, len(local)):
            group.append(group[-1] + (patterns["list_gap"].fullmatch(sentence, local[i - 1][1], local[i][0]) is None))
        priors = [any(p for p, g in zip(priors, group) if g == group[i]) for i in range(len(priors))]
        governing = _series_of_images(sentence, inside, s_start, patterns, priors)
        for i, (name, m) in enumerate(inside):
            lo = next(c for c in reversed(cuts[: i + 1]) if c is not None)
            hi = next(c for c in cuts[i + 1:] if c is not None)
            clause = sentence[lo:hi]
            clause_spans = [(a - lo, b - lo) for a, b in local if lo <= a < hi]
            snippet = _snippet(clause, clause_spans, patterns["cue"])
            if len(snippet) < 3:  # references only: fall back to the whole sentence
                snippet = _snippet(sentence, local, patterns["cue"])
            prior = priors[i]
            for series, image, image_range, pattern in _references(name, m, patterns):
                inherited = False
                if series is None and governing[i] is not None:
                    series, inherited = governing[i], True
                    pattern += "_inherited"
                refs.append(Reference(series, image, (m.start(), m.end()), snippet, pattern, image_range, prior,
                                      _confidence(name, m, series, inherited, patterns)))
    return refs


def detect_language(text: str) -> str:
    """'de' or 'en' from stop-word counts (reports rarely say which language they are in)."""
    lower = text.lower()
    words = re.findall(r"[a-zäöüß]+", lower)
    de = sum(w in {"der", "die", "das", "und", "im", "kein", "keine", "mit", "von", "ist", "nicht", "des", "ein",
                   "eine", "rechts", "links", "beiden", "siehe", "befund", "vom", "zum", "zur", "bei", "am"}
             for w in words) + 2 * len(re.findall(r"[äöüß]", lower))
    en = sum(w in {"the", "and", "of", "no", "with", "is", "not", "there", "in", "a", "are", "on", "see",
                   "right", "left", "both"} for w in words)
    return "de" if de > en else "en"
