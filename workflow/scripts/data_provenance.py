"""Rule data_provenance: per data source a fingerprint (salted path keys and sizes) and the SHA-256 of its label
and metadata files (ctvlp.core.provenance.data_record)."""
import json
from pathlib import Path

from ctvlp.core.ids import resolve_salt
from ctvlp.core.logs import logged
from ctvlp.core.provenance import data_record

with logged(snakemake.log[0]) as log:
    salt = resolve_salt(snakemake.config["privacy"])  # never a param: params are written to .snakemake/metadata
    record = data_record(dict(snakemake.params.sources), salt)
    Path(snakemake.output[0]).write_text(json.dumps(record, indent=1) + "\n")
    log.info("data: %s", {name: {k: v["files"] for k, v in s["fingerprint"].items()}
                          for name, s in record["sources"].items()})
