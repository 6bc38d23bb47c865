"""Rule dicom_index: the index parts as one dataset; writes its summary (file and row counts)."""
import json
from pathlib import Path

from ctvlp.io.index_store import summarize, write_counts
from ctvlp.core.logs import logged

with logged(snakemake.log[0]) as log:
    counts = [json.loads(Path(p).read_text()) for p in snakemake.input.counts]
    summary = summarize(Path(snakemake.input.parts[0]).parent, counts)
    write_counts(snakemake.output[0], summary)
    log.info("index: %s", summary)
