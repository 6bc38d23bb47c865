# The synthetic demo cohort (hospital DICOM export + reports, CT-RATE and Rad-ChestCT minis).
if DEMO["enabled"]:

    rule demo_cohort:
        output:
            DEMO_DONE,
            SOURCES["hospital"]["reports_csv"],  # an input of report_text (edited in place: the text stage reruns)
        log:
            f"{LOGS}/demo_cohort.log",
        benchmark:
            f"{LOGS}/benchmarks/demo_cohort.tsv"
        conda:
            ENVS["data"]
        container:
            CONTAINERS["data"]
        threads: 2
        params:
            root=lambda wildcards, output: str(Path(output[0]).parents[1]),  # <root>/ground_truth/cohort.json
            settings=canonical(DEMO),
        script:
            "../scripts/demo_cohort.py"

    # every feature set an ablation run reads (the configured encoder's first)
    PROBE_SETS = sorted({feature_set(run) for run in RUNS}, key=lambda fset: fset != "features")

    rule linear_probe:
        # The linear-probe ceiling of the window features per finding (ctvlp.evaluate.probe), for every feature set
        # an ablation run reads (the self-supervised encoder's and the random one's): which findings the features
        # resolve at all, beside the zero-shot tables.
        input:
            volumes=VOLUMES,
            labels=f"{RESULTS}/text/labels.parquet",
            shards=expand(f"{RESULTS}/{{fset}}/shard_{{shard}}.parquet", fset=PROBE_SETS, shard=SHARDS),
        output:
            report(PROBE, category="Tables"),
        log:
            f"{LOGS}/linear_probe.log",
        conda:
            ENVS["gpu"]
        container:
            CONTAINERS["gpu"]
        params:
            feature_sets=PROBE_SETS,
            datasets=EVAL_SETS,
            pretrained=PRETRAIN,
        script:
            "../scripts/linear_probe.py"
