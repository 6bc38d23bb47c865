"""Rule compare: paired bootstrap differences of every run against the reference run."""
import json
from pathlib import Path

from ctvlp.evaluate.arrays import load_embeddings
from ctvlp.evaluate.protocol import bin_mm_of, compare, item_table
from ctvlp.core.logs import logged
from ctvlp.core.runs import load_run_config

with logged(snakemake.log[0]) as log:
    cfg = snakemake.params.cfg["evaluate"]
    runs, ref = list(snakemake.params.runs), snakemake.params.reference
    tables = {}
    for run, npz, meta in zip(runs, snakemake.input.npz, snakemake.input.meta):
        tables[run] = {name: item_table(name, *sets) for name, sets in load_embeddings(Path(npz), Path(meta)).items()}
    bin_mm = bin_mm_of(load_run_config(snakemake.params.run_dirs[runs.index(ref)]))
    out = {}
    for run in runs:
        if run != ref and "hospital" in tables[run] and "hospital" in tables[ref]:
            out[run] = compare(tables[run]["hospital"], tables[ref]["hospital"], bin_mm, cfg["bootstrap_resamples"],
                               snakemake.params.cfg["seed"], cfg["ci"])
    Path(snakemake.output[0]).write_text(json.dumps({"reference": ref, "set": "hospital", "runs": out}, indent=1,
                                                    default=float))
    log.info("compared %s against %s", [r for r in runs if r != ref], ref)
