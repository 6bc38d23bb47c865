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
