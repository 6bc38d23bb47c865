"""Dev-split selection after each epoch: every process embeds its share of the dev volumes, rank 0 scores
retrieval on all of them and keeps the best state (lowest mean rank) as ``best.safetensors``."""

from __future__ import annotations

import json
from pathlib import Path

from safetensors.torch import load_file

from ctvlp.core.state_dict import save_tensors
from ctvlp.inference.embedding import embed_samples, evaluate_samples, merge_embeddings
from ctvlp.train.csv_log import append_csv
from ctvlp.train.distributed import gather_objects
from ctvlp.train.step import share

BEST = "best.safetensors"


def select(t, step: int, best: dict) -> dict:
    """The best so far after ``step`` ({"mean_rank", "step"}); ``t``: the trainer (model, dev samples,
    features, prompts, run directory, process rank)."""
    mine, _ = share(len(t.dev), t.rank, t.world)
    with t.autocast():
        part = embed_samples(t.model, [t.dev[i] for i in mine], t.features, t.prompts)
    parts = gather_objects(part)
    if t.rank != 0:
        return best
    metrics = evaluate_samples(t.model, t.dev, t.features, t.prompts, t.bin_mm, emb=merge_embeddings(parts))
    scores = {k: v for k, v in metrics.items() if isinstance(v, (int, float))}
    append_csv(t.run_dir / "dev_metrics.csv", {"step": step, **scores})
    if metrics["retrieval"]["mean_rank"] < best["mean_rank"]:
        best = {"mean_rank": metrics["retrieval"]["mean_rank"], "step": step}
        save_tensors(t.model.trainable_state(), t.run_dir / BEST)
        (t.run_dir / "best.json").write_text(json.dumps(best))
    return best


def load_best(model, run_dir: Path) -> None:
    """The selected state into ``model`` (kept as it is when no epoch ended yet)."""
    path = Path(run_dir) / BEST
    if path.exists():
        model.load_state_dict(load_file(str(path)), strict=False)
