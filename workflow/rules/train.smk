# Window features (frozen encoder, once) and one training run per row of the ablation table.
from ctvlp.config import ConfigError
from ctvlp.train.ablations import apply_overrides, load_ablations
from ctvlp.train.plan import BatchPlan

FEATURES = f"{RESULTS}/features"
RUNS = load_ablations(workflow_file(config["train"]["ablations"]))
# The imported pretrained weights (ctvlp import-weights): a re-import reruns features and training.
WEIGHTS = [f"{config['model']['weights_dir']}/manifest.json"] if config["model"].get("weights_dir") else []
try:  # each run's global batch must split over its processes: stop before any job, naming the key
    for _run, _overrides in RUNS.items():
        BatchPlan.check(apply_overrides(config, _overrides), max(int(config["compute"]["train_gpus"]), 1))
except (ConfigError, KeyError) as err:
    sys.exit(f"ctvlp: {err} (run {_run})")
print(f"ctvlp: train: {BatchPlan.check(config, max(int(config['compute']['train_gpus']), 1)).describe()}",
      file=sys.stderr)


# With keep_volumes: false the preprocess rule writes these feature shards itself (preprocess.smk).
if KEEP_VOLUMES:

    rule window_features:
        input:
            cache=f"{RESULTS}/cache/shard_{{shard}}.parquet",
            weights=WEIGHTS,
        output:
            f"{FEATURES}/shard_{{shard}}.parquet",
        params:
            cache_dir=f"{RESULTS}/cache/volumes",
            feature_dir=f"{FEATURES}/volumes",
        resources:
            gpu=config["compute"]["features_gpus"],
        log:
            f"{LOGS}/window_features/shard_{{shard}}.log",
        benchmark:
            f"{LOGS}/benchmarks/window_features_{{shard}}.tsv"
        conda:
            ENVS["gpu"]
        container:
            CONTAINERS["gpu"]
        script:
            "../scripts/window_features.py"


rule train:
    input:
        volumes=VOLUMES,
        feature_shards=expand(f"{FEATURES}/shard_{{shard}}.parquet", shard=SHARDS),
        reports=f"{RESULTS}/text/reports.parquet",
        labels=f"{RESULTS}/text/labels.parquet",
        snippets=f"{RESULTS}/text/snippets.parquet",
        prompts=f"{RESULTS}/text/prompts.parquet",
        weights=WEIGHTS,
    output:
        f"{RESULTS}/runs/{{run}}/final.json",
    params:
        overrides=lambda wc: RUNS[wc.run],
        feature_dir=f"{FEATURES}/volumes",
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
        CONTAINERS["gpu"]
    script:
        "../scripts/train.py"
