"""Rule mine_snippets: references in hospital reports resolved to depth bins of the cached volumes."""
import pandas as pd
import pyarrow.dataset as pads

from ctvlp.io import index_store
from ctvlp.core.logs import logged
from ctvlp.text.mining import default_pattern_files
from ctvlp.text.pipeline import mine_snippets, mining_stats

with logged(snakemake.log[0]) as log:
    reports = pd.read_parquet(snakemake.input.reports)
    volumes = pd.read_parquet(snakemake.input.volumes)
    # only the readable files' geometry columns of the partitioned index (ctvlp.io.index_store), not the whole table
    index = index_store.read_index(index_store.dataset_dir(snakemake.input.index[0]), index_store.RESOLVE_COLUMNS,
                                   pads.field("reason") == "") if snakemake.input.index else pd.DataFrame(
        columns=["reason", "accession_key"])
    series = pd.read_parquet(snakemake.input.series)
    files = default_pattern_files() + tuple(snakemake.params.patterns)
    snippets, qc = mine_snippets(reports, index, series, volumes, int(snakemake.params.bin_voxels), files,
                                 snakemake.params.min_confidence)
    snippets.to_parquet(snakemake.output.snippets, index=False)
    qc.to_parquet(snakemake.output.qc, index=False)
    with open(snakemake.output.stats, "w") as f:
        f.write(mining_stats(qc))
    log.info("references: %d, resolved snippets: %d", len(qc), len(snippets))
