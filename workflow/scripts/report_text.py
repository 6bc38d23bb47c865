"""Rule report_text: reports (header PHI dropped), labels of every volume, prompts, text QC."""
import pandas as pd

from ctvlp.core.ids import resolve_salt
from ctvlp.io import index_store
from ctvlp.core.logs import logged
from ctvlp.text.labels import RuleLabeler, load_label_set
from ctvlp.text.public_reports import inspect_reports, merlin_reports
from ctvlp.text.llm import ChatClient, LLMLabeler, LLMSettings, Translator, load_glossary, load_question_set
from ctvlp.text.pipeline import (ctrate_text, dicom_identities, hospital_reports, label_reports, labels_summary,
                                 prompts_table, radchest_labels, translate_reports)

with logged(snakemake.log[0]) as log:
    sources, salt = dict(snakemake.params.sources), resolve_salt(snakemake.config["privacy"])
    volumes = pd.read_parquet(snakemake.input.volumes)
    text_cfg = snakemake.config["text"]
    label_set = load_label_set(text_cfg["label_set"])
    uncertain = text_cfg.get("uncertain_value", -1)
    client = None
    if text_cfg.get("labeler", "rules") == "llm" or text_cfg.get("translate"):
        client = ChatClient(LLMSettings.from_config(text_cfg["llm"], f"{snakemake.config['results']}/text/llm_cache"))
    if text_cfg.get("labeler", "rules") == "llm":
        labeler = LLMLabeler(client, load_question_set(text_cfg["llm"].get("question_set")), uncertain)
    else:
        labeler = RuleLabeler(label_set, text_cfg.get("context_rules"), uncertain)
    reports, labels, qc = [], [], []
    if "hospital" in sources:
        # only the columns that find one instance per study (ctvlp.io.index_store), never the whole index
        index = (index_store.read_index(index_store.dataset_dir(snakemake.input.index[0]), ["path", "reason", "study_key"])
                 if snakemake.input.index else None)
        identities = dicom_identities(index, sources["hospital"]["dicom_root"])
        rep, rows = hospital_reports(sources["hospital"]["reports_csv"], volumes, salt, text_cfg, identities)
        if text_cfg.get("translate"):
            tr = text_cfg["translate"]
            rep = translate_reports(rep, Translator(client, load_glossary(tr.get("glossary"), tr["from"], tr["to"])))
        reports.append(rep)
        lab, label_qc = label_reports(rep, labeler)
        labels.append(lab)
        qc += rows + label_qc
    if "ct_rate" in sources:
        rep, lab, rows = ctrate_text(sources["ct_rate"]["root"], volumes, salt)
        reports.append(rep)
        labels.append(lab)
        qc += rows
    if "rad_chestct" in sources:
        labels.append(radchest_labels(sources["rad_chestct"]["root"], volumes, salt))
    for name, read in (("merlin", merlin_reports), ("inspect", inspect_reports)):  # no CT-RATE-18 labels: -1
        if name in sources:
            rep, rows = read(sources[name]["root"], volumes, salt)
            reports.append(rep)
            qc += rows
    reports = pd.concat([r for r in reports if len(r)], ignore_index=True)
    labels = pd.concat([l for l in labels if len(l)], ignore_index=True)
    reports.to_parquet(snakemake.output.reports, index=False)
    labels.to_parquet(snakemake.output.labels, index=False)
    prompts_table(label_set).to_parquet(snakemake.output.prompts, index=False)
    pd.DataFrame(qc).to_parquet(snakemake.output.qc, index=False)
    log.info("reports: %d; labels: %d volumes\n%s", len(reports), len(labels), labels_summary(labels).T)
    if client is not None:
        log.info("LLM %s: %d requests, %d answers from the cache", client.settings.model, client.requests,
                 client.cache_hits)
        client.close()
