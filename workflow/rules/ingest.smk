# Ingestion: DICOM header index (in parts, in parallel), series selection, public adapters, manifest with
# patient-level splits. Memory and runtime grow with `attempt`, so a job killed for either is retried larger.
INDEX_PARTS = list(range(config["ingest"]["index_parts"]))


rule dicom_index_part:
    input:
        data_ready(),
    output:
        part=directory(f"{DICOM_INDEX_DIR}/part={{part}}"),
        counts=f"{RESULTS}/ingest/index_counts/part_{{part}}.json",
    log:
        f"{LOGS}/dicom_index/part_{{part}}.log",
    benchmark:
        f"{LOGS}/benchmarks/dicom_index_{{part}}.tsv"
    wildcard_constraints:
        part=r"\d+",
    conda:
        ENVS["data"]
    container:
        CONTAINERS["data"]
    threads: config["ingest"]["workers"]
    resources:
        mem_mb=lambda wc, attempt: 3000 * attempt,  # chunks of 20,000 files, whatever the export's size
        runtime=lambda wc, attempt: 240 * attempt,
    params:
        root=SOURCES.get("hospital", {}).get("dicom_root"),
        parts=len(INDEX_PARTS),
        buckets=config["ingest"]["index_buckets"],
        file_list=config["ingest"]["file_list"],
        state=f"{RESULTS}/ingest/index_state" if config["ingest"]["incremental"] else None,
        salt=SALT_ID,
    script:
        "../scripts/dicom_index.py"


rule dicom_index:
    input:
        parts=expand(f"{DICOM_INDEX_DIR}/part={{part}}", part=INDEX_PARTS),
        counts=expand(f"{RESULTS}/ingest/index_counts/part_{{part}}.json", part=INDEX_PARTS),
    output:
        DICOM_INDEX,
    log:
        f"{LOGS}/dicom_index.log",
    conda:
        ENVS["data"]
    container:
        CONTAINERS["data"]
    resources:
        mem_mb=lambda wc, attempt: 1000 * attempt,  # parquet metadata only
        runtime=lambda wc, attempt: 15 * attempt,
    script:
        "../scripts/dicom_index_merge.py"


rule manifest:
    input:
        data_ready(),
        index=hospital_index(),
    output:
        manifest=MANIFEST,
        series=f"{RESULTS}/ingest/hospital_series.parquet",
        qc=f"{RESULTS}/qc/ingest_qc.parquet",
        inputs=f"{RESULTS}/qc/inputs.json",
    log:
        f"{LOGS}/manifest.log",
    conda:
        ENVS["data"]
    container:
        CONTAINERS["data"]
    resources:
        mem_mb=lambda wc, attempt: 6000 * attempt,  # one index bucket at a time, plus the series table
        runtime=lambda wc, attempt: 120 * attempt,
    params:
        sources=canonical(SOURCES),
        cfg=config_params(*INGEST_KEYS),
        salt=SALT_ID,
    script:
        "../scripts/manifest.py"
