# Report text: sections, labels, prompts (rule report_text) and snippet mining (rule mine_snippets).
TEXT = f"{RESULTS}/text"


rule report_text:
    input:
        data_ready(),
        volumes=VOLUMES,
        index=hospital_index(),
    output:
        reports=f"{TEXT}/reports.parquet",
        labels=f"{TEXT}/labels.parquet",
        prompts=f"{TEXT}/prompts.parquet",
        qc=f"{RESULTS}/qc/text_qc.parquet",
    log:
        f"{LOGS}/report_text.log",
    conda:
        ENVS["data"]
    container:
        CONTAINERS["data"]
    params:
        sources=SOURCES,
    script:
        "../scripts/report_text.py"


rule mine_snippets:
    input:
        reports=f"{TEXT}/reports.parquet",
        volumes=VOLUMES,
        index=hospital_index(),
        series=f"{RESULTS}/ingest/hospital_series.parquet",
    output:
        snippets=f"{TEXT}/snippets.parquet",
        qc=f"{RESULTS}/qc/mining_qc.parquet",
        stats=f"{TEXT}/mining_stats.md",
    log:
        f"{LOGS}/mine_snippets.log",
    conda:
        ENVS["data"]
    container:
        CONTAINERS["data"]
    params:
        bin_voxels=config["model"]["window_encoder"]["patch_voxels"][2],
        patterns=config["text"]["mining_patterns"],
    script:
        "../scripts/mine_snippets.py"


# RATE question labels (the paper's disease labels) for the prompt loss: only when text.rate.config_dir is set.
RATE = config["text"].get("rate") or {}
RATE_DIR = rate_config_dir(config)
RATE_SOURCES = {name: entry["rate_labels"] for name, entry in SOURCES.items() if (entry or {}).get("rate_labels")}
RATE_OUTPUTS = (
    [f"{TEXT}/rate_labels.parquet", f"{TEXT}/rate_prompts.parquet", f"{TEXT}/label_groups.json"] if RATE_DIR else []
)


rule rate_labels:
    input:
        data_ready(),
        volumes=VOLUMES,
    output:
        labels=f"{TEXT}/rate_labels.parquet",
        prompts=f"{TEXT}/rate_prompts.parquet",
        groups=f"{TEXT}/label_groups.json",
        qc=f"{RESULTS}/qc/rate_qc.parquet",
    log:
        f"{LOGS}/rate_labels.log",
    conda:
        ENVS["data"]
    container:
        CONTAINERS["data"]
    params:
        folders=RATE_SOURCES,
        config_dir=RATE_DIR,
        weights=RATE.get("group_weights") or {},
    script:
        "../scripts/rate_labels.py"
