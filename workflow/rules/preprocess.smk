# Preprocessing in shards: RAS, resample, clip/scale, crop/pad; cached float16 volumes.


rule preprocess:
    input:
        manifest=MANIFEST,
        index=hospital_index(),
    output:
        f"{RESULTS}/cache/shard_{{shard}}.parquet",
    params:
        sources=SOURCES,
        cache_dir=f"{RESULTS}/cache/volumes",
    log:
        f"{LOGS}/preprocess/shard_{{shard}}.log",
    benchmark:
        f"{LOGS}/benchmarks/preprocess_{{shard}}.tsv"
    conda:
        ENVS["data"]
    container:
        CONTAINER
    script:
        "../scripts/preprocess_shard.py"


rule qc_summary:
    input:
        manifest=MANIFEST,
        qc=f"{RESULTS}/qc/ingest_qc.parquet",
        shards=expand(f"{RESULTS}/cache/shard_{{shard}}.parquet", shard=SHARDS),
    output:
        volumes=VOLUMES,
        qc=QC,
        summary=report(QC_SUMMARY, category="QC"),
    log:
        f"{LOGS}/qc_summary.log",
    conda:
        ENVS["data"]
    container:
        CONTAINER
    script:
        "../scripts/qc_summary.py"
