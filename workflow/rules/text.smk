# Report text: sections, labels, prompts (rule report_text), snippet mining (rule mine_snippets) and RATE labels.
from ctvlp.text.mining import min_confidence_of


rule report_text:
    input:
        data_ready(),
        **text_input_files(SOURCES, config["text"]),  # reports export, label set...: edited, the stage reruns
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
        sources=canonical(SOURCES),
        # text.llm only when the labeler or the translation asks the LLM (ctvlp.text.stage.needs_llm)
        cfg=config_params(*(f"text.{key}" for key in TEXT_KEYS if key != "llm" or needs_llm(config["text"]))),
        llm_cache=f"{TEXT}/llm_cache",  # unless text.llm.cache_dir says otherwise
        salt=SALT_ID,
    script:
        "../scripts/report_text.py"


rule mine_snippets:
    input:
        reports=f"{TEXT}/reports.parquet",
        volumes=VOLUMES,
        index=hospital_index(),
        series=f"{RESULTS}/ingest/hospital_series.parquet",
        patterns=config["text"]["mining_patterns"],  # a site's vocabulary files: an edit reruns the mining
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
        min_confidence=min_confidence_of(config["text"]),  # text.mining.min_confidence or the schema's default
    script:
        "../scripts/mine_snippets.py"


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
        folders=canonical(RATE_SOURCES),
        config_dir=RATE_DIR,
        weights=canonical(RATE.get("group_weights") or {}),
        salt=SALT_ID,
    script:
        "../scripts/rate_labels.py"
