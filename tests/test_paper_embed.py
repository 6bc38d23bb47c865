"""The paper's extra embeddings from a real (tiny) model, saved in the embed step's format and evaluated."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch
import yaml

from ctvlp.evaluate.arrays import load_embeddings
from ctvlp.core.metrics import mean7_prompt_embedding
from ctvlp.evaluate.paper import PaperSettings
from ctvlp.evaluate.paper_embed import paper_arrays
from ctvlp.evaluate.zero_shot import mean7_prompts, pool_text_variants
from ctvlp.evaluate.protocol import evaluate_sets
from ctvlp.core.label_set import CTRATE_LABELS
from ctvlp.models.ctvlp_model import CTVLPModel
from ctvlp.train.ablations import apply_overrides
from ctvlp.train.data import Sample

REPO = Path(__file__).resolve().parents[1]
TINY = {  # head dims divisible by 6 (3D RoPE)
       "model.window_encoder.dim": 16, "model.scan_encoder.dim": 24, "model.scan_encoder.depth": 1,
        "model.scan_encoder.heads": 2, "model.embed_dim": 16, "model.text_encoder.max_tokens": 32}


def test_paper_arrays_from_a_real_model_feed_the_paper_protocol(tmp_path):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # 7 x 36 short prompts: one thread is fastest on a shared machine
    try:
        _check(tmp_path)
    finally:
        torch.set_num_threads(threads)


def _check(tmp_path):
    torch.manual_seed(0)
    config = apply_overrides(yaml.safe_load((REPO / "config/config.yaml").read_text()), TINY)
    model = CTVLPModel.from_config(config).eval()
    rng = np.random.default_rng(0)
    samples = [Sample(f"V{i}", "test", "merlin", f"P{i}", "", rng.integers(0, 2, 18), [], f"C{i}") for i in range(9)]
    sections = {f"V{i}": (f"Liver lesion {i}. See impressions", f"Finding {i % 3}.") for i in range(9)}
    sections["V8"] = ("", "")
    arrays = paper_arrays(model, samples, sections, batch_size=4)
    with torch.no_grad():  # by hand: each template through the main text head, normalised, averaged, renormalised
        per_template = np.stack([model.encode_prompts(p)[0].numpy() for p in mean7_prompts()])
        full = model.encode_reports([pool_text_variants(*sections["V3"])["full"]]).numpy()[0]
        blank = model.encode_reports([" "]).numpy()[0]
    assert np.allclose(arrays["pos_mean7"], mean7_prompt_embedding(per_template), atol=1e-6)
    assert arrays["pos_mean7"].shape == (18, 16)
    assert np.allclose(arrays["report_full"][3], full, atol=1e-5)
    assert np.allclose(arrays["report_findings"][8], blank, atol=1e-5)  # an empty variant is a single space
    # saved as the embed step saves a set, then read back by the report-side code
    n = len(samples)
    emb = {"scan": rng.normal(size=(n, 16)), "report": arrays["report_full"], "snippet": np.zeros((0, 16)),
           "snippet_owner": np.zeros(0, int), "snippet_bin": np.zeros(0, int), "n_bins": np.full(n, 4),
           "depth": rng.normal(size=(4 * n, 16)), "pos_ensemble": rng.normal(size=(18, 16)),
           "neg_ensemble": rng.normal(size=(18, 16)), "pos_ctclip_pair": rng.normal(size=(18, 16)),
           "neg_ctclip_pair": rng.normal(size=(18, 16)), **arrays}
    np.savez(tmp_path / "embeddings.npz", **{f"merlin/{k}": v for k, v in emb.items()})
    pd.DataFrame([{"set": "merlin", "volume_id": s.volume_id, "scan_id": s.scan_id, "patient_id": s.patient_id,
                   "has_text": True, **dict(zip(CTRATE_LABELS, map(int, s.labels)))} for s in samples]).to_parquet(
        tmp_path / "embeddings.parquet", index=False)
    sets = load_embeddings(tmp_path / "embeddings.npz", tmp_path / "embeddings.parquet")
    out = evaluate_sets(sets, 12.0, 20, 42, 95.0, paper=PaperSettings(resamples=20, pool_sizes=(4,), pool_repeats=3))
    pools = out["paper"]["merlin"]["pool_retrieval"]
    assert {"findings", "impressions", "full"} <= set(pools)
    assert all(pools[v]["pool4_R@1"]["value"] is not None for v in ("findings", "impressions", "full"))
