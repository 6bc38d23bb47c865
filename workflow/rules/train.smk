# Window-encoder pretraining (optional), window features (frozen encoder, once per encoder) and one
# training run per row of the ablation table (RUNS, checked in common.smk).


rule pretrain_window_encoder:
    input:
        volumes=VOLUMES,
    output:
        weights=PRETRAINED,
    log:
        f"{LOGS}/pretrain_window_encoder.log",
    benchmark:
        f"{LOGS}/benchmarks/pretrain_window_encoder.tsv"
    conda:
        ENVS["gpu"]
    container:
        CONTAINERS["gpu"]
    threads: 2
    resources:
        gpu=config["compute"]["features_gpus"],
        nodes=1,
    params:
        cfg=config_params(
            "seed",
            "pretrain",
            "model.window_encoder",
            "model.weights_dir",
            "preprocess.window_voxels",
            "train.datasets",
        ),
        cache_dir=f"{RESULTS}/cache/volumes",
        run_dir=lambda wc, output: str(Path(output.weights).parent),  # checkpoints/, loss.tsv: a killed job resumes
    script:
        "../scripts/pretrain_window_encoder.py"


# With keep_volumes: false the preprocess_features rule writes the feature shards itself (preprocess.smk).
if KEEP_VOLUMES:

    rule window_features:
        input:
            cache=f"{RESULTS}/cache/shard_{{shard}}.parquet",
            pretrained=lambda wc: [PRETRAINED] if uses_pretrained(wc.fset) else [],
            weights=WEIGHTS,
        output:
            f"{RESULTS}/{{fset}}/shard_{{shard}}.parquet",
        log:
            f"{LOGS}/window_features/{{fset}}_{{shard}}.log",
        benchmark:
            f"{LOGS}/benchmarks/window_features_{{fset}}_{{shard}}.tsv"
        wildcard_constraints:
            fset=f"features|{OTHER_FEATURES}",
            shard=r"\d+",
        conda:
            ENVS["gpu"]
        container:
            CONTAINERS["gpu"]
        resources:
            gpu=config["compute"]["features_gpus"],
            nodes=1,
        params:
            cfg=config_params("seed", "model.window_encoder", "model.weights_dir", "preprocess.window_voxels"),
            cache_dir=f"{RESULTS}/cache/volumes",
            feature_dir=lambda wc: f"{RESULTS}/{wc.fset}/volumes",
            pretrained=lambda wc: PRETRAINED if uses_pretrained(wc.fset) else None,
        script:
            "../scripts/window_features.py"


rule train:
    input:
        volumes=VOLUMES,
        feature_shards=feature_shards,
        reports=f"{RESULTS}/text/reports.parquet",
        labels=f"{RESULTS}/text/labels.parquet",
        snippets=f"{RESULTS}/text/snippets.parquet",
        prompts=f"{RESULTS}/text/prompts.parquet",
        weights=WEIGHTS,
        rate=RATE_TRAIN_INPUTS,  # RATE's labels and question prompts (rate_labels, rate_prompts) when configured
    output:
        f"{RESULTS}/runs/{{run}}/final.json",
    log:
        f"{LOGS}/train/{{run}}.log",
    benchmark:
        f"{LOGS}/benchmarks/train_{{run}}.tsv"
    wildcard_constraints:
        run="|".join(TRAINED_RUNS) or "none",
    priority: lambda wc: schedule_priority(config, RUNS[wc.run])
    conda:
        ENVS["gpu"]
    container:
        CONTAINERS["gpu"]
    threads: config["compute"].get("train_threads", 2)
    resources:
        gpu=config["compute"]["train_gpus"],
        nodes=1,  # torchrun --standalone: the GPUs of one node (Slurm's --gpus is per job)
    params:
        cfg=train_config,
        feature_dir=feature_dir,
        cache_dir=f"{RESULTS}/cache/volumes",  # read instead of the features when the window encoder trains
        run_dir=lambda wc: f"{RESULTS}/runs/{wc.run}",
    script:
        "../scripts/train.py"


# A released row (train.source: released): its run folder from a published model, no training job.
rule import_release:
    input:
        release=release_files,
    output:
        f"{RESULTS}/runs/{{run}}/final.json",
    log:
        f"{LOGS}/import_release/{{run}}.log",
    wildcard_constraints:
        run="|".join(RELEASED_RUNS) or "none",
    conda:
        ENVS["gpu"]
    container:
        CONTAINERS["gpu"]
    params:
        cfg=train_config,
        run_dir=lambda wc: f"{RESULTS}/runs/{wc.run}",
    script:
        "../scripts/import_release.py"


# A trained run in RadFinder's release layout (ctvlp export-hf): a released row can evaluate it (the demo's does).
rule export_hf:
    input:
        final=f"{RESULTS}/runs/{{run}}/final.json",
        pretrained=lambda wc: [PRETRAINED] if PRETRAIN else [],
    output:
        config=f"{RESULTS}/export/{{run}}/config.json",
        weights=f"{RESULTS}/export/{{run}}/model.safetensors",
        card=f"{RESULTS}/export/{{run}}/README.md",
    log:
        f"{LOGS}/export_hf/{{run}}.log",
    wildcard_constraints:
        run="|".join(TRAINED_RUNS) or "none",
    conda:
        ENVS["gpu"]
    container:
        CONTAINERS["gpu"]
    params:
        run_dir=lambda wc: f"{RESULTS}/runs/{wc.run}",
        out_dir=lambda wc: f"{RESULTS}/export/{wc.run}",
    script:
        "../scripts/export_hf.py"
