"""Training over NCCL with the processes the machine has (one per GPU) equals one CUDA process that trains the
same global batches: the gloo test (tests/test_distributed.py) on the GPU backend. ``gpu``-marked: skipped
without CUDA; benchmarks/gpu_check.sh runs it. On a one-GPU machine the group has one process: NCCL's
set-up, the checkpoint's gather of RNG states and the shared dev pass still run through it."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from safetensors.torch import load_file, save_file

from ctvlp.train.data import FeatureSet
from ctvlp.train.prompt_set import PromptSet
from ctvlp.train.trainer import Trainer
from test_distributed import PROMPTS, PROMPTS_TABLE, STEPS, config, make_data, no_dropout


def train_on(device: torch.device, root: Path, run: Path) -> Trainer:
    prompt_set = PromptSet.from_table(PROMPTS_TABLE, {"ct_rate": 5.0})
    trainer = no_dropout(Trainer(config(**{"train.bf16": False}), run, make_data(root), FeatureSet(root), PROMPTS,
                                 device, prompt_set=prompt_set))
    trainer.fit(stop_after=STEPS)
    return trainer


def _worker(rank: int, world: int, root: str, out: str) -> None:
    torch.cuda.set_device(rank)
    dist.init_process_group("nccl", init_method=f"file://{out}.store", rank=rank, world_size=world)
    trainer = train_on(torch.device("cuda", rank), Path(root), Path(out).parent / "run")
    if rank == 0:
        save_file({k: v.cpu() for k, v in trainer.model.trainable_state().items()}, out)
    dist.destroy_process_group()


@pytest.mark.gpu
def test_nccl_processes_train_like_one_cuda_process(tmp_path):
    root = tmp_path / "feats"
    root.mkdir()
    make_data(root, write=True)
    single = train_on(torch.device("cuda", 0), root, tmp_path / "single")
    want = {k: v.cpu() for k, v in single.model.trainable_state().items()}
    world = torch.cuda.device_count()
    out = tmp_path / "nccl" / "state.safetensors"
    out.parent.mkdir()
    mp.spawn(_worker, args=(world, str(root), str(out)), nprocs=world, join=True)
    got = load_file(str(out))
    assert got.keys() == want.keys()
    for name in want:  # float32 on the GPU, another reduction order across processes
        torch.testing.assert_close(got[name], want[name], rtol=1e-3, atol=1e-4, msg=f"{name} ({world} process(es))")
