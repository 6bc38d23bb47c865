# Ingestion: DICOM header index, series selection, public adapters, manifest with patient-level splits.


rule dicom_index:
    input:
        data_ready(),
    output:
        DICOM_INDEX,
    params:
        root=SOURCES.get("hospital", {}).get("dicom_root"),
    threads: config["ingest"]["workers"]
    log:
        f"{LOGS}/dicom_index.log",
    benchmark:
        f"{LOGS}/benchmarks/dicom_index.tsv"
    conda:
        ENVS["data"]
    container:
        CONTAINERS["data"]
    script:
        "../scripts/dicom_index.py"


rule manifest:
    input:
        data_ready(),
        index=hospital_index(),
    output:
        manifest=MANIFEST,
        series=f"{RESULTS}/ingest/hospital_series.parquet",
        qc=f"{RESULTS}/qc/ingest_qc.parquet",
    params:
        sources=SOURCES,
    log:
        f"{LOGS}/manifest.log",
    conda:
        ENVS["data"]
    container:
        CONTAINERS["data"]
    script:
        "../scripts/manifest.py"
