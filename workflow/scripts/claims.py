"""Rule claims: the paper's claims checked against this run's paired comparisons (printed and written)."""
from pathlib import Path

from ctvlp.evaluate.claims import claims_markdown
from ctvlp.core.logs import logged

with logged(snakemake.log[0]) as log:
    ref = snakemake.params.reference
    metrics = snakemake.input.metrics[list(snakemake.params.runs).index(ref)]
    text = claims_markdown(Path(snakemake.input.comparisons), Path(metrics), ref,
                           snakemake.params.cfg["evaluate"]["prompt_set"])
    Path(snakemake.output[0]).write_text(text)
    log.info("claims:\n%s", text)
