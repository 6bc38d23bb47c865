"""Rule qc_summary: final volume table, QC table with preprocessing rejections, summary.md."""
import pandas as pd

from ctvlp.logs import logged
from ctvlp.qc import apply_preprocess_results, summary_markdown

with logged(snakemake.log[0]) as log:
    manifest = pd.read_parquet(snakemake.input.manifest)
    results = pd.concat([pd.read_parquet(p) for p in snakemake.input.shards], ignore_index=True)
    volumes = manifest.merge(results, on="volume_id", how="left", validate="one_to_one")
    volumes.to_parquet(snakemake.output.volumes, index=False)
    qc = apply_preprocess_results(pd.read_parquet(snakemake.input.qc), results)
    qc.to_parquet(snakemake.output.qc, index=False)
    with open(snakemake.output.summary, "w") as f:
        f.write(summary_markdown(qc))
    log.info("volumes ok: %d of %d", int((volumes.status == "ok").sum()), len(volumes))
