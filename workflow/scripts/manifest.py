"""Rule manifest: series selection, public adapters, splits by patient, QC of every input."""
import json

from ctvlp.core.ids import resolve_salt
from ctvlp.ingest.sources import IngestSettings, ingest
from ctvlp.io import index_store
from ctvlp.core.logs import logged

with logged(snakemake.log[0]) as log:
    summary = snakemake.input.index[0] if snakemake.input.index else None
    index = index_store.iter_buckets(index_store.dataset_dir(summary), index_store.CLASSIFY_COLUMNS) if summary else None
    manifest, series, qc, inputs = ingest(dict(snakemake.params.sources), index,
                                          resolve_salt(snakemake.config["privacy"]),
                                          IngestSettings.from_config(snakemake.params.cfg),
                                          files_walked=index_store.files_walked(summary) if summary else None)
    manifest.to_parquet(snakemake.output.manifest, index=False)
    series.to_parquet(snakemake.output.series, index=False)
    qc.to_parquet(snakemake.output.qc, index=False)
    with open(snakemake.output.inputs, "w") as f:
        json.dump(inputs, f, indent=1, sort_keys=True)
    log.info("manifest: %d volumes; splits %s; inputs %s", len(manifest), manifest.split.value_counts().to_dict(),
             inputs)
