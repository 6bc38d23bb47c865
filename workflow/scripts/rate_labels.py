"""Rule rate_labels: RATE question label files -> label table, prompt table and label groups for the prompt loss."""
import json

import pandas as pd

from ctvlp.core.ids import resolve_salt
from ctvlp.core.label_set import CTRATE_LABELS
from ctvlp.core.logs import logged
from ctvlp.text.rate_labels import label_groups, rate_labels

with logged(snakemake.log[0]) as log:
    volumes = pd.read_parquet(snakemake.input.volumes)
    salt = resolve_salt(snakemake.config["privacy"])
    labels, prompts, qc = rate_labels(dict(snakemake.params.folders), volumes, salt, snakemake.params.config_dir)
    labels.to_parquet(snakemake.output.labels, index=False)
    prompts.to_parquet(snakemake.output.prompts, index=False)
    groups = label_groups(prompts, CTRATE_LABELS, dict(snakemake.params.weights))
    with open(snakemake.output.groups, "w") as f:
        json.dump(groups, f, indent=1)
    pd.DataFrame(qc, columns=["dataset", "kind", "item", "status", "reason", "flags"]).to_parquet(snakemake.output.qc,
                                                                                               index=False)
    log.info("RATE labels: %d volumes from %s; %d questions", len(labels), sorted(snakemake.params.folders),
             prompts.label.nunique())
