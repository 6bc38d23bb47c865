"""ConText labeling cases named in issue 19 (scope, lists, resolved findings, indications, paraphrases)."""

from __future__ import annotations

import pytest

from ctvlp.text.context import load_rules
from ctvlp.text.labels import RuleLabeler, extract_labels

CASES = [
    ("Kein Pleuraerguss, Rundherd im rechten Oberlappen.", "de", {"Lung nodule": 1, "Pleural effusion": 0}),
    ("Mediastinale Lymphknoten nicht vergrößert.", "de", {"Lymphadenopathy": 0}),
    ("Einzelne kleine, nicht vergrößerte Lymphknoten.", "de", {"Lymphadenopathy": 0}),
    ("No pleural effusion, pericardial effusion or lymphadenopathy.", "en",
     {"Pleural effusion": 0, "Pericardial effusion": 0, "Lymphadenopathy": 0}),
    ("Kein Perikard- oder Pleuraerguss.", "de", {"Pleural effusion": 0, "Pericardial effusion": 0}),
    ("No focal consolidation, mild bibasilar atelectasis.", "en", {"Consolidation": 0, "Atelectasis": 1}),
    ("The heart is mildly enlarged.", "en", {"Cardiomegaly": 1}),
    ("The heart is not enlarged.", "en", {"Cardiomegaly": 0}),
    ("Small layering effusions bilaterally.", "en", {"Pleural effusion": 1}),
    ("Small pericardial effusion.", "en", {"Pericardial effusion": 1, "Pleural effusion": 0}),
    ("Septenverdickung beidseits basal.", "de", {"Interlobular septal thickening": 1}),
    ("Narbenstränge apikal rechts.", "de", {"Pulmonary fibrotic sequela": 1}),
    ("Sternal cerclage wires after sternotomy.", "en", {"Medical material": 1}),
    ("The previously described pleural effusion is no longer seen.", "en", {"Pleural effusion": 0}),
    ("Der vorbeschriebene Pleuraerguss ist vollständig regredient.", "de", {"Pleural effusion": 0}),
    ("Consolidation has resolved.", "en", {"Consolidation": 0}),
    ("Rule out pneumonia, pleural effusion and lymphadenopathy.", "en", {"Pleural effusion": 0, "Lymphadenopathy": 0}),
    ("Fragestellung: Rundherd? Pleuraerguss?", "de", {"Lung nodule": 0, "Pleural effusion": 0}),
    ("History of emphysema.", "en", {"Emphysema": 0}),
    ("No change of the known emphysema.", "en", {"Emphysema": 1}),
    ("Keine Größenprogredienz des Rundherdes.", "de", {"Lung nodule": 1}),
    ("Pleural effusion cannot be excluded.", "en", {"Pleural effusion": -1}),
    ("Nicht auszuschließen ist ein kleiner Rundherd.", "de", {"Lung nodule": -1}),
    ("Kein Pleuraerguss, jedoch Perikarderguss.", "de", {"Pleural effusion": 0, "Pericardial effusion": 1}),
    ("Subkutanes Emphysem, kein Lungenemphysem.", "de", {"Emphysema": 0}),
    ("Subcutaneous emphysema of the chest wall.", "en", {"Emphysema": 0}),
    ("Nodule in the right upper lobe.", "en", {"Lung nodule": 1, "Consolidation": 0}),
]


@pytest.mark.parametrize("text, lang, expected", CASES, ids=[c[0][:40] for c in CASES])
def test_context_labels(text, lang, expected):
    labels = extract_labels(text, lang)
    assert {k: labels[k] for k in expected} == expected


def test_unmentioned_is_absent_and_uncertain_is_configurable():
    text = "Possible small pleural effusion."
    assert RuleLabeler()(text)["Pleural effusion"] == -1
    assert RuleLabeler(uncertain_value=0)(text)["Pleural effusion"] == 0
    assert RuleLabeler()(text)["Cardiomegaly"] == 0


def test_rules_file_errors_name_the_file(tmp_path):
    bad = tmp_path / "rules.yaml"
    bad.write_text("en:\n  - {literal: 'no', category: NEGATED_EXISTENCE, direction: FORWARD, pattern: '(unclosed'}\n")
    with pytest.raises(ValueError, match="rules.yaml"):
        load_rules(str(bad))


PARAPHRASES = [  # issue 24: paraphrases, loan words and scope
    ("Enlarged cardiac silhouette.", "en", {"Cardiomegaly": 1}),
    ("Splenic artery wall calcification.", "en", {"Arterial wall calcification": 1,
                                                  "Coronary artery wall calcification": 0}),
    ("Coronary and aortic calcifications.", "en", {"Arterial wall calcification": 1,
                                                   "Coronary artery wall calcification": 1}),
    ("Coronary arteries show extensive calcification.", "en", {"Coronary artery wall calcification": 1}),
    ("Wandverkalkungen der A. lienalis.", "de", {"Arterial wall calcification": 1}),
    ("Koronar- und Aortenverkalkungen.", "de", {"Coronary artery wall calcification": 1,
                                               "Arterial wall calcification": 1}),
    ("Ausgeprägte Koronarkalzifikationen.", "de", {"Coronary artery wall calcification": 1}),
    ("Konsolidation im Unterlappen.", "de", {"Consolidation": 1}),
    ("Hiläre LK-Vergrößerung re. auf 12 mm.", "de", {"Lymphadenopathy": 1}),
    ("A 7 mm ground-glass nodule in the right upper lobe.", "en", {"Lung nodule": 1, "Lung opacity": 0}),
    ("7 mm Milchglasknötchen im Oberlappen.", "de", {"Lung nodule": 1, "Lung opacity": 0}),
    ("Findings consistent with persistent atelectasis.", "en", {"Medical material": 0, "Atelectasis": 1}),
    ("Postentzündliche Residuen.", "de", {"Medical material": 0}),
    ("Cystic fibrosis with bronchiectasis.", "en", {"Pulmonary fibrotic sequela": 0, "Bronchiectasis": 1}),
    ("Previously enlarged mediastinal lymph nodes have decreased.", "en", {"Lymphadenopathy": 0}),
    ("Größenregredienz der vormals vergrößerten Lymphknoten.", "de", {"Lymphadenopathy": 0}),
    ("No new pulmonary nodules.", "en", {"Lung nodule": 0}),
    ("Resolved pleural effusion.", "en", {"Pleural effusion": 0}),
    ("Vollständig regredienter Rundherd.", "de", {"Lung nodule": 0}),
    ("Teilweise regredienter Pleuraerguss.", "de", {"Pleural effusion": 1}),
    ("Eine Milchglastrübung im Unterlappen ist fraglich, DD Artefakt.", "de", {"Lung opacity": -1}),
    ("Lunge frei von Rundherden, Infiltraten und Erguss.", "de", {"Lung nodule": 0, "Pleural effusion": 0}),
    ("No pleural effusion, mild atelectasis and bronchial wall thickening.", "en",
     {"Pleural effusion": 0, "Atelectasis": 1, "Peribronchial thickening": 1}),
]


@pytest.mark.parametrize("text, lang, expected", PARAPHRASES, ids=[c[0][:40] for c in PARAPHRASES])
def test_paraphrases_and_scope(text, lang, expected):
    labels = extract_labels(text, lang)
    assert {k: labels[k] for k in expected} == expected


def test_one_pass_finds_every_label_sharing_a_start():
    """Two labels whose synonyms begin at the same word are both found (one match call per word start)."""
    found = {label for label, _, _ in RuleLabeler().mentions("Calcification of the aorta and coronary arteries.")}
    assert found == {"Arterial wall calcification", "Coronary artery wall calcification"}
