"""Rule import_release: a released row's run folder from a model in RadFinder's release layout (no training)."""
from pathlib import Path

from ctvlp.convert.released_run import import_release_run
from ctvlp.core.logs import logged

with logged(snakemake.log[0]) as log:
    # params.cfg: the row's effective config (ctvlp.train.launch.run_config), never the privacy section
    import_release_run(dict(snakemake.params.cfg), Path(snakemake.params.run_dir), log)
