"""Rule provenance: one run's provenance.json from the environment and data records (ctvlp.core.provenance)."""
import json
from pathlib import Path

from ctvlp.core.logs import logged
from ctvlp.core.provenance import run_provenance, weights_record

with logged(snakemake.log[0]) as log:
    environments = {}
    for path in snakemake.input.environments:
        record = json.loads(Path(path).read_text())
        environments[record.pop("kind")] = record
    files = {"final.json": snakemake.input.final, **{Path(p).name: p for p in snakemake.input.pretrained}}
    record = run_provenance(snakemake.wildcards.run, dict(snakemake.params.software), environments,
                            dict(snakemake.params.rules), json.loads(Path(snakemake.input.data).read_text()),
                            weights_record([Path(p).parent for p in [*snakemake.input.weights, *snakemake.input.release[:1]]]), files)
    Path(snakemake.output[0]).write_text(json.dumps(record, indent=1) + "\n")
    log.info("provenance of %s: commit %s (dirty: %s)", record["run"], record["software"]["commit"],
             record["software"]["dirty"])
