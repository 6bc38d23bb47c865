"""Embeddings of samples through a model, and the quick metrics used for checkpoint selection and the
run's own summary: one place that the trainer (``ctvlp.train``) and the evaluation (``ctvlp.evaluate``)
both use, so neither imports the other."""

from __future__ import annotations

import numpy as np
import torch

from ctvlp.core.label_set import CTRATE_LABELS
from ctvlp.core.metrics import auc_or_na, retrieval_ranks, retrieval_summary, zero_shot_probabilities
from ctvlp.features.window import collate
from ctvlp.losses.localization import localization_logits


@torch.no_grad()
def embed_samples(model, samples, features, prompts, batch_size: int = 16) -> dict:
    """Scan (main head), scan_prompt (image copy head, for zero-shot), depth-bin, report, snippet and prompt
    embeddings of samples (numpy, eval mode)."""
    model.eval()
    device = next(model.parameters()).device
    scans, prompt_scans, depths, n_bins, reports, snippets = [], [], [], [], [], []
    for k in range(0, len(samples), batch_size):
        part = samples[k:k + batch_size]
        tensors = {key: v.to(device) for key, v in collate([features.tokens(s.volume_id) for s in part]).items()}
        views = model.encode_scan_views(tensors)
        depth = views["depth"]
        scans.append(views["scan"].float().cpu())
        prompt_scans.append(views["scan_prompt"].float().cpu())
        depths += [d[: int(n)].float().cpu() for d, n in zip(depth, tensors["n_bins"])]
        n_bins += [int(n) for n in tensors["n_bins"]]
    texts = [s.text or "" for s in samples]
    for k in range(0, len(texts), batch_size):
        reports.append(model.encode_reports(texts[k:k + batch_size]).float().cpu())
    owners = [(i, t, b) for i, s in enumerate(samples) for t, b in s.snippets]
    for k in range(0, len(owners), batch_size):
        snippets.append(model.encode_snippets([t for _, t, _ in owners[k:k + batch_size]]).float().cpu())
    pos, neg = model.encode_prompts(prompts)
    return {"scan": torch.cat(scans).numpy() if scans else np.zeros((0, 1)),
            "scan_prompt": torch.cat(prompt_scans).numpy() if prompt_scans else np.zeros((0, 1)), "depth": [d.numpy() for d in depths],
            "n_bins": np.array(n_bins), "report": torch.cat(reports).numpy() if reports else np.zeros((0, 1)),
            "snippet": torch.cat(snippets).numpy() if snippets else np.zeros((0, 1)),
            "snippet_owner": np.array([i for i, _, _ in owners], dtype=int),
            "snippet_bin": np.array([b for _, _, b in owners], dtype=int),
            "pos": pos.float().cpu().numpy(), "neg": neg.float().cpu().numpy()}


def merge_embeddings(parts: list[dict]) -> dict:
    """One embedding dict from consecutive shares of a sample list (one per process, in rank order)."""
    parts = [p for p in parts if len(p["n_bins"])] or parts[:1]
    if len(parts) == 1:
        return parts[0]
    offsets = np.cumsum([0] + [len(p["n_bins"]) for p in parts[:-1]])
    cat = lambda key: np.concatenate([p[key] for p in parts if len(p[key])] or [parts[0][key]])  # noqa: E731
    return {"scan": cat("scan"), "scan_prompt": cat("scan_prompt"), "depth": [d for p in parts for d in p["depth"]],
            "n_bins": cat("n_bins"),
            "report": cat("report"), "snippet": cat("snippet"),
            "snippet_owner": np.concatenate([p["snippet_owner"] + o for p, o in zip(parts, offsets)]).astype(int),
            "snippet_bin": np.concatenate([p["snippet_bin"] for p in parts]).astype(int),
            "pos": parts[0]["pos"], "neg": parts[0]["neg"]}


def localization_predictions(emb: dict) -> np.ndarray:
    """argmax over the depth bins of the snippet's own scan."""
    preds = []
    for s, owner in zip(emb["snippet"], emb["snippet_owner"]):
        depth = torch.from_numpy(emb["depth"][owner])[None]
        logits = localization_logits(torch.from_numpy(s)[None], depth, torch.tensor([len(emb["depth"][owner])]), 1.0)
        preds.append(int(logits.argmax()))
    return np.array(preds, dtype=int)


def evaluate_samples(model, samples, features, prompts, bin_mm: float, emb: dict | None = None) -> dict:
    """Text-to-image retrieval, zero-shot AUC and localization MAE (with the middle-bin baseline).
    ``emb``: the samples' embeddings when already computed (the trainer's dev pass, shared over processes)."""
    with_text = [s for s in samples if s.text]
    out: dict = {"n": len(samples)}
    if not samples:
        return {**out, "retrieval": {"mean_rank": float("inf")}}
    emb = embed_samples(model, samples, features, prompts) if emb is None else emb
    idx = [i for i, s in enumerate(samples) if s.text]
    ranks = retrieval_ranks(emb["report"][idx], emb["scan"][idx]) if with_text else np.array([np.inf])
    out["retrieval"] = retrieval_summary(ranks)
    probs = zero_shot_probabilities(emb["scan_prompt"], emb["pos"], emb["neg"])
    labels = np.stack([s.labels for s in samples])
    aucs = {name: auc_or_na(labels[:, j], probs[:, j])[0] for j, name in enumerate(CTRATE_LABELS)}
    defined = [v for v in aucs.values() if not np.isnan(v)]
    out["auc_macro"] = float(np.mean(defined)) if defined else float("nan")
    out["auc_labels"] = len(defined)
    if len(emb["snippet_owner"]):
        pred = localization_predictions(emb)
        middle = np.array([emb["n_bins"][o] // 2 for o in emb["snippet_owner"]])
        out["loc_mae_mm"] = float(np.mean(np.abs(pred - emb["snippet_bin"])) * bin_mm)
        out["loc_mae_middle_mm"] = float(np.mean(np.abs(middle - emb["snippet_bin"])) * bin_mm)
        out["loc_snippets"] = int(len(pred))
    out["mean_rank"] = out["retrieval"]["mean_rank"]
    return out
