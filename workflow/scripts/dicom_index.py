"""Rule dicom_index_part: header-only index of one part of the hospital DICOM tree (pseudonymized),
written in chunks into the partitioned dataset (one parquet file per bucket)."""
from ctvlp.core.ids import resolve_salt
from ctvlp.io.index_store import write_counts, write_part
from ctvlp.core.logs import logged
from ctvlp.core.salt import CHECK_KEY, fingerprint

with logged(snakemake.log[0]) as log:
    p = snakemake.params
    salt = resolve_salt(snakemake.config["privacy"])
    counts = write_part(p.root, salt, int(snakemake.wildcards.part), p.parts, snakemake.output.part, p.buckets,
                        workers=snakemake.threads, file_list=p.file_list, state=p.state)
    counts[CHECK_KEY] = fingerprint(salt)  # the salt's check value, stored with the index (never the salt)
    write_counts(snakemake.output.counts, counts)
    log.info("part %s: %d files (%d read, %d unchanged from the last run), %d index rows", counts["part"],
             counts["files"], counts["read"], counts["reused"], counts["rows"])
