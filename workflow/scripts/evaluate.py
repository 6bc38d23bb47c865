"""Rule evaluate: every protocol on every evaluation set of one run, with bootstrap CIs."""
import json
from pathlib import Path

from ctvlp.evaluate.arrays import load_embeddings
from ctvlp.evaluate.protocol import bin_mm_of, evaluate_sets
from ctvlp.logs import logged
from ctvlp.runs import load_run_config

with logged(snakemake.log[0]) as log:
    cfg = snakemake.config["evaluate"]
    sets = load_embeddings(Path(snakemake.input.npz), Path(snakemake.input.meta))
    run_config = load_run_config(snakemake.params.run_dir)
    metrics = evaluate_sets(sets, bin_mm_of(run_config), cfg["bootstrap_resamples"], snakemake.config["seed"],
                            cfg["ci"], run_config["train"]["prompt_scale"])
    Path(snakemake.output[0]).write_text(json.dumps(metrics, indent=1, default=float))
    log.info("evaluated %s", {k: v.get("n_scans") for k, v in metrics.items() if isinstance(v, dict) and "n_scans" in v})
