# Provenance (ctvlp.core.provenance): the environment of each kind of rule, the data fingerprint, and one
# provenance.json per run (software, environments, data, weights), shown in the report.


# One job per kind of rule, in that kind's conda environment or image (the gpu kind on a GPU, as training).
for _kind in KINDS:

    rule:
        name:
            f"environment_{_kind}"
        output:
            f"{RESULTS}/provenance/environment_{_kind}.json",
        log:
            f"{LOGS}/provenance/environment_{_kind}.log",
        conda:
            ENVS[_kind]
        container:
            CONTAINERS[_kind]
        resources:
            gpu=config["compute"]["embed_gpus"] if _kind == "gpu" else 0,
            nodes=1,
        params:
            kind=_kind,
        script:
            "../scripts/environment.py"


rule data_provenance:
    input:
        data_ready(),
        volumes=VOLUMES,  # after ingest: new or changed data reruns it
    output:
        f"{RESULTS}/provenance/data.json",
    log:
        f"{LOGS}/provenance/data.log",
    conda:
        ENVS["data"]
    container:
        CONTAINERS["data"]
    params:
        sources=canonical(SOURCES),
        salt=SALT_ID,
    script:
        "../scripts/data_provenance.py"


rule provenance:
    input:
        final=f"{RESULTS}/runs/{{run}}/final.json",
        environments=expand(f"{RESULTS}/provenance/environment_{{kind}}.json", kind=KINDS),
        data=f"{RESULTS}/provenance/data.json",
        weights=WEIGHTS,
        release=released_weights,
        pretrained=lambda wc: [PRETRAINED] if uses_pretrained(feature_set(wc.run)) else [],
    output:
        report(f"{RESULTS}/runs/{{run}}/provenance.json", category="Provenance"),
    log:
        f"{LOGS}/provenance/{{run}}.log",
    wildcard_constraints:
        run="|".join(RUNS) or "none",
    conda:
        ENVS["report"]
    container:
        CONTAINERS["report"]
    params:
        software=SOFTWARE,  # commit and dirty flag at parse time: a new commit rewrites the records only
        kinds=list(KINDS),
        rules=lambda wc: rule_kinds(),
    script:
        "../scripts/provenance.py"
