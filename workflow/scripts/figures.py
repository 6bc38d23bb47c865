"""Rule figures: every figure from results only (metrics, training logs, the reference run's embeddings)."""
import json
from pathlib import Path

import pandas as pd

from ctvlp.evaluate import figures
from ctvlp.evaluate.arrays import load_embeddings
from ctvlp.evaluate.qualitative import qualitative_examples
from ctvlp.core.logs import logged
from ctvlp.core.runs import load_run_config

with logged(snakemake.log[0]) as log:
    cfg = snakemake.params.cfg["evaluate"]
    runs, names = list(snakemake.params.runs), set(snakemake.params.names)
    out = Path(snakemake.output.png[0]).parent
    metrics = {run: json.loads(Path(p).read_text()) for run, p in zip(runs, snakemake.input.metrics)}
    for name in ("hospital", "ct_rate", "rad_chestct"):
        if f"per_label_auc_{name}" in names:
            figures.per_label_auc(metrics, name, cfg["prompt_set"], out)
        if f"recall_at_k_{name}_t2i_scans" in names:
            figures.recall_curves(metrics, name, "t2i_scans", out)
    # a released run (train.source: released) was not trained: no training log
    logs = {run: pd.read_csv(Path(p).parent / "train_log.csv") for run, p in zip(runs, snakemake.input.logs)
            if (Path(p).parent / "train_log.csv").is_file()}
    figures.training_curves(logs, out)
    if "qualitative" in names:
        figures.localization_errors(metrics, out)
        run_cfg = load_run_config(Path(snakemake.input.npz).parent)
        sets = load_embeddings(Path(snakemake.input.npz), Path(snakemake.input.meta))
        examples = qualitative_examples(sets.get("hospital"), pd.read_parquet(snakemake.input.snippets),
                                        Path(snakemake.params.cache_dir), cfg["qualitative_examples"])
        bin_voxels = run_cfg["model"]["window_encoder"]["patch_voxels"][2]
        figures.qualitative_panel(examples, bin_voxels, run_cfg["preprocess"]["spacing_mm"][2],
                                  f"Snippet localization, run {snakemake.params.reference}", out)
    log.info("wrote figures to %s", out)
