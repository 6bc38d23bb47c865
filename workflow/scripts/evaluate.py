"""Rule evaluate: every protocol (ours and the paper's) on every evaluation set of one run, with bootstrap CIs."""
import json
from pathlib import Path

import pandas as pd

from ctvlp.evaluate.arrays import load_embeddings
from ctvlp.evaluate.paper import PaperSettings
from ctvlp.evaluate.protocol import bin_mm_of, evaluate_sets
from ctvlp.core.logs import logged
from ctvlp.core.runs import load_run_config

with logged(snakemake.log[0]) as log:
    cfg = snakemake.params.cfg["evaluate"]
    sets = load_embeddings(Path(snakemake.input.npz), Path(snakemake.input.meta))
    volumes = pd.read_parquet(snakemake.input.volumes, columns=["volume_id", "source"])
    run_config = load_run_config(snakemake.params.run_dir)
    metrics = evaluate_sets(sets, bin_mm_of(run_config), cfg["bootstrap_resamples"], snakemake.params.cfg["seed"],
                            cfg["ci"], run_config["train"]["prompt_scale"],
                            sources=dict(zip(volumes.volume_id, volumes.source)),
                            paper=PaperSettings.from_config(cfg))
    Path(snakemake.output[0]).write_text(json.dumps(metrics, indent=1, default=float))
    log.info("evaluated %s", {k: v.get("n_scans") for k, v in metrics.items() if isinstance(v, dict) and "n_scans" in v})
