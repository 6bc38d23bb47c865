"""Rule dicom_index: header-only index of the hospital DICOM tree (pseudonymized)."""
from ctvlp.ids import resolve_salt
from ctvlp.io.dicom import index_dicom
from ctvlp.logs import logged

with logged(snakemake.log[0]) as log:
    index = index_dicom(snakemake.params.root, resolve_salt(snakemake.config["privacy"]),
                        workers=snakemake.threads)
    index.to_parquet(snakemake.output[0], index=False)
    log.info("indexed %d files (%d unreadable or non-image)", len(index), int((index.reason != "").sum()))
