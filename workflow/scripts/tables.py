"""Rule tables: Markdown and LaTeX tables from the metric files only."""
import json
from pathlib import Path

from ctvlp.evaluate.tables import write_all_tables
from ctvlp.core.logs import logged

with logged(snakemake.log[0]) as log:
    cfg = snakemake.params.cfg["evaluate"]
    metrics = {run: json.loads(Path(p).read_text()) for run, p in zip(snakemake.params.runs, snakemake.input.metrics)}
    comparisons = json.loads(Path(snakemake.input.comparisons).read_text())["runs"]
    written = write_all_tables(metrics, comparisons, snakemake.params.reference, Path(snakemake.output.md[0]).parent,
                               cfg["prompt_set"], cfg["ci"], cfg["bootstrap_resamples"], cfg["protocol"],
                               list(snakemake.params.comparison_runs))
    log.info("wrote %d table files", len(written))
