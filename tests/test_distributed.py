"""Training over several processes (gloo on CPU) is the same training as one process: a global batch of
12 pairs split over 2 or 3 processes, on a training set that does not divide into whole batches (27
entries: 25 hospital volumes and 2 CT-RATE reports with two reconstructions each), runs to the end
(an epoch boundary with the shared dev pass included), and its parameters after N steps equal those
of one process that trained the same global batches. Real steps of the real model: the tiny scan
combiner and heads over random window features, and the real MiniLM from the wheel with LoRA."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import yaml
from safetensors.torch import load_file, save_file

from ctvlp.core.compute import DeviceError, resolve_device
from ctvlp.core.config import ConfigError
from ctvlp.train.ablations import apply_overrides
from ctvlp.train.data import FeatureSet, Sample
from ctvlp.train.plan import BatchPlan
from ctvlp.train.prompt_set import PromptSet
from ctvlp.train.trainer import Trainer

REPO = Path(__file__).resolve().parents[1]
STEPS = 3  # steps 1-2 are epoch 0 (2 steps of 12 over 27 entries), step 3 starts epoch 1
SETTINGS = {"model.window_encoder.dim": 12, "model.scan_encoder.dim": 24, "model.scan_encoder.depth": 1,
            "model.scan_encoder.heads": 2, "model.embed_dim": 16, "model.text_encoder.max_tokens": 24,
            "model.text_encoder.finetune": "lora", "train.epochs": 2, "train.batch_size": 12,
            "train.micro_batch": 2, "train.prompt_batch": 3, "train.checkpoint_every": 100, "train.lr": 1e-3,
            "train.loader_workers": 0, "train.grad_clip": 1.0}
PROMPTS_TABLE = pd.DataFrame([
    {"label": label, "polarity": pol, "rank": r, "prompt": f"{'' if pol == 'positive' else 'No '}{label} {r}"}
    for label in ("Cardiomegaly", "Emphysema") for pol in ("positive", "negative") for r in range(2)])
PROMPTS = {"positive": [["Cardiomegaly."]] * 18, "negative": [["No cardiomegaly."]] * 18}


def config(**extra) -> dict:
    return apply_overrides(yaml.safe_load((REPO / "config/config.yaml").read_text()), {**SETTINGS, **extra})


def make_data(root: Path, write: bool = False) -> list[Sample]:
    rng = np.random.default_rng(3)
    samples = []
    for i in range(33):  # 25 hospital train, 4 CT-RATE train (2 reports x 2 reconstructions), 4 dev
        vid = f"V{i:04d}"
        nz = 1 + i % 3  # scans of different lengths: padded depth bins in a micro-batch
        feats = {"cls": rng.normal(size=(2, 2, nz, 12)), "mean": rng.normal(size=(2, 2, nz, 12)),
                 "depth": rng.normal(size=(2, 2, nz, 4, 12))}
        if write:
            save_file({k: torch.tensor(v, dtype=torch.float16) for k, v in feats.items()}, str(root / f"{vid}.safetensors"))
        ctrate = 25 <= i < 29
        scan = f"S{(i - 25) // 2}" if ctrate else f"C{i}"
        text = f"Findings: scan {scan} shows finding {i % 4} in the lower lobe of the lung.\n"
        split = "dev" if i >= 29 else "train"
        snippets = [(f"finding {i % 4} here", int(rng.integers(0, 4 * nz)))] * (i % 2 + 1)
        samples.append(Sample(vid, split, "ct_rate" if ctrate else "hospital", f"P{i}", text,
                              rng.integers(-1, 2, 18), snippets, scan))
    return samples


def no_dropout(trainer: Trainer) -> Trainer:
    """MiniLM's own dropout (0.1) draws different masks on different processes; the equality is of the
    batch arithmetic, so the draws are taken out (the RNG replay of gradient caching is tested apart)."""
    for m in trainer.model.modules():
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0
    return trainer


def train(root: Path, run: Path) -> Trainer:
    prompt_set = PromptSet.from_table(PROMPTS_TABLE, {"ct_rate": 5.0})
    trainer = no_dropout(Trainer(config(), run, make_data(root), FeatureSet(root), PROMPTS, prompt_set=prompt_set))
    trainer.fit(stop_after=STEPS)
    return trainer


def _worker(rank: int, world: int, root: str, out: str):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{out}.store", rank=rank, world_size=world)
    trainer = train(Path(root), Path(out).parent / "run")
    assert trainer.plan.micro_per_rank == 12 // (2 * world)
    if rank == 0:
        save_file(trainer.model.trainable_state(), out)
    dist.destroy_process_group()


@pytest.fixture(scope="module")
def one_process(tmp_path_factory):
    root = tmp_path_factory.mktemp("feats")
    make_data(root, write=True)
    torch.set_num_threads(1)
    trainer = train(root, tmp_path_factory.mktemp("single") / "run")
    return root, trainer


@pytest.mark.parametrize("world", [2, 3])
def test_processes_train_like_one_process_on_an_uneven_training_set(one_process, tmp_path, world):
    root, single = one_process
    assert len(single.entries) == 27 and single.steps_per_epoch == 2  # 3 entries left over each epoch
    out = tmp_path / "state.safetensors"
    mp.spawn(_worker, args=(world, str(root), str(out)), nprocs=world, join=True)
    got, want = load_file(str(out)), single.model.trainable_state()
    assert got.keys() == want.keys() and any(k.startswith("text.") for k in got)  # LoRA trained too
    start = Trainer(config(), tmp_path / "start", make_data(root), FeatureSet(root), PROMPTS,
                    prompt_set=PromptSet.from_table(PROMPTS_TABLE, {"ct_rate": 5.0})).model.trainable_state()
    assert sum(not torch.equal(start[k], want[k]) for k in want) > 10  # the steps moved the parameters
    for name in want:
        torch.testing.assert_close(got[name], want[name], rtol=1e-4, atol=2e-5, msg=name)
    # Adam hides a constant gradient scale; the logged losses and (pre-clipping) gradient norms do not
    log, want_log = pd.read_csv(tmp_path / "run" / "train_log.csv"), pd.read_csv(single.run_dir / "train_log.csv")
    assert list(log.step) == [1, 2, 3]
    for column in ("contrastive", "prompts", "localization", "grad_norm"):
        assert np.allclose(log[column], want_log[column], rtol=1e-5), column
    dev = pd.read_csv(tmp_path / "run" / "dev_metrics.csv")  # the dev pass shared over processes, scored once
    assert list(dev.step) == [2] and int(dev.n.iloc[0]) == 4
    want_dev = pd.read_csv(single.run_dir / "dev_metrics.csv")
    assert np.isclose(dev.mean_rank.iloc[0], want_dev.mean_rank.iloc[0])


def test_bad_batch_arithmetic_stops_before_training():
    cfg = config(**{"train.batch_size": 12, "train.micro_batch": 4})
    assert BatchPlan.check(cfg, 3).micro_per_rank == 1
    with pytest.raises(ConfigError, match=r"'train.batch_size': 12 is not a multiple of .* 4 x 2 = 8"):
        BatchPlan.check(cfg, 2)
    with pytest.raises(ConfigError, match=r"'compute.train_gpus': 3 processes but only 2 training entries"):
        BatchPlan.check(config(**{"train.batch_size": 3, "train.micro_batch": 1}), 3, entries=2)
    with pytest.raises(ConfigError, match=r"'train.batch_size': 12 exceeds the 10 training entries"):
        BatchPlan.check(cfg, 1, entries=10)
    paper = yaml.safe_load((REPO / "config/paper.yaml").read_text())["train"]
    for gpus in (1, 2, 4, 8):  # the paper's 4,096 pairs whatever the GPU count
        plan = BatchPlan.check({"train": paper}, gpus, entries=50_000)
        assert plan.batch == 4096 and plan.world * plan.micro_per_rank * plan.micro == 4096
        assert "4096 pairs per optimiser step" in plan.describe()


def test_prompt_groups_the_prompts_file_lacks_are_refused():
    with pytest.raises(ValueError, match=r"'train.prompt_groups.rate_chest': the prompts file p.parquet has no label"):
        PromptSet.from_table(PROMPTS_TABLE, {"ct_rate": 5.0, "rate_chest": 1.0}, source="p.parquet")
    table = pd.concat([PROMPTS_TABLE, pd.DataFrame([{"label": "Liver lesion", "polarity": "positive", "rank": 0,
                                                      "prompt": "A liver lesion.", "group": "rate_abdomen"}])])
    table["group"] = table["group"].fillna("ct_rate")
    with pytest.raises(ValueError, match="'Liver lesion' has 1 positive and 0 negative"):
        PromptSet.from_table(table, {"ct_rate": 5.0, "rate_abdomen": 1.0})
    only_ct = PromptSet.from_table(table, {"ct_rate": 5.0})  # a group left out of the config is not trained
    assert only_ct.names == ("Cardiomegaly", "Emphysema") and only_ct.weights.tolist() == [5.0, 5.0]


def test_gpus_requested_without_cuda_fail_unless_cpu_is_allowed():
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(DeviceError, match="2 GPU\\(s\\) requested .* CUDA is not available") as err:
        resolve_device(2, allow_cpu=False, rule="rule train")
    assert "allow_cpu" not in str(err.value)  # a job that asked for GPUs is never told to run on CPU
    assert resolve_device(2, allow_cpu=True) == torch.device("cpu")
    assert resolve_device(0, allow_cpu=False) == torch.device("cpu")
