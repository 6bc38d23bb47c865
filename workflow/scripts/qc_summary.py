"""Rule qc_summary: final volume table, QC table with preprocessing rejections, summary.md."""
import json

import pandas as pd

from ctvlp.core.logs import logged
from ctvlp.ingest.qc import apply_preprocess_results, check_sources_yield, merge_results, summary_markdown

with logged(snakemake.log[0]) as log:
    manifest = pd.read_parquet(snakemake.input.manifest)
    results = pd.concat([pd.read_parquet(p) for p in snakemake.input.shards], ignore_index=True)
    volumes = merge_results(manifest, results)
    qc = apply_preprocess_results(pd.read_parquet(snakemake.input.qc), results)
    inputs = json.loads(open(snakemake.input.inputs).read())
    with open(snakemake.output.summary, "w") as f:
        f.write(summary_markdown(qc, inputs))
    qc.to_parquet(snakemake.output.qc, index=False)
    check_sources_yield(qc, sorted(inputs))  # a source that yields nothing stops the run, with reason counts
    volumes.to_parquet(snakemake.output.volumes, index=False)
    log.info("volumes ok: %d of %d", int((volumes.status == "ok").sum()), len(volumes))
