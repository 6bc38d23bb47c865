"""Rule preprocess: one shard of the manifest into the float16 volume cache."""
import pandas as pd

from ctvlp.ingest import IngestSettings
from ctvlp.io import index_store
from ctvlp.logs import logged
from ctvlp.preprocess.shard import process_shard, shard_index
from ctvlp.preprocess.transform import PreprocessSpec

with logged(snakemake.log[0]) as log:
    shard = int(snakemake.wildcards.shard)
    manifest = pd.read_parquet(snakemake.input.manifest, filters=[("shard", "==", shard)])  # this shard's rows
    index = shard_index(manifest, index_store.dataset_dir(snakemake.input.index[0]),
                        snakemake.config["ingest"]["index_buckets"]) if snakemake.input.index else None
    results = process_shard(manifest, shard, dict(snakemake.params.sources), index,
                            PreprocessSpec.from_config(snakemake.config["preprocess"]),
                            snakemake.params.cache_dir, IngestSettings.from_config(snakemake.config).geometry)
    results.to_parquet(snakemake.output[0], index=False)
    log.info("shard %s: %d ok, %d rejected", shard, int((results.status == "ok").sum()),
             int((results.status != "ok").sum()))
