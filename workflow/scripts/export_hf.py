"""Rule export_hf: a trained run in RadFinder's release layout (ctvlp export-hf)."""
from pathlib import Path

from ctvlp.convert.export import export_release
from ctvlp.core.logs import logged

with logged(snakemake.log[0]) as log:
    out = export_release(Path(snakemake.params.run_dir), Path(snakemake.params.out_dir))
    log.info("exported %s -> %s", snakemake.params.run_dir, out)
