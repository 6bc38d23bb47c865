"""Rule environment: the Python, packages, container or conda environment, torch, CUDA, cuDNN, NCCL, GPU and
driver of one kind of rule (data, gpu, report), recorded from inside that environment (ctvlp.core.provenance)."""
import json
from pathlib import Path

from ctvlp.core.logs import logged
from ctvlp.core.provenance import environment_record

with logged(snakemake.log[0]) as log:
    record = {"kind": snakemake.params.kind, **environment_record()}
    Path(snakemake.output[0]).write_text(json.dumps(record, indent=1) + "\n")
    log.info("environment %s: python %s, torch %s, gpu %s", record["kind"], record["python"], record["torch"],
             record["gpu"])
