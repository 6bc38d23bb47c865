"""Rule train: one ablation run; torchrun with one process per GPU when the job has several."""
import json
import os
import subprocess
import sys
from pathlib import Path

import torch

from ctvlp.core.logs import logged
from ctvlp.train.ablations import apply_overrides
from ctvlp.train.run import run_training

with logged(snakemake.log[0]) as log:
    # Training never needs the pseudonymization salt: no config written to the run holds it.
    config = {k: v for k, v in apply_overrides(dict(snakemake.config), dict(snakemake.params.overrides)).items()
              if k != "privacy"}
    run_dir = Path(snakemake.params.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.json").write_text(json.dumps(config, indent=1))
    inputs = {"volumes": snakemake.input.volumes, "feature_shards": list(snakemake.input.feature_shards),
              "reports": snakemake.input.reports, "labels": snakemake.input.labels,
              "snippets": snakemake.input.snippets, "prompts": snakemake.input.prompts,
              "feature_dir": snakemake.params.feature_dir, "cache_dir": snakemake.params.cache_dir}
    gpus = int(snakemake.resources.get("gpu", 0) or 0)
    nodes = int(os.environ.get("SLURM_JOB_NUM_NODES", "1"))
    if nodes > 1 or int(snakemake.resources.get("nodes", 1) or 1) > 1:
        raise RuntimeError(f"rule train: this job has {nodes} nodes, but training starts torchrun --standalone on one "
                         "node; request the GPUs of one node (compute.train_gpus) and no `nodes` resource")
    # torch would start one intra-op thread per core whatever the job was given: two jobs side by side would
    # then fight over the same cores (the demo trains its ablation rows two at a time on 2 cores)
    torch.set_num_threads(max(1, snakemake.threads // max(gpus, 1)))
    if gpus > 1:
        (run_dir / "inputs.json").write_text(json.dumps(inputs))
        (run_dir / "run_config.json").write_text(json.dumps(config))
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={gpus}",
               "-m", "ctvlp.train.run", "--config", str(run_dir / "run_config.json"),
               "--inputs", str(run_dir / "inputs.json"), "--run-dir", str(run_dir), "--gpus", str(gpus)]
        log.info("starting %s", " ".join(cmd))
        sys.stdout.flush()
        # The rule log receives torchrun's and every worker's output (sys.stdout is the log file here).
        env = {**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads())}
        subprocess.run(cmd, check=True, stdout=sys.stdout, stderr=subprocess.STDOUT, env=env)
        result = json.loads((run_dir / "final.json").read_text())
    else:
        result = run_training(config, run_dir, inputs, gpus=gpus)
    if config["train"].get("prompt_scale") is None and "prompt_scale" in result:
        # prompt_scale null trains with exp(t), the SigLIP temperature: the run's config records the trained
        # value, which the evaluation and the CLI use for zero-shot probabilities
        config["train"]["prompt_scale"] = result["prompt_scale"]
        (run_dir / "config.json").write_text(json.dumps({k: v for k, v in config.items() if k != "privacy"}, indent=1))
        log.info("prompt_scale null: the trained SigLIP temperature exp(t) = %.4f is recorded in config.json",
                 result["prompt_scale"])
    if result.get("resumed_from_step"):
        log.info("resumed from the checkpoint of step %d of %d", result["resumed_from_step"], result["steps"])
    log.info("run %s: %s", snakemake.wildcards.run, json.dumps(result.get("test", {}), default=float))
