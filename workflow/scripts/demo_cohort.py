"""Rule demo_cohort: generate the synthetic cohort (thin adapter over ctvlp.demo)."""
from pathlib import Path

from ctvlp.demo import generate_demo
from ctvlp.core.logs import logged

with logged(snakemake.log[0]) as log:
    summary = generate_demo(Path(snakemake.params.root), dict(snakemake.params.settings),
                            workers=snakemake.threads)
    log.info("demo cohort: %s", summary)
