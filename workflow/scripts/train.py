"""Rule train: one ablation run (ctvlp.train.launch: in this process, or torchrun with one process per GPU)."""
import json
import os
from pathlib import Path

from ctvlp.core.logs import logged
from ctvlp.train.launch import launch

with logged(snakemake.log[0]) as log:
    inputs = {"volumes": snakemake.input.volumes, "feature_shards": list(snakemake.input.feature_shards),
              "reports": snakemake.input.reports, "labels": snakemake.input.labels,
              "snippets": snakemake.input.snippets, "prompts": snakemake.input.prompts,
              "feature_dir": snakemake.params.feature_dir, "cache_dir": snakemake.params.cache_dir}
    if snakemake.input.rate:  # [rate_labels, rate_prompts] when RATE labels are configured (else empty)
        inputs.update(zip(("rate_labels", "rate_prompts"), snakemake.input.rate))
    # params.cfg: the run's effective config (ctvlp.train.launch.run_config), never the privacy section
    result = launch(dict(snakemake.params.cfg), Path(snakemake.params.run_dir), inputs,
                    gpus=int(snakemake.resources.get("gpu", 0) or 0), threads=snakemake.threads,
                    nodes=int(os.environ.get("SLURM_JOB_NUM_NODES", "1")),
                    requested_nodes=int(snakemake.resources.get("nodes", 1) or 1), log=log)
    log.info("run %s: %s", snakemake.wildcards.run, json.dumps(result.get("test", {}), default=float))
