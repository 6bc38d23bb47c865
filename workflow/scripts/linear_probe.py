"""Rule linear_probe: per-finding linear-probe AUC of each feature set, cross-validated by patient (markdown)."""
from pathlib import Path

from threadpoolctl import threadpool_limits

from ctvlp.core.logs import logged
from ctvlp.evaluate.probe import probe_table

with logged(snakemake.log[0]) as log, threadpool_limits(snakemake.threads):
    results = Path(snakemake.input.volumes).parents[1]
    names = {"features": "self-supervised" if snakemake.params.pretrained else "random",
             "features_random": "random", "features_pretrained": "self-supervised"}
    sets = {f"{names[fset]} encoder ({fset})": fset for fset in snakemake.params.feature_sets}
    text = probe_table(results, sets, list(snakemake.params.datasets))
    Path(snakemake.output[0]).write_text(text)
    log.info("linear probe:\n%s", text)
