"""Rule report_text: reports (header PHI dropped), labels of every volume, prompts, text QC (ctvlp.text.stage)."""
import pandas as pd

from ctvlp.core.ids import resolve_salt
from ctvlp.core.logs import logged
from ctvlp.io import index_store
from ctvlp.core.salt import stored_check
from ctvlp.text.pipeline import labels_summary
from ctvlp.text.stage import build_text, chat_client

with logged(snakemake.log[0]) as log:
    sources, text_cfg = dict(snakemake.params.sources), snakemake.params.cfg["text"]
    salt = resolve_salt(snakemake.config["privacy"])  # never a param: params are written to .snakemake/metadata
    volumes = pd.read_parquet(snakemake.input.volumes)
    # only the columns that find one instance per study (ctvlp.io.index_store), never the whole index
    index = (index_store.read_index(index_store.dataset_dir(snakemake.input.index[0]), ["path", "reason", "study_key"])
             if snakemake.input.index else None)
    client = chat_client(text_cfg, snakemake.params.llm_cache)
    try:
        tables = build_text(sources, volumes, salt, text_cfg, index, client,
                            stored_check(snakemake.input.index[0]) if snakemake.input.index else None)
    finally:
        if client is not None:
            log.info("LLM %s: %d requests, %d answers from the cache", client.settings.model, client.requests,
                     client.cache_hits)
            client.close()
    tables.reports.to_parquet(snakemake.output.reports, index=False)
    tables.labels.to_parquet(snakemake.output.labels, index=False)
    tables.prompts.to_parquet(snakemake.output.prompts, index=False)
    tables.qc.to_parquet(snakemake.output.qc, index=False)
    log.info("reports: %d; labels: %d volumes\n%s", len(tables.reports), len(tables.labels),
             labels_summary(tables.labels).T)
