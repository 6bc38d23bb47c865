"""Rule window_features: the frozen window encoder over one shard of the cache, once per encoder
(the pretrained one when params.pretrained names its weights, else random init or model.weights_dir)."""
from dataclasses import replace

import pandas as pd
import torch

from ctvlp.core.logs import logged
from ctvlp.features.window import extract_features, feature_file
from ctvlp.models.weights_dir import weights_provenance
from ctvlp.models.window_encoder import WindowEncoderSpec, build_window_encoder
from ctvlp.features.cache import cache_file

with logged(snakemake.log[0]) as log:
    cfg = snakemake.params.cfg  # seed, model.window_encoder, model.weights_dir, preprocess.window_voxels
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    (log.info if cfg["model"].get("weights_dir") else log.warning)(weights_provenance(cfg))
    spec = replace(WindowEncoderSpec.from_config(cfg), pretrained=snakemake.params.pretrained)
    model = build_window_encoder(spec, cfg["seed"]).to(device)
    log.info("window encoder: %s", spec.pretrained or spec.weights_dir or "random init")
    shard = pd.read_parquet(snakemake.input.cache)
    rows = []
    for v in shard.itertuples():
        if v.status != "ok":
            rows.append({"volume_id": v.volume_id, "status": "skipped", "reason": v.reason})
            continue
        info = extract_features(model, cache_file(snakemake.params.cache_dir, v.volume_id),
                                feature_file(snakemake.params.feature_dir, v.volume_id))
        rows.append({"volume_id": v.volume_id, "status": "ok", "reason": "", **info})
    pd.DataFrame(rows).to_parquet(snakemake.output[0], index=False)
    log.info("features for %d volumes on %s", sum(r["status"] == "ok" for r in rows), device)
