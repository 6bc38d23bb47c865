# Window-encoder pretraining (optional), window features (frozen encoder, once per encoder) and one
# training run per row of the ablation table.
from ctvlp.train.ablations import load_ablations

FEATURES = f"{RESULTS}/features"
RUNS = load_ablations(Path(workflow.basedir) / config["train"]["ablations"]
                      if not Path(config["train"]["ablations"]).is_absolute() else config["train"]["ablations"])


rule pretrain_window_encoder:
    input:
        volumes=VOLUMES,
    output:
        weights=PRETRAINED,
    params:
        cache_dir=f"{RESULTS}/cache/volumes",
        run_dir=lambda wc, output: str(Path(output.weights).parent),  # checkpoints/, loss.tsv: a killed job resumes
    threads: 2
    resources:
        gpu=config["compute"]["features_gpus"],
    log:
        f"{LOGS}/pretrain_window_encoder.log",
    benchmark:
        f"{LOGS}/benchmarks/pretrain_window_encoder.tsv"
    conda:
        ENVS["gpu"]
    container:
        CONTAINER
    script:
        "../scripts/pretrain_window_encoder.py"


rule window_features:
    input:
        cache=f"{RESULTS}/cache/shard_{{shard}}.parquet",
        weights=lambda wc: [PRETRAINED] if uses_pretrained(wc.fset) else [],
    output:
        f"{RESULTS}/{{fset}}/shard_{{shard}}.parquet",
    params:
        cache_dir=f"{RESULTS}/cache/volumes",
        feature_dir=lambda wc: f"{RESULTS}/{wc.fset}/volumes",
        pretrained=lambda wc: PRETRAINED if uses_pretrained(wc.fset) else None,
    wildcard_constraints:
        fset=f"features|{OTHER_FEATURES}",
        shard=r"\d+",
    resources:
        gpu=config["compute"]["features_gpus"],
    log:
        f"{LOGS}/window_features/{{fset}}_{{shard}}.log",
    benchmark:
        f"{LOGS}/benchmarks/window_features_{{fset}}_{{shard}}.tsv"
    conda:
        ENVS["gpu"]
    container:
        CONTAINER
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
    output:
        f"{RESULTS}/runs/{{run}}/final.json",
    params:
        overrides=lambda wc: RUNS[wc.run],
        feature_dir=feature_dir,
        cache_dir=f"{RESULTS}/cache/volumes",  # read instead of the features when the window encoder trains
        run_dir=lambda wc: f"{RESULTS}/runs/{wc.run}",
    wildcard_constraints:
        run="|".join(RUNS) or "none",
    threads: 2
    resources:
        gpu=config["compute"]["train_gpus"],
    log:
        f"{LOGS}/train/{{run}}.log",
    benchmark:
        f"{LOGS}/benchmarks/train_{{run}}.tsv"
    conda:
        ENVS["gpu"]
    container:
        CONTAINER
    script:
        "../scripts/train.py"
