"""The text stage of rule report_text (ctvlp.text.stage): which labeler and client a config asks for, and the
tables it builds from the configured sources."""

from __future__ import annotations

import pandas as pd
import pytest

from ctvlp.core.ids import Pseudonymizer
from ctvlp.core.label_set import CTRATE_LABELS
from ctvlp.text.labels import RuleLabeler, load_label_set
from ctvlp.text.stage import TEXT_KEYS, build_text, chat_client, make_labeler, needs_llm

SALT = b"stage-salt"
P = Pseudonymizer(SALT)
TEXT_CFG = {"label_set": None, "labeler": "rules", "context_rules": None, "uncertain_value": -1,
            "section_headings": None, "join_fallback": [], "llm": {"base_url": "http://localhost:1/v1", "model": "m"},
            "translate": None, "report_columns": {"accession": "AccessionNumber", "text": "ReportText",
                                                  "patient_id": "PatientID", "study_date": "ReportDate"}}


def _hospital(tmp_path, reports: list[tuple[str, str]], exported: int):
    """A hospital export of (accession, report text) and the volumes table the manifest would write for the
    studies of its first ``exported`` reports."""
    csv = tmp_path / "reports.csv"
    pd.DataFrame([{"AccessionNumber": acc, "ReportText": text, "PatientID": f"P{i}", "ReportDate": ""}
                  for i, (acc, text) in enumerate(reports)]).to_csv(csv, index=False)
    volumes = pd.DataFrame([{"volume_id": f"V{i:03d}", "scan_id": f"C{i:03d}", "patient_id": P("hospital", "patient",
                                                                                                f"P{i}"),
                             "dataset": "hospital", "split": "train", "status": "ok",
                             "accession_key": P("hospital", "accession", acc)} for i, (acc, _) in enumerate(reports[:exported])])
    return {"hospital": {"dicom_root": str(tmp_path / "dicom"), "reports_csv": str(csv)}}, volumes


def test_hospital_reports_become_reports_labels_prompts_and_qc(tmp_path):
    sources, volumes = _hospital(tmp_path, [
        ("A1", "Findings:\nLarge pleural effusion on the right. No nodule.\nImpression:\nPleural effusion."),
        ("A2", "Findings:\nNo pleural effusion. Lungs clear.\nImpression:\nNormal chest CT."),
        ("A9", "Findings:\nA report of a study nobody exported.\nImpression:\nNone."),
    ], exported=2)
    tables = build_text(sources, volumes, SALT, TEXT_CFG)
    assert sorted(tables.reports.volume_id) == ["V000", "V001"]  # A9 joins no volume
    labels = tables.labels.set_index("volume_id")
    assert set(CTRATE_LABELS) <= set(labels.columns)
    assert labels.loc["V000", "Pleural effusion"] == 1 and labels.loc["V001", "Pleural effusion"] == 0
    # one QC row per report for the join, accepted or rejected with its reason, plus the labeler's rows
    joins = tables.qc[tables.qc.kind == "report"]
    assert len(joins) == 3 and (joins.status == "rejected").sum() == 1
    label_set = load_label_set(None)
    assert set(tables.prompts.label) == set(label_set.labels)
    assert set(tables.prompts.polarity) == {"positive", "negative"}


def test_a_source_without_reports_gives_empty_tables_not_a_crash(tmp_path):
    tables = build_text({}, pd.DataFrame(columns=["volume_id", "dataset", "status"]), SALT, TEXT_CFG)
    assert tables.reports.empty and tables.labels.empty and tables.qc.empty and len(tables.prompts)


def test_rules_labeler_by_default_and_no_llm_client():
    assert isinstance(make_labeler(TEXT_CFG, load_label_set(None)), RuleLabeler)
    assert not needs_llm(TEXT_CFG) and chat_client(TEXT_CFG, "unused") is None


def test_llm_labeler_or_translation_asks_for_the_client(tmp_path):
    llm = {**TEXT_CFG, "labeler": "llm"}
    assert needs_llm(llm) and needs_llm({**TEXT_CFG, "translate": {"from": "de", "to": "en"}})
    with pytest.raises(ValueError, match="no LLM client"):
        make_labeler(llm, load_label_set(None))
    client = chat_client(llm, tmp_path / "cache")
    try:
        labeler = make_labeler(llm, load_label_set(None), client)
        assert labeler.name == "llm" and client.settings.cache_dir == str(tmp_path / "cache")
    finally:
        client.close()


def test_text_keys_are_the_config_keys_the_stage_reads():
    """The rule passes exactly TEXT_KEYS of `text:` (tests/test_workflow_rerun.py checks the rule side)."""
    import yaml

    from conftest import REPO

    text = yaml.safe_load((REPO / "config/config.yaml").read_text())["text"]
    assert set(TEXT_KEYS) <= set(text)
    assert not {"mining_patterns", "rate"} & set(TEXT_KEYS)  # rules mine_snippets and rate_labels read those
