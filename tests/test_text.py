"""Sections, decoding, labels (hand-written negation cases and the demo truth), snippet resolution."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ctvlp.demo.findings import SIMULATED_LABELS
from ctvlp.core.ids import Pseudonymizer
from ctvlp.core.label_set import CTRATE_LABELS
from ctvlp.text.labels import extract_labels, load_label_set
from ctvlp.text.sections import ctrate_sections, decode_report, split_sections, training_text

SALT = b"ctvlp-demo-salt"


def test_sections_drop_the_header_and_split_both_languages():
    de = ("Radiologischer Befund\nPatient: Erika Muster, geb. 01.02.1950\n\nKlinische Angaben:\nHusten.\n"
          "Technik:\nCT Thorax.\nBefund:\nKein Erguss.\nBeurteilung:\nUnauffällig.\n")
    sections = split_sections(de)
    assert sections == {"clinical": "Husten.", "comparison": "", "technique": "CT Thorax.", "findings": "Kein Erguss.",
                        "impression": "Unauffällig."}
    assert "Muster" not in training_text(sections)
    en = "MRN 123\nFindings: Nodule.\nImpression: Nodule, follow up."
    assert split_sections(en)["findings"] == "Nodule."
    assert split_sections(en)["impression"] == "Nodule, follow up."


def test_ctrate_not_given_means_empty():
    row = {"ClinicalInformation_EN": "Not given.", "Technique_EN": "Axial CT.", "Findings_EN": "No effusion.",
           "Impressions_EN": "Normal."}
    sections = ctrate_sections(row)
    assert sections["clinical"] == "" and sections["findings"] == "No effusion."


def test_decode_flags_non_utf8_html_and_empty():
    text, flags = decode_report("Kein Pleuraerguß".encode("cp1252"))
    assert text == "Kein Pleuraerguß" and flags == ["non_utf8"]
    text, flags = decode_report("<p>Findings: <b>nodule</b></p><br>Impression: none &amp; stable")
    assert flags == ["html"] and "<" not in text and "none & stable" in text
    assert decode_report("   ")[1] == ["empty"]


NEGATION_CASES = [
    ("No pleural effusion.", "en", "Pleural effusion", 0),
    ("Right-sided pleural effusion.", "en", "Pleural effusion", 1),
    ("Free of pleural effusion.", "en", "Pleural effusion", 0),
    ("Pleural effusion is not seen.", "en", "Pleural effusion", 0),
    ("Possible small pleural effusion.", "en", "Pleural effusion", -1),
    ("Pleural effusion cannot be excluded.", "en", "Pleural effusion", -1),
    ("No pleural effusion, but a small pericardial effusion.", "en", "Pericardial effusion", 1),
    ("No pleural effusion, but a small pericardial effusion.", "en", "Pleural effusion", 0),
    ("Small pericardial effusion, no pleural effusion.", "en", "Pericardial effusion", 1),
    ("Without lymphadenopathy.", "en", "Lymphadenopathy", 0),
    ("Heart size is normal, no cardiomegaly.", "en", "Cardiomegaly", 0),
    ("The heart is enlarged.", "en", "Cardiomegaly", 1),
    ("No pulmonary nodules or consolidation.", "en", "Consolidation", 0),
    ("Nodule in the right upper lobe.", "en", "Lung nodule", 1),
    ("The lungs are clear.", "en", "Lung nodule", 0),  # not mentioned: absent, as the paper maps answers
    ("Kein Pleuraerguss.", "de", "Pleural effusion", 0),
    ("Pleuraerguss rechts.", "de", "Pleural effusion", 1),
    ("Pleuraerguss ausgeschlossen.", "de", "Pleural effusion", 0),
    ("Fraglicher kleiner Pleuraerguss.", "de", "Pleural effusion", -1),
    ("V.a. Pleuraerguss links.", "de", "Pleural effusion", -1),
    ("Ohne Nachweis einer Lymphadenopathie.", "de", "Lymphadenopathie" and "Lymphadenopathy", 0),
    ("Keine vergrößerten Lymphknoten.", "de", "Lymphadenopathy", 0),
    ("Vergrößerter Lymphknoten rechts paratracheal.", "de", "Lymphadenopathy", 1),
    ("Normal großes Herz, keine Kardiomegalie.", "de", "Cardiomegaly", 0),
    ("Plattenatelektase im linken Unterlappen.", "de", "Atelectasis", 1),
    ("Zentrilobuläres Lungenemphysem.", "de", "Emphysema", 1),
    ("Nicht auszuschließen ist ein kleiner Rundherd.", "de", "Lung nodule", -1),
    ("Kein Perikarderguss, jedoch Pleuraerguss rechts.", "de", "Pleural effusion", 1),
    ("Kein Perikarderguss, jedoch Pleuraerguss rechts.", "de", "Pericardial effusion", 0),
    ("Koronarverkalkung des Ramus interventricularis anterior.", "de", "Coronary artery wall calcification", 1),
    ("Koronarverkalkung des Ramus interventricularis anterior.", "de", "Arterial wall calcification", 0),
    ("Calcification of the left anterior descending coronary artery.", "en", "Arterial wall calcification", 0),
    ("Calcified plaques of the descending aortic wall.", "en", "Arterial wall calcification", 1),
    ("Keine Verkalkungen der Aortenwand.", "de", "Arterial wall calcification", 0),
    ("Portkatheter-System rechts.", "de", "Medical material", 1),
    ("No lymph node enlargement; lymphadenopathy is absent.", "en", "Lymphadenopathy", 0),
]


@pytest.mark.parametrize("text, lang, label, expected", NEGATION_CASES)
def test_label_negation_and_uncertainty(text, lang, label, expected):
    assert extract_labels(text, lang)[label] == expected


def test_label_set_has_18_labels_with_three_prompts_each():
    label_set = load_label_set()
    assert label_set.labels == CTRATE_LABELS
    for label in label_set.labels:
        assert len(label_set.prompts[label]["positive"]) == 3 and len(label_set.prompts[label]["negative"]) == 3


def _accession_to_volume(test_run) -> dict[str, str]:
    pseudo = Pseudonymizer(SALT)
    volumes = pd.read_parquet(test_run / "results" / "manifest" / "volumes.parquet")
    hosp = volumes[volumes.dataset == "hospital"].set_index("accession_key")
    studies = pd.read_csv(test_run / "demo_data" / "ground_truth" / "hospital_studies.csv")
    return {a: hosp.loc[pseudo("hospital", "accession", a), "volume_id"] for a in studies.accession}


def test_labels_match_the_demo_truth(test_run, run_config):
    """On the session's test run; tests/demo collects it again on the demo run (full-size bounds)."""
    from sklearn.metrics import f1_score
    labels = pd.read_parquet(test_run / "results" / "text" / "labels.parquet").set_index("volume_id")
    studies = pd.read_csv(test_run / "demo_data" / "ground_truth" / "hospital_studies.csv")
    volume_of = _accession_to_volume(test_run)
    pred = labels.loc[[volume_of[a] for a in studies.accession]]
    assert (pred.labeler == "rules").all()
    scores = [f1_score(studies[label] == 1, pred[label] == 1) for label in SIMULATED_LABELS]
    assert np.mean(scores) >= 0.95, dict(zip(SIMULATED_LABELS, scores))
    ctrate = labels[labels.dataset == "ct_rate"]
    minis = run_config["demo"]["minis"]
    demo_size = minis["ctrate_train_patients"] + minis["ctrate_valid_patients"] >= 10  # the test run: 3 + 3
    assert (ctrate.labeler == "ct_rate_shipped").all() and len(ctrate) >= (30 if demo_size else 12)
    rad = labels[labels.dataset == "rad_chestct"]
    assert (rad["Mosaic attenuation pattern"] == -1).all() and len(rad) == minis["radchest_scans"]


def test_every_planted_reference_is_resolved_or_rejected_as_planted(test_run, run_config):
    """On the session's test run (its fault corpus's references set apart: tests/test_faults.py checks them);
    tests/demo collects it again on the demo run (full-size bounds)."""
    truth = pd.read_csv(test_run / "demo_data" / "ground_truth" / "hospital_references.csv")
    qc = pd.read_parquet(test_run / "results" / "qc" / "mining_qc.parquet")
    volumes = pd.read_parquet(test_run / "results" / "manifest" / "volumes.parquet").set_index("volume_id")
    volume_of = _accession_to_volume(test_run)
    faults = test_run / "demo_data" / "ground_truth" / "faults.csv"  # the corpus adds bad references to one
    added = (pd.read_csv(faults).table == "mining_qc").sum() if run_config["demo"]["faults"] else 0  # report
    assert len(qc) == len(truth) + added
    checked_bins = 0
    for t in truth.itertuples():
        vid = volume_of[t.accession]
        series = -1 if pd.isna(t.series) else int(t.series)
        hit = qc[(qc.volume_id == vid) & (qc.image == t.image) & (qc.series == series)]
        same = truth[(truth.accession == t.accession) & (truth.image == t.image)
                     & (truth.series.fillna(-1).astype(int) == series)]
        assert len(hit) == len(same), (t.accession, t.series, t.image)
        row = hit.iloc[0]
        if t.expected != "ok":
            assert row.reason_code == t.expected
            continue
        affine = np.array(volumes.loc[vid, "affine"]).reshape(4, 4)
        n_z = volumes.loc[vid, "shape"][2]
        k = (t.true_z - affine[2, 3]) / affine[2, 2]
        if k < -0.5 or k > n_z - 0.5:
            assert row.reason_code == "outside_volume"
            continue
        assert row.reason_code == "ok"
        snippets = pd.read_parquet(test_run / "results" / "text" / "snippets.parquet")
        found = snippets[(snippets.volume_id == vid) & (snippets.image == t.image)]
        if series >= 0:  # the same image number may be cited in another series of the study
            found = found[found.series == series]
        s = found.iloc[0]
        on_edge = abs((k + 0.5) / 2 - round((k + 0.5) / 2)) < 1e-3  # exactly between two bins: either is right
        # on an edge: the bin below or above it (bin b spans (k + 0.5) / 2 in [b, b + 1))
        assert s.depth_bin == int((k + 0.5) // 2) or (on_edge and abs(s.depth_bin + 0.5 - (k + 0.5) / 2) <= 0.5 + 1e-3)
        assert abs(s.z_mm - t.true_z) < 1e-3
        checked_bins += 1
    assert checked_bins >= (40 if run_config["demo"]["n_patients"] >= 40 else 5)
