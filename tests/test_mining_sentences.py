"""The hand-written sentence table: every style in both languages, and sentences that must not match."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from ctvlp.text.mining import detect_language, find_references

TABLE = Path(__file__).parent / "data" / "mining_sentences.tsv"


def load_table() -> list[dict]:
    with open(TABLE, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))


def parse_refs(spec: str) -> list[tuple]:
    refs = []
    for item in filter(None, spec.split(";")):
        series, rest = item.split(":")
        image, _, rng = rest.partition("[")
        image_range = tuple(int(x) for x in rng.rstrip("]").split("-")) if rng else None
        refs.append((None if series == "-" else int(series), int(image), image_range))
    return refs


ROWS = load_table()


def test_table_is_large_and_covers_both_languages():
    assert len(ROWS) >= 150
    assert {r["lang"] for r in ROWS} == {"de", "en"}
    assert sum(1 for r in ROWS if not r["refs"]) >= 50


@pytest.mark.parametrize("row", ROWS, ids=[r["text"][:40] for r in ROWS])
def test_sentence(row):
    found = find_references(row["text"])
    assert [(r.series, r.image, r.image_range) for r in found] == parse_refs(row["refs"])
    if found:
        assert found[0].snippet == row["snippet"]
        start, end = found[0].span
        assert row["text"][start:end].strip() == row["text"][start:end]
        assert any(ch.isdigit() for ch in row["text"][start:end])


def test_several_sentences_and_spans():
    text = "Befund:\nRundherd rechts (Se 2/Bi 17). Kein Erguss. Konsolidierung links, Serie 3 Bild 45."
    refs = find_references(text)
    assert [(r.series, r.image) for r in refs] == [(2, 17), (3, 45)]
    assert text[refs[1].span[0]:refs[1].span[1]] == "Serie 3 Bild 45"
    assert [r.snippet for r in refs] == ["Rundherd rechts", "Konsolidierung links"]


def test_site_vocabulary_file_adds_a_style(tmp_path):
    site = tmp_path / "mining_site.yaml"
    site.write_text("language: en\nseries_words: ['acq']\nimage_words: ['pic']\nimage_only_words: ['pic']\n"
                    "range_joiners: ['-']\nlist_joiners: [',']\nimage_series_connectors: ['of']\n"
                    "articles: ['the']\ncue_words: ['see']\n")
    from ctvlp.text.mining import default_pattern_files
    files = default_pattern_files() + (str(site),)
    refs = find_references("Nodule (acq 3 pic 45).", files)
    assert [(r.series, r.image) for r in refs] == [(3, 45)]
    assert find_references("Nodule (acq 3 pic 45).") == []


def test_language_detection():
    assert detect_language("Kein Pleuraerguss. Rundherd im rechten Unterlappen.") == "de"
    assert detect_language("No pleural effusion. Nodule in the right lower lobe.") == "en"
