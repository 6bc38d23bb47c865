"""Rule export_hf: a trained run in RadFinder's release layout (ctvlp export-hf)."""
from pathlib import Path

from ctvlp.convert.export import export_release
from ctvlp.core.logs import logged

with logged(snakemake.log[0]) as log:
    # No metrics in the card of the workflow's own export (a released row reads it): an evaluation setting must
    # not re-export, re-import and re-embed unchanged weights. `ctvlp export-hf` after evaluation adds them.
    out = export_release(Path(snakemake.params.run_dir), Path(snakemake.params.out_dir), metrics={})
    log.info("exported %s -> %s", snakemake.params.run_dir, out)
