"""Starting a training run as the workflow's rule ``train`` does: the run's own config, the checks that
must pass before any job starts, and the launch (in this process, or torchrun with one process per GPU).

Torch-free at import: the workflow imports this module while it parses the Snakefile.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Callable, Mapping

from ctvlp.core.config import ConfigError
from ctvlp.core.params import canonical, select
from ctvlp.core.pythonpath import pythonpath_with_first
from ctvlp.ingest.inputs import rate_config_dir
from ctvlp.train.ablations import apply_overrides
from ctvlp.train.plan import BatchPlan
from ctvlp.train.prompt_set import trained_groups

# What a training run reads of the config (and what its config.json holds; the privacy section never):
# the model, its training, the preprocessing and pretraining it starts from, the label set the CLI
# classifies with, and the GPUs it runs on. `train.ablations` (which runs exist) is not a run's setting.
RUN_KEYS = ("seed", "results", "model", "preprocess", "pretrain", "text.label_set", "compute.train_gpus",
            "compute.allow_cpu")


def run_config(config: Mapping, overrides: Mapping[str, object]) -> dict:
    """The effective config of one ablation run (its overrides applied), only the keys training reads, in
    canonical order: the rule's params (a changed value reruns the run; reordered keys do not) and config.json."""
    effective = apply_overrides(dict(config), dict(overrides))
    out = select(effective, RUN_KEYS)
    # a trained row does not read the release keys (a released row: rule import_release, which does)
    skip = {"ablations"} | (set() if effective["train"].get("source") == "released" else {"source", "release_dir"})
    out["train"] = select(effective["train"], [k for k in effective["train"] if k not in skip])
    if "prompt_groups" in out["train"]:  # the groups it trains: RATE's only where RATE labels are configured
        groups, _ = trained_groups(out["train"]["prompt_groups"], rate_config_dir(effective) is not None)
        out["train"]["prompt_groups"] = dict(sorted(groups.items()))
    return dict(sorted(out.items()))


def world_size(config: Mapping) -> int:
    """The processes a run's job starts: one per configured GPU (at least one)."""
    return max(int(config["compute"]["train_gpus"]), 1)


def check_runs(config: Mapping, runs: Mapping[str, Mapping[str, object]]) -> BatchPlan:
    """Every ablation run can start (checked while the workflow parses, before any job): its overrides name
    config keys, its global batch splits over its processes, and a run that flips ``pretrain.enabled`` finds
    the other encoder's volume cache. ConfigError naming the key and the run; returns the base config's plan."""
    for run, overrides in runs.items():
        try:
            effective = apply_overrides(dict(config), dict(overrides))
        except KeyError as err:
            raise ConfigError(f"{err.args[0] if err.args else err} (ablation run '{run}')") from None
        try:
            BatchPlan.check(effective, world_size(config))
        except ConfigError as err:
            raise ConfigError(f"{err} (ablation run '{run}')") from None
        try:
            trained_groups(effective["train"].get("prompt_groups") or {}, rate_config_dir(effective) is not None)
        except ValueError as err:
            raise ConfigError(f"{err} (ablation run '{run}')") from None
        flag = bool((effective.get("pretrain") or {}).get("enabled"))
        if flag != bool((config.get("pretrain") or {}).get("enabled")) and not config["preprocess"]["keep_volumes"]:
            raise ConfigError(f"config key 'preprocess.keep_volumes': ablation run '{run}' sets pretrain.enabled: "
                              f"{flag}, which needs the other encoder's features from the volume cache, but "
                              "preprocess.keep_volumes is false")
    _, dropped = trained_groups(config["train"].get("prompt_groups") or {}, rate_config_dir(dict(config)) is not None)
    if dropped:
        logging.getLogger("ctvlp.train").warning(
            "train.prompt_groups %s: not trained, no RATE labels (text.rate.config_dir is null); the prompt loss "
            "uses the text stage's labels", ", ".join(dropped))
    return BatchPlan.check(config, world_size(config))


def threads_per_process(threads: int, gpus: int) -> int:
    """torch would start one intra-op thread per core whatever the job was given: two jobs side by side would
    then fight over the same cores (the demo trains its ablation rows two at a time on 2 cores)."""
    return max(1, int(threads) // max(int(gpus), 1))


def torchrun_command(run_dir: Path, gpus: int, python: str = sys.executable) -> list[str]:
    """One node, one process per GPU, each running ``ctvlp.train.run`` on the files ``launch`` writes."""
    return [python, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={gpus}",
            "-m", "ctvlp.train.run", "--config", str(run_dir / "run_config.json"),
            "--inputs", str(run_dir / "inputs.json"), "--run-dir", str(run_dir), "--gpus", str(gpus)]


def worker_env(env: Mapping[str, str], threads: int) -> dict[str, str]:
    """The environment of torchrun's worker processes: ``env`` with ``OMP_NUM_THREADS`` and, in front of
    ``PYTHONPATH``, the folder this process imported ctvlp from. A rule script finds ctvlp through the search path
    Snakemake's preamble hands it (the workflow's own src/), which no child process inherits: under
    ``--sdm conda`` neither the environment (envs/gpu.yaml holds no ctvlp) nor ``PYTHONPATH`` (Snakemake strips
    it) would give it to the workers. Where ctvlp is installed in a site folder the path is left as it is (a
    site-packages folder in ``PYTHONPATH`` would go before the standard library)."""
    import site

    root = str(Path(__file__).resolve().parents[2])  # .../src of .../src/ctvlp/train/launch.py
    sites = {str(Path(p).resolve()) for p in [*site.getsitepackages(), site.getusersitepackages()]}
    out = {**env, "OMP_NUM_THREADS": str(threads)}
    if root not in sites:
        out["PYTHONPATH"] = pythonpath_with_first(root, env)
    return out


def check_single_node(nodes: int, requested_nodes: int = 1) -> None:
    if nodes > 1 or requested_nodes > 1:
        raise RuntimeError(f"rule train: this job has {nodes} nodes, but training starts torchrun --standalone on one "
                           "node; request the GPUs of one node (compute.train_gpus) and no `nodes` resource")


def write_run_config(run_dir: Path, config: Mapping) -> None:
    (run_dir / "config.json").write_text(json.dumps({k: v for k, v in config.items() if k != "privacy"}, indent=1))


def same_run(recorded: Mapping, config: Mapping) -> bool:
    """Whether a recorded run config is ``config``: equal values whatever the key order, the trained prompt scale
    aside (a run with ``train.prompt_scale: null`` records the value it trained in its config.json)."""
    recorded = canonical({k: v for k, v in recorded.items() if k != "privacy"})
    config = canonical({k: v for k, v in config.items() if k != "privacy"})
    if (config.get("train") or {}).get("prompt_scale") is None and "prompt_scale" in (recorded.get("train") or {}):
        recorded["train"]["prompt_scale"] = None
    return recorded == config


def launch(config: Mapping, run_dir: str | Path, inputs: Mapping[str, object], gpus: int = 0, threads: int = 1,
           nodes: int = 1, requested_nodes: int = 1, log: logging.Logger | None = None,
           train: Callable | None = None, run: Callable = subprocess.run) -> dict:
    """Train one run into ``run_dir`` (config.json first, final.json last) and return final.json's content.

    ``config`` is the run's config (:func:`run_config`); checkpoints of another config are set aside, never
    resumed (``ctvlp.train.checkpoint.set_aside_other_settings``). ``inputs`` the rule's input and cache paths
    (``ctvlp.train.run.load_inputs``). Several GPUs start torchrun (the rule log gets every worker's output
    through this process's stdout); one GPU or none trains in this process (``train``, default
    ``ctvlp.train.run.run_training``)."""
    log = log or logging.getLogger("ctvlp.train")
    config = {k: v for k, v in config.items() if k != "privacy"}  # training never needs the salt
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    check_single_node(int(nodes), int(requested_nodes or 1))
    import torch  # only now: the workflow imports this module while parsing

    from ctvlp.train.checkpoint import set_aside_other_settings

    set_aside_other_settings(run_dir / "checkpoints", config, same_run, log)
    write_run_config(run_dir, config)
    gpus = int(gpus or 0)

    torch.set_num_threads(threads_per_process(threads, gpus))
    if gpus > 1:
        (run_dir / "inputs.json").write_text(json.dumps(dict(inputs)))
        (run_dir / "run_config.json").write_text(json.dumps(config))
        cmd = torchrun_command(run_dir, gpus)
        log.info("starting %s", " ".join(cmd))
        sys.stdout.flush()
        env = worker_env(os.environ, torch.get_num_threads())
        run(cmd, check=True, stdout=sys.stdout, stderr=subprocess.STDOUT, env=env)
        result = json.loads((run_dir / "final.json").read_text())
    else:
        if train is None:
            from ctvlp.train.run import run_training as train
        result = train(config, run_dir, dict(inputs), gpus=gpus)
    if record_prompt_scale(config, result):
        write_run_config(run_dir, config)
        log.info("prompt_scale null: the trained SigLIP temperature exp(t) = %.4f is recorded in config.json",
                 result["prompt_scale"])
    if result.get("resumed_from_step"):
        log.info("resumed from the checkpoint of step %d of %d", result["resumed_from_step"], result["steps"])
    return result


def record_prompt_scale(config: dict, result: Mapping) -> bool:
    """prompt_scale null trains with exp(t), the SigLIP temperature: the run's config records the trained value,
    which the evaluation and the CLI use for zero-shot probabilities. True when ``config`` changed."""
    if config["train"].get("prompt_scale") is None and "prompt_scale" in result:
        config["train"] = {**config["train"], "prompt_scale": result["prompt_scale"]}
        return True
    return False
