"""Rule embed: embeddings of one trained run on every evaluation set."""
from pathlib import Path

import pandas as pd

from ctvlp.evaluate.embed import embed_run, report_sections
from ctvlp.core.logs import logged
from ctvlp.models.loading import device_for, load_trained_model
from ctvlp.train.run import load_inputs

with logged(snakemake.log[0]) as log:
    model, run_config = load_trained_model(snakemake.params.run_dir, device_for())
    paths = {k: snakemake.input[k] for k in ("volumes", "reports", "labels", "snippets", "prompts")}
    paths.update(feature_shards=list(snakemake.input.feature_shards), feature_dir=snakemake.params.feature_dir,
                 cache_dir=snakemake.params.cache_dir)
    samples, features, prompts = load_inputs(paths, run_config)
    features = features.for_model(model)  # trained end to end: its own window encoder reads the cache
    sections = report_sections(pd.read_parquet(snakemake.input.reports))
    counts = embed_run(model, samples, features, prompts, Path(snakemake.output.npz), Path(snakemake.output.meta),
                       sections)
    log.info("embedded %s", counts)
