# Preprocessing in shards: RAS, resample, clip/scale, crop/pad; cached float16 volumes.


# A GPU job then, so it has its own name (preprocess_features): the Slurm profile sends it to the GPU partition
# with --gpus/--cpus-per-gpu, while `preprocess` (keep_volumes: true) stays a CPU job.
rule preprocess:
    name:
        "preprocess" if KEEP_VOLUMES else "preprocess_features"
    input:
        manifest=MANIFEST,
        index=hospital_index(),
    output:
        **({} if KEEP_VOLUMES else {"features": f"{RESULTS}/features/shard_{{shard}}.parquet"}),
        shard=f"{RESULTS}/cache/shard_{{shard}}.parquet",
    log:
        f"{LOGS}/preprocess/shard_{{shard}}.log",
    benchmark:
        f"{LOGS}/benchmarks/preprocess_{{shard}}.tsv"
    conda:
        ENVS["data"] if KEEP_VOLUMES else ENVS["gpu"]
    container:
        CONTAINERS["data"] if KEEP_VOLUMES else CONTAINERS["gpu"]
    resources:
        # one volume at a time: the paper's 512 x 512 x ~600 slices in float32 and its resampled copy
        mem_mb=lambda wc, attempt: 8000 * attempt,
        runtime=lambda wc, attempt: (240 if KEEP_VOLUMES else 720) * attempt,
        gpu=0 if KEEP_VOLUMES else config["compute"]["features_gpus"],
        nodes=1,
    params:
        sources=canonical(SOURCES),
        # geometry rules, the index's buckets, the preprocessing; the window encoder when it extracts features
        cfg=config_params(
            *INGEST_KEYS,
            "ingest.index_buckets",
            "preprocess",
            "model.scan_encoder.max_depth_tokens",  # the depth-token cap (a QC reason) and the patch depth it counts
            "model.window_encoder.patch_voxels",
            *([] if KEEP_VOLUMES else ["seed", "model.window_encoder", "model.weights_dir"]),
        ),
        cache_dir=f"{RESULTS}/cache/volumes",
        feature_dir=f"{RESULTS}/features/volumes",
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
        summary=report(QC_SUMMARY, category="QC"),
    log:
        f"{LOGS}/qc_summary.log",
    conda:
        ENVS["data"]
    container:
        CONTAINERS["data"]
    resources:
        mem_mb=lambda wc, attempt: 2000 * attempt,
        runtime=lambda wc, attempt: 30 * attempt,
    script:
        "../scripts/qc_summary.py"
