# Report text: sections, labels, prompts (rule report_text) and snippet mining (rule mine_snippets).
TEXT = f"{RESULTS}/text"


rule report_text:
    input:
        data_ready(),
        volumes=VOLUMES,
    output:
        reports=f"{TEXT}/reports.parquet",
        labels=f"{TEXT}/labels.parquet",
        prompts=f"{TEXT}/prompts.parquet",
        qc=f"{RESULTS}/qc/text_qc.parquet",
    params:
        sources=SOURCES,
    log:
        f"{LOGS}/report_text.log",
    conda:
        ENVS["data"]
    container:
        CONTAINERS["data"]
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
    params:
        bin_voxels=config["model"]["window_encoder"]["patch_voxels"][2],
        patterns=config["text"]["mining_patterns"],
    log:
        f"{LOGS}/mine_snippets.log",
    conda:
        ENVS["data"]
    container:
        CONTAINERS["data"]
    script:
        "../scripts/mine_snippets.py"
