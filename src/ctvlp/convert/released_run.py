"""A run of the ablation table that is not trained: ``train.source: released`` takes a model published in RadFinder's
release layout (``train.release_dir``: the authors' folder, or the workflow's own ``ctvlp export-hf`` output) and
writes the run folder training would have written, so ``embed``, ``evaluate``, the tables, claims and the CLI treat
it as any run (rule ``import_release``; no training job).

The run folder: ``config.json`` (the row's config with the release's widths: window encoder, combiner, heads,
embedding size, copy heads; the text tower frozen, its pooling and length from the release; ``train.prompt_scale``
= the release's exp(t)), ``best.safetensors`` (every tensor of the release: window encoder, combiner, heads, logit
scale and the text tower, LoRA merged), ``final.json`` (``source: released``, the folder, the sha256 of its files,
zero steps). The text tower's architecture is the row's ``model.text_encoder.path`` (RadFinder: the local
Qwen3-Embedding-0.6B folder).

The window encoder: when the release's holds the same weights as the configured one (the workflow's own export of a
frozen-encoder run; RadFinder's release over SPECTRE's imported backbone, which RadFinder kept frozen) the run reads
the configured encoder's frozen features (no extra cost); otherwise, with a volume cache (``preprocess.keep_volumes``),
it keeps the release's encoder and ``embed`` re-encodes the cache with it (as an end-to-end run); without a cache
that is an error. The run's ``model.layer_norm_eps`` is the release's (RadFinder: 1e-6): the combiner, and a
re-encoding window encoder, compute as the authors'. Known deviation: frozen window features of the configured
encoder were computed with SPECTRE's 1e-5 (the backbone's tokens move by ~2e-4).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import torch

from ctvlp.core.provenance import sha256_file as sha256
from ctvlp.core.config import resolve_model_path
from ctvlp.core.state_dict import save_tensors
from ctvlp.models.radfinder_release import CONFIG, load_release, weight_files
from ctvlp.models.vit_blocks import LN_EPS
from ctvlp.models.window_encoder import WindowEncoderSpec, build_window_encoder

TRAINED, RELEASED = "trained", "released"


def release_dir(config: dict) -> Path:
    """``train.release_dir``: absolute, or relative to ``results`` (the workflow's own exports: ``export/<run>``)."""
    folder = (config.get("train") or {}).get("release_dir")
    if not folder:
        raise ValueError("train.source: released needs train.release_dir (a folder in RadFinder's release layout)")
    folder = Path(folder)
    return folder if folder.is_absolute() else Path(config["results"]) / folder


def run_config_for(config: dict, release) -> dict:
    """The row's config with the release's architecture; a preprocessing that does not fit is an error."""
    cfg = copy.deepcopy(config)
    arch = release.arch
    p, m = cfg["preprocess"], cfg["model"]
    if list(p["window_voxels"]) != list(arch.window.window):
        raise ValueError(f"config key 'preprocess.window_voxels': {p['window_voxels']} does not fit the release's "
                         f"windows {list(arch.window.window)} (its config.json sliding_window_size)")
    pixdim = (release.config.get("image_preprocessing") or {}).get("pixdim")
    if pixdim is not None and [float(x) for x in pixdim] != [float(x) for x in p["spacing_mm"]]:
        raise ValueError(f"config key 'preprocess.spacing_mm': {p['spacing_mm']} does not fit the release's "
                         f"spacing {pixdim} (its config.json image_preprocessing.pixdim)")
    w = m["window_encoder"]
    w.update(dim=arch.window.dim, depth=arch.window.depth, heads=arch.window.heads,
             patch_voxels=list(arch.window.patch), trainable=not same_encoder(release, config))
    if w["trainable"] and not p["keep_volumes"]:
        raise ValueError("the release's window encoder differs from the configured one (model.weights_dir / pretrain),"
                         " and without a volume cache (preprocess.keep_volumes: false) the run can only read the "
                         "configured encoder's features: import the release's encoder or keep the volumes")
    m["scan_encoder"].update(dim=arch.combiner.dim, depth=arch.combiner.depth, heads=arch.combiner.heads)
    m["heads"] = {"hidden_dim": arch.heads.hidden_dim, "bottleneck_dim": arch.heads.bottleneck_dim}
    m["embed_dim"] = arch.heads.embed_dim
    m["separate_depth_heads"] = arch.copy_heads
    m["weights_dir"] = None
    m["layer_norm_eps"] = release.arch.layer_norm_eps  # the combiner (and a re-encoding encoder) as the release's
    m["text_encoder"].update(finetune="frozen", pooling=arch.pooling, max_tokens=arch.max_tokens)
    if cfg["train"].get("prompt_scale") is None:  # null: exp(t), as a trained run records it (RadFinder's zero-shot)
        cfg["train"]["prompt_scale"] = float(release.logit_scale)
    return cfg


def same_encoder(release, config: dict) -> bool:
    """Whether the configured window encoder (whose frozen features the row would read) holds the release's weights."""
    spec = WindowEncoderSpec.from_config(config)
    if (spec.dim, spec.depth, spec.heads, tuple(spec.patch)) != (release.arch.window.dim, release.arch.window.depth,
                                                                 release.arch.window.heads, release.arch.window.patch):
        return False
    ours = build_window_encoder(spec, config["seed"]).state_dict()
    theirs = release.model.window.state_dict()
    return set(ours) == set(theirs) and all(torch.allclose(ours[k], theirs[k]) for k in ours)


def import_release_run(config: dict, run_dir: str | Path, log=None) -> dict:
    """Write ``run_dir`` (config.json, best.safetensors, final.json last) from ``train.release_dir``."""
    run_dir = Path(run_dir)
    folder = release_dir(config)
    text = resolve_model_path(config["model"]["text_encoder"]["path"])
    release = load_release(folder, text)
    cfg = run_config_for(config, release)
    model = release.model
    state = {k: v for k, v in model.state_dict().items() if not k.startswith("text.tower.")}
    if not cfg["model"]["window_encoder"]["trainable"]:
        state = {k: v for k, v in state.items() if not k.startswith("window.")}
    run_dir.mkdir(parents=True, exist_ok=True)
    for stale in ("final.json", "best.safetensors"):
        (run_dir / stale).unlink(missing_ok=True)
    (run_dir / "config.json").write_text(json.dumps({k: v for k, v in cfg.items() if k != "privacy"}, indent=1))
    save_tensors(state, run_dir / "best.safetensors")
    files = [folder / CONFIG, *weight_files(folder)]
    result = {"source": RELEASED, "release_dir": str(folder), "sha256": {f.name: sha256(f) for f in files},
              "steps": 0, "best": None, "resumed_from_step": None, "prompt_scale": cfg["train"]["prompt_scale"],
              "release_run": (release.config.get("ctvlp") or {}).get("run"),
              "window_encoder": "the release's own (re-encodes the volume cache)"
              if cfg["model"]["window_encoder"]["trainable"] else "the configured encoder's features (same weights)",
              "layer_norm_eps": {"release": release.arch.layer_norm_eps, "run": cfg["model"]["layer_norm_eps"],
                                 "frozen_window_features": None if cfg["model"]["window_encoder"]["trainable"]
                                 else LN_EPS}}
    (run_dir / "final.json").write_text(json.dumps(result, indent=1))
    if log is not None:
        log.info("released model %s -> %s (no training): %s", folder, run_dir, result["window_encoder"])
    return result


def is_released(config: dict) -> bool:
    return (config.get("train") or {}).get("source", TRAINED) == RELEASED

