"""Rule preprocess: one shard of the manifest into the float16 volume cache, or (keep_volumes: false) into
window features directly, caching only the held-out hospital volumes the qualitative figures draw."""
import pandas as pd

from ctvlp.ingest.sources import IngestSettings
from ctvlp.io import index_store
from ctvlp.core.logs import logged
from ctvlp.features.inline import InlineFeatures
from ctvlp.preprocess.shard import keeps_for_figures, process_shard, shard_counts, shard_index
from ctvlp.preprocess.transform import PreprocessSpec

with logged(snakemake.log[0]) as log:
    cfg = snakemake.params.cfg  # the ingest geometry, the index buckets, preprocess (+ window encoder when inline)
    shard = int(snakemake.wildcards.shard)
    manifest = pd.read_parquet(snakemake.input.manifest, filters=[("shard", "==", shard)])  # this shard's rows
    index = shard_index(manifest, index_store.dataset_dir(snakemake.input.index[0]),
                        cfg["ingest"]["index_buckets"]) if snakemake.input.index else None
    inline = None if cfg["preprocess"]["keep_volumes"] else InlineFeatures.from_config(
        cfg, snakemake.params.feature_dir, snakemake.resources.get("tmpdir"))
    results = process_shard(manifest, shard, dict(snakemake.params.sources), index,
                            PreprocessSpec.from_config(cfg["preprocess"], cfg["model"]),
                            snakemake.params.cache_dir, IngestSettings.from_config(cfg).geometry,
                            consume=inline, keep=None if inline is None else keeps_for_figures)
    results.to_parquet(snakemake.output.shard, index=False)
    if inline is not None:
        inline.table(results).to_parquet(snakemake.output.features, index=False)
    log.info("shard %s: %s", shard, shard_counts(results))
