"""Rule preprocess: one shard of the manifest into the float16 volume cache."""
import pandas as pd

from ctvlp.ingest import IngestSettings
from ctvlp.logs import logged
from ctvlp.preprocess.shard import process_shard
from ctvlp.preprocess.transform import PreprocessSpec

with logged(snakemake.log[0]) as log:
    manifest = pd.read_parquet(snakemake.input.manifest)
    index = pd.read_parquet(snakemake.input.index[0]) if snakemake.input.index else None
    results = process_shard(manifest, int(snakemake.wildcards.shard), dict(snakemake.params.sources), index,
                            PreprocessSpec.from_config(snakemake.config["preprocess"]),
                            snakemake.params.cache_dir, IngestSettings.from_config(snakemake.config).geometry)
    results.to_parquet(snakemake.output[0], index=False)
    log.info("shard %s: %d ok, %d rejected", snakemake.wildcards.shard, int((results.status == "ok").sum()),
             int((results.status != "ok").sum()))
