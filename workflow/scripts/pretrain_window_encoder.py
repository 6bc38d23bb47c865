"""Rule pretrain_window_encoder: masked-autoencoder pretraining on the training split's cached volumes."""
import json

import pandas as pd

from ctvlp.core.logs import logged
from ctvlp.train.pretrain import pretrain_from_cache, training_volumes

with logged(snakemake.log[0]) as log:
    config = snakemake.params.cfg  # seed, pretrain, the window encoder, train.datasets
    ids = training_volumes(pd.read_parquet(snakemake.input.volumes), config["train"]["datasets"])
    log.info("pretraining the window encoder on %d training volumes", len(ids))
    info = pretrain_from_cache(config, ids, snakemake.params.cache_dir, snakemake.params.run_dir,
                               snakemake.output.weights, log)
    log.info("pretraining done: %s", json.dumps(info))
