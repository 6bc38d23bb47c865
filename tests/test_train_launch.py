"""How rule train starts a run (ctvlp.train.launch): the run's own config, the checks before any job, and the
launch in this process or through torchrun."""

from __future__ import annotations

import json
import sys

import pytest
import yaml

from conftest import REPO
from ctvlp.core.config import ConfigError
from ctvlp.train.launch import (RUN_KEYS, check_runs, check_single_node, launch, run_config, threads_per_process,
                                torchrun_command)


def base() -> dict:
    return yaml.safe_load((REPO / "config/config.yaml").read_text())


def reordered(value):
    """The same config with every mapping's keys in reverse order."""
    if isinstance(value, dict):
        return {k: reordered(value[k]) for k in reversed(list(value))}
    return value


def test_run_config_holds_only_what_training_reads_with_the_overrides_applied():
    cfg = run_config(base(), {"train.lr": 0.5, "pretrain.enabled": False})
    assert set(cfg) == {"seed", "results", "model", "preprocess", "pretrain", "text", "compute", "train"}
    assert cfg["train"]["lr"] == 0.5 and cfg["pretrain"]["enabled"] is False
    assert "privacy" not in cfg and "evaluate" not in cfg and "ablations" not in cfg["train"]
    assert cfg["text"] == {"label_set": None} and set(cfg["compute"]) == {"train_gpus", "allow_cpu"}
    assert {key.split(".")[0] for key in RUN_KEYS} | {"train"} == set(cfg)


def test_run_config_is_canonical_a_changed_value_changes_it_and_an_overridden_one_does_not():
    config = base()
    same = run_config(reordered(config), {"model.embed_dim": 64, "train.lr": 0.5})
    assert repr(same) == repr(run_config(config, {"train.lr": 0.5, "model.embed_dim": 64}))  # what Snakemake compares
    faster = {**config, "train": {**config["train"], "lr": 2 * config["train"]["lr"]}}
    assert run_config(faster, {}) != run_config(config, {})  # every row without its own lr reruns
    assert run_config(faster, {"train.lr": 0.5}) == run_config(config, {"train.lr": 0.5})  # a row with its own does not
    elsewhere = {**config, "evaluate": {**config["evaluate"], "bootstrap_resamples": 7},
                 "train": {**config["train"], "ablations": "other.tsv"}}
    assert run_config(elsewhere, {}) == run_config(config, {})


def test_check_runs_names_the_key_and_the_row():
    config = base()
    plan = check_runs(config, {"full": {}, "small": {"train.micro_batch": 8}})
    assert plan.batch == config["train"]["batch_size"]
    with pytest.raises(ConfigError, match=r"train\.batch_size.*\(ablation run 'odd'\)"):
        check_runs(config, {"full": {}, "odd": {"train.batch_size": 20}})
    with pytest.raises(ConfigError, match=r"train\.lrr.*\(ablation run 'typo'\)"):
        check_runs(config, {"typo": {"train.lrr": 1.0}})
    frozen = {**config, "preprocess": {**config["preprocess"], "keep_volumes": False}}
    with pytest.raises(ConfigError, match=r"preprocess\.keep_volumes': ablation run 'random' sets pretrain\.enabled"):
        check_runs(frozen, {"full": {}, "random": {"pretrain.enabled": False}})


def test_torchrun_one_node_one_process_per_gpu(tmp_path):
    cmd = torchrun_command(tmp_path, 4, python="py")
    assert cmd[:5] == ["py", "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=4"]
    assert cmd[cmd.index("--config") + 1] == str(tmp_path / "run_config.json") and cmd[-2:] == ["--gpus", "4"]
    assert threads_per_process(8, 4) == 2 and threads_per_process(1, 0) == 1 and threads_per_process(2, 4) == 1
    check_single_node(1)
    with pytest.raises(RuntimeError, match="2 nodes"):
        check_single_node(2)
    with pytest.raises(RuntimeError, match="no `nodes` resource"):
        check_single_node(1, requested_nodes=2)


@pytest.fixture
def torch_threads():
    import torch

    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_launch_in_process_writes_the_config_and_records_the_trained_temperature(tmp_path, torch_threads):
    config = {**run_config(base(), {}), "privacy": {"salt": "s"}}
    assert config["train"]["prompt_scale"] is None
    seen = {}

    def train(cfg, run_dir, inputs, gpus):
        seen.update(cfg=cfg, inputs=inputs, gpus=gpus)
        assert json.loads((run_dir / "config.json").read_text())["train"]["prompt_scale"] is None  # written first
        return {"prompt_scale": 12.5, "steps": 3, "resumed_from_step": 2}

    result = launch(config, tmp_path / "run", {"volumes": "v.parquet"}, gpus=0, threads=2, train=train)
    assert result["prompt_scale"] == 12.5 and seen["gpus"] == 0 and "privacy" not in seen["cfg"]
    written = json.loads((tmp_path / "run" / "config.json").read_text())
    assert written["train"]["prompt_scale"] == 12.5 and "privacy" not in written
    assert config["train"]["prompt_scale"] is None  # the caller's config is left as it was


def test_launch_on_several_gpus_starts_torchrun_and_reads_its_final_json(tmp_path, torch_threads):
    config = run_config(base(), {"train.prompt_scale": 10.0})
    calls = []

    def run(cmd, **kwargs):
        calls.append((cmd, kwargs))
        (tmp_path / "run" / "final.json").write_text(json.dumps({"best": 1, "steps": 4}))

    result = launch(config, tmp_path / "run", {"volumes": "v.parquet"}, gpus=2, threads=4, run=run)
    assert result == {"best": 1, "steps": 4}
    cmd, kwargs = calls[0]
    assert cmd == torchrun_command(tmp_path / "run", 2) and cmd[0] == sys.executable
    assert kwargs["check"] and kwargs["env"]["OMP_NUM_THREADS"] == "2"
    assert json.loads((tmp_path / "run" / "inputs.json").read_text()) == {"volumes": "v.parquet"}
    assert json.loads((tmp_path / "run" / "run_config.json").read_text()) == config


def test_checkpoints_of_another_config_are_set_aside_and_a_killed_run_of_the_same_resumes(tmp_path, torch_threads):
    config = run_config(base(), {})
    run = tmp_path / "run"
    resumed = []

    def train(cfg, run_dir, inputs, gpus):
        resumed.append((run_dir / "checkpoints" / "latest.json").is_file())
        (run_dir / "checkpoints" / "latest.json").write_text("{}")  # a checkpoint, as the trainer writes one
        return {"prompt_scale": 9.0}

    launch(config, run, {}, train=train)  # a first run: nothing to resume
    launch(reordered(config), run, {}, train=train)  # the same config: resumes
    assert resumed == [False, True] and not list(run.glob("checkpoints.stale-*"))
    launch(run_config(base(), {"train.lr": 0.5}), run, {}, train=train)  # another config: fresh, the old kept aside
    (run / "config.json").write_text(json.dumps(config))  # config.json rewritten by an older version, then a crash:
    launch(config, run, {}, train=train)  # the checkpoints' own record decides
    assert resumed == [False, True, False, False]
    assert sorted(p.name for p in run.glob("checkpoints.stale-*")) == ["checkpoints.stale-1", "checkpoints.stale-2"]
    (run / "checkpoints" / "config.json").unlink()  # checkpoints that do not say what they were trained with
    launch(config, run, {}, train=train)
    assert resumed[-1] is False and (run / "checkpoints.stale-3" / "latest.json").is_file()
