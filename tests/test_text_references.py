"""Reference styles named in issue 19, the sentence splitter, and prior-study references."""

from __future__ import annotations

import pytest

from ctvlp.text.mining import find_references
from ctvlp.text.sentences import sentence_spans

STYLES = [
    ("Atelectasis at the left base, image 97 (series 2).", [(2, 97)]),
    ("Ground-glass opacity, axial image 88 (series 2).", [(2, 88)]),
    ("Dystelektase basal links, Bild 66/Serie 2.", [(2, 66)]),
    ("Spiculated mass, series 1001, image 45.", [(1001, 45)]),
    ("Enlarged node (Se: 3 Im: 187/312).", [(3, 187)]),
    ("Rundherde in Serie 3 auf den Bildern 80, 95 und 130.", [(3, 80), (3, 95), (3, 130)]),
    ("Calcified granuloma (image no. 142).", [(None, 142)]),
    ("Tiny nodule (image #74).", [(None, 74)]),
    ("Small cyst in the liver dome (Im 33).", [(None, 33)]),
    ("Verkalktes Granulom (Bild Nr. 210).", [(None, 210)]),
    ("Pleural effusion on the right, image 150 of 312.", [(None, 150)]),
    ("Konsolidierung posterobasal, 210/380.", [(None, 210)]),
    ("Left lower lobe consolidation (s3 i88).", [(3, 88)]),
    ("Konsolidierung im Unterlappen links (S3/B88).", [(3, 88)]),
    ("Nodule (series #3, image #45).", [(3, 45)]),
]
NOT_REFERENCES = ["Image 1: axial slice through the carina.", "Bild 1: Übersicht.", "Im 4. ICR rechts Knoten.",
                  "Blood pressure 120/80 mmHg.", "Comparison with the CT of 10/2019.", "Two thirds (2/3) of the lobe.",
                  "Status post L4/5 fusion.", "Series 3 was reconstructed with a lung kernel."]


@pytest.mark.parametrize("text, expected", STYLES)
def test_reference_style(text, expected):
    assert [(r.series, r.image) for r in find_references(text)] == expected


@pytest.mark.parametrize("text", NOT_REFERENCES)
def test_not_a_reference(text):
    assert find_references(text) == []


def test_ranges_keep_first_and_last():
    (ref,) = find_references("Bronchiectasis of the middle lobe (series 3, images 120-128).")
    assert (ref.series, ref.image_range, ref.image) == (3, (120, 128), 124)


def test_prior_study_references_are_marked():
    refs = find_references("Stable 5 mm nodule, previously series 3, image 198, now series 4, image 201.")
    assert [(r.prior, r.series, r.image) for r in refs] == [(True, 3, 198), (False, 4, 201)]
    refs = find_references("Größenkonstanter Rundherd, in der Voruntersuchung Serie 4 Bild 20, aktuell Serie 5 Bild 22.")
    assert [(r.prior, r.series, r.image) for r in refs] == [(True, 4, 20), (False, 5, 22)]
    refs = find_references("The node (series 5, image 60) measured 12 mm on the prior study (series 3, image 58).")
    assert [r.prior for r in refs] == [False, True]
    (ref,) = find_references("Compared with the prior study, the nodule (series 3, image 45) has grown.")
    assert not ref.prior


def test_an_ordinal_after_a_reference_ends_the_sentence():
    text = "Konsolidierung im Unterlappen Serie 2 Bild 14. Rundherd rechts (Serie 2, Bild 30)."
    refs = find_references(text)
    assert [r.snippet for r in refs] == ["Konsolidierung im Unterlappen", "Rundherd rechts"]


@pytest.mark.parametrize("text, lang, expected", [
    ("Im 4. ICR rechts Knoten. Ca. 8 mm. Vgl. Voruntersuchung. Z. n. OP. V. a. Pneumonie.", "de",
     ["Im 4. ICR rechts Knoten.", "Ca. 8 mm.", "Vgl. Voruntersuchung.", "Z. n. OP.", "V. a. Pneumonie."]),
    ("Lymphknoten re. paratracheal bis 12 mm. Rundherd li. Unterlappen.", "de",
     ["Lymphknoten re. paratracheal bis 12 mm.", "Rundherd li. Unterlappen."]),
    ("Status post lobectomy, approx. 8 mm nodule. Dr. Smith was informed. No effusion (image no. 142).", "en",
     ["Status post lobectomy, approx. 8 mm nodule.", "Dr. Smith was informed.", "No effusion (image no. 142)."]),
    ("Findings:\nNo effusion. Nodule 8 mm.\nImpression: Nodule.", "en",
     ["Findings:", "No effusion.", "Nodule 8 mm.", "Impression: Nodule."]),
])
def test_sentence_splitter(text, lang, expected):
    assert [text[a:b] for a, b in sentence_spans(text, lang)] == expected


def test_fast_path_agrees_with_pysbd():
    """Lines cut without calling pySBD (every boundary plain) get the cuts pySBD itself makes."""
    from ctvlp.text import sentences
    line = "Kein Pleuraerguss. Keine Konsolidierung. Normal großes Herz, keine Kardiomegalie. Keine Hiatushernie."
    assert sentences._unambiguous(line, "de") is not None
    assert [line[a:b] for a, b in sentence_spans(line, "de")] == [
        p.sent.strip() for p in sentences._segmenter("de").segment(line)]


@pytest.mark.parametrize("text, expected", [
    ("Solid nodule in the right lower lobe (Se/Im 3/45).", [(False, 3, 45)]),
    ("Nodules on images 45, 46, and 48 of series 3.", [(False, 3, 45), (False, 3, 46), (False, 3, 48)]),
    ("New nodule since the prior study (series 3, image 45).", [(False, 3, 45)]),
    ("Neu seit der Voruntersuchung: Rundherd (Serie 3, Bild 45).", [(False, 3, 45)]),
    ("Im CT vom [DATE] maß der Rundherd 4 mm (Serie 2, Bild 77).", [(True, 2, 77)]),
    ("3D-Rekonstruktion der Atemwege (Bild 3D).", []),
])
def test_pairs_oxford_lists_and_prior_cues(text, expected):
    assert [(r.prior, r.series, r.image) for r in find_references(text)] == expected


def test_a_series_governs_the_images_after_it_and_described_findings_are_current():
    refs = find_references("Rundherde Serie 3, Bild 45 und Bild 80.")
    assert [(r.series, r.image, r.pattern) for r in refs] == [(3, 45, "series_image"), (3, 80, "image_only_inherited")]
    assert find_references("Nodule (series 3, image 45); effusion (image 80).")[1].series is None
    (ref,) = find_references("Der in der Voruntersuchung beschriebene Rundherd (Serie 3, Bild 45) ist konstant.")
    assert not ref.prior
    (ref,) = find_references("Series 3: nodule at image 45.")
    assert (ref.series, ref.image) == (3, 45)


@pytest.mark.parametrize("text, expected", [
    ("Nodule (series 4 (lung window), image 45).", [(4, 45)]),
    ("Nodule (series 4, lung window: image 45).", [(4, 45)]),
    ("Rundherd Bild 45 im Lungenfenster der Serie 4.", [(4, 45)]),
])
def test_words_between_series_and_image(text, expected):
    assert [(r.series, r.image) for r in find_references(text)] == expected


# ---- issue 24: confidence, notations, series from the sentence, prior-study scope ------------------------------------
@pytest.mark.parametrize("text, expected", [
    ("Nodule (series 3, image 45).", [(3, 45, "high")]),
    ("Nodule (series:image 3:58).", [(3, 58, "high")]),
    ("Nodule (Se:4 Im:120).", [(4, 120, "high")]),
    ("Nodule (S4:I120).", [(4, 120, "high")]),
    ("Knötchen, Bi. 44 (Se. 3), zu klein.", [(3, 44, "high")]),
    ("Knötchen li. Oberlappen, Serie 3 #66, 5 mm.", [(3, 66, "high")]),
    ("Nebennierenadenom (Bild 105; Serie 5).", [(5, 105, "high")]),
    ("Calcified granuloma (image 142).", [(None, 142, "medium")]),
    ("Mild bronchial wall thickening (sl. 210).", [(None, 210, "medium")]),
    ("On series 4, the largest nodule is at image 145 and the second largest at image 170.",
     [(4, 145, "medium"), (4, 170, "medium")]),
    ("A 2 mm nodule on image 87 and a 3 mm nodule on image 92, both in series 3.", [(3, 87, "medium"), (3, 92, "high")]),
    ("Ein Knötchen auf Bild 87 und ein Knötchen auf Bild 92, jeweils Serie 3.", [(3, 87, "medium"), (3, 92, "high")]),
    ("Small cyst in the liver dome (Im 33).", [(None, 33, "low")]),
    ("Konsolidierung posterobasal, 210/380.", [(None, 210, "low")]),
])
def test_confidence_and_notations(text, expected):
    assert [(r.series, r.image, r.confidence) for r in find_references(text)] == expected


def test_series_named_alone_does_not_cross_a_semicolon_or_another_series():
    assert [r.series for r in find_references("Series 3 is degraded; nodule on image 45.")] == [None]
    refs = find_references("On series 4, nodule at image 45 and, in series 5, mass at image 60.")
    assert [(r.series, r.image) for r in refs] == [(4, 45), (5, 60)]


@pytest.mark.parametrize("text, expected", [
    ("Previously, the 7 mm nodule was seen at Se 4/Im 110.", [True]),
    ("On the prior CT dated 01/15/2022, this lesion was seen on image 77 of series 3.", [True]),
    ("On the baseline scan, the nodule measured 4 mm (series 2, image 80).", [True]),
    ("On the 2021 study, the nodule measured 4 mm (series 2, image 80).", [True]),
    ("Compared with the CT of 12.03.2024 (series 5, image 88), the node has decreased.", [True]),
    ("Prior CT: nodule 4 mm (series 2, image 80).", [True]),
    ("Das Knötchen, vorbeschrieben auf Bild 71 (Serie 2), ist konstant.", [True]),
    ("Der in der Baseline-Untersuchung auf Bild 88 beschriebene Herd ist nicht mehr abgrenzbar.", [True]),
    ("Compared with the prior study, the nodule (series 3, image 45) has grown.", [False]),
    ("Im Vergleich zur Voruntersuchung neuer Rundherd (Serie 3, Bild 45).", [False]),
    ("Prior CT from 2020 showed no nodule, new nodule now at image 45.", [False]),
    ("Prior to contrast, the lesion measured 30 HU (image 45).", [False]),
])
def test_prior_study_scope_reaches_across_punctuation_from_an_introductory_phrase(text, expected):
    assert [r.prior for r in find_references(text)] == expected


def test_min_confidence_orders_the_levels():
    from ctvlp.text.mining import meets, min_confidence_of
    assert meets("high", "medium") and meets("medium", "medium") and not meets("low", "medium")
    assert min_confidence_of({"mining": {"min_confidence": "high"}}) == "high"
    assert min_confidence_of({}) in ("high", "medium")  # the schema's default
    with pytest.raises(ValueError, match="min_confidence"):
        min_confidence_of({"mining": {"min_confidence": "sure"}})
