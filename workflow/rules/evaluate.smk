# Evaluation of every run, the ablation comparison, tables, figures (results only) and the HTML report
# (REFERENCE, TABLE_NAMES, FIGURE_NAMES in common.smk).


rule embed:
    input:
        done=f"{RESULTS}/runs/{{run}}/final.json",
        volumes=VOLUMES,
        feature_shards=feature_shards,
        reports=f"{RESULTS}/text/reports.parquet",
        labels=f"{RESULTS}/text/labels.parquet",
        snippets=f"{RESULTS}/text/snippets.parquet",
        prompts=f"{RESULTS}/text/prompts.parquet",
    output:
        npz=f"{RESULTS}/runs/{{run}}/embeddings.npz",
        meta=f"{RESULTS}/runs/{{run}}/embeddings.parquet",
    log:
        f"{LOGS}/embed/{{run}}.log",
    wildcard_constraints:
        run="|".join(RUNS) or "none",
    conda:
        ENVS["gpu"]
    container:
        CONTAINERS["gpu"]
    resources:
        gpu=config["compute"]["embed_gpus"],
        nodes=1,
    params:
        feature_dir=feature_dir,
        cache_dir=f"{RESULTS}/cache/volumes",  # end-to-end runs re-encode the cache with their own encoder
        run_dir=lambda wc: f"{RESULTS}/runs/{wc.run}",
    script:
        "../scripts/embed.py"


rule evaluate:
    input:
        npz=f"{RESULTS}/runs/{{run}}/embeddings.npz",
        meta=f"{RESULTS}/runs/{{run}}/embeddings.parquet",
        volumes=VOLUMES,  # CT-RATE's sorted-path order (first_all) needs the public file names
    output:
        f"{RESULTS}/runs/{{run}}/metrics.json",
    log:
        f"{LOGS}/evaluate/{{run}}.log",
    wildcard_constraints:
        run="|".join(RUNS) or "none",
    conda:
        ENVS["report"]
    container:
        CONTAINERS["report"]
    params:
        cfg=config_params("seed", "evaluate.bootstrap_resamples", "evaluate.ci", "evaluate.paper"),
        run_dir=lambda wc: f"{RESULTS}/runs/{wc.run}",
    script:
        "../scripts/evaluate.py"


rule compare:
    input:
        npz=run_files(f"{RESULTS}/runs/{{run}}/embeddings.npz"),
        meta=run_files(f"{RESULTS}/runs/{{run}}/embeddings.parquet"),
    output:
        f"{RESULTS}/eval/comparisons.json",
    log:
        f"{LOGS}/evaluate/compare.log",
    conda:
        ENVS["report"]
    container:
        CONTAINERS["report"]
    params:
        cfg=config_params("seed", "evaluate.bootstrap_resamples", "evaluate.ci"),
        runs=list(RUNS),
        reference=REFERENCE,
        run_dirs=run_files(f"{RESULTS}/runs/{{run}}"),
    script:
        "../scripts/compare.py"


rule tables:
    input:
        metrics=run_files(f"{RESULTS}/runs/{{run}}/metrics.json"),
        comparisons=f"{RESULTS}/eval/comparisons.json",
    output:
        md=[report(f"{RESULTS}/tables/{name}.md", category="Tables") for name in TABLE_NAMES],
        tex=[f"{RESULTS}/tables/{name}.tex" for name in TABLE_NAMES],
    log:
        f"{LOGS}/tables.log",
    conda:
        ENVS["report"]
    container:
        CONTAINERS["report"]
    params:
        cfg=config_params("evaluate.prompt_set", "evaluate.ci", "evaluate.bootstrap_resamples", "evaluate.protocol"),
        runs=list(RUNS),
        reference=REFERENCE,
        comparison_runs=COMPARISON_RUNS,
        names=TABLE_NAMES,
    script:
        "../scripts/tables.py"


rule claims:
    input:
        metrics=run_files(f"{RESULTS}/runs/{{run}}/metrics.json"),
        comparisons=f"{RESULTS}/eval/comparisons.json",
    output:
        report(CLAIMS, category="Tables"),
    log:
        f"{LOGS}/claims.log",
    conda:
        ENVS["report"]
    container:
        CONTAINERS["report"]
    params:
        cfg=config_params("evaluate.prompt_set"),
        runs=list(RUNS),
        reference=REFERENCE,
    script:
        "../scripts/claims.py"


rule figures:
    input:
        metrics=run_files(f"{RESULTS}/runs/{{run}}/metrics.json"),
        logs=run_files(f"{RESULTS}/runs/{{run}}/final.json"),
        npz=f"{RESULTS}/runs/{REFERENCE}/embeddings.npz",
        meta=f"{RESULTS}/runs/{REFERENCE}/embeddings.parquet",
        snippets=f"{RESULTS}/text/snippets.parquet",
    output:
        png=[
            report(f"{RESULTS}/figures/{name}.png", category="Figures", caption=figure_caption(name))
            for name in FIGURE_NAMES
        ],
        pdf=[f"{RESULTS}/figures/{name}.pdf" for name in FIGURE_NAMES],
    log:
        f"{LOGS}/figures.log",
    conda:
        ENVS["report"]
    container:
        CONTAINERS["report"]
    params:
        cfg=config_params("evaluate.prompt_set", "evaluate.qualitative_examples"),
        runs=list(RUNS),
        reference=REFERENCE,
        names=FIGURE_NAMES,
        cache_dir=f"{RESULTS}/cache/volumes",
    script:
        "../scripts/figures.py"
