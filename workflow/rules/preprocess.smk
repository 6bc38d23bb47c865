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
    resources:
        # one volume at a time: the paper's 512 x 512 x ~600 slices in float32 and its resampled copy
        mem_mb=lambda wc, attempt: 8000 * attempt,
        runtime=lambda wc, attempt: 240 * attempt,
    log:
        f"{LOGS}/preprocess/shard_{{shard}}.log",
    benchmark:
        f"{LOGS}/benchmarks/preprocess_{{shard}}.tsv"
    conda:
        ENVS["data"]
    container:
        CONTAINERS["data"]
    script:
        "../scripts/preprocess_shard.py"


rule qc_summary:
    input:
        manifest=MANIFEST,
        qc=f"{RESULTS}/qc/ingest_qc.parquet",
        inputs=f"{RESULTS}/qc/inputs.json",
        shards=expand(f"{RESULTS}/cache/shard_{{shard}}.parquet", shard=SHARDS),
    output:
        volumes=VOLUMES,
        qc=QC,
        summary=QC_SUMMARY,
    resources:
        mem_mb=lambda wc, attempt: 2000 * attempt,
        runtime=lambda wc, attempt: 30 * attempt,
    log:
        f"{LOGS}/qc_summary.log",
    conda:
        ENVS["data"]
    container:
        CONTAINERS["data"]
    script:
        "../scripts/qc_summary.py"
