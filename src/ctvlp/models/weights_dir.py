"""The manifest of a pretrained model folder (``model.weights_dir``) and the check, before any job starts,
that the configured dims fit it. JSON only (no torch), so the workflow can run it while parsing (the Snakefile
imports this module; ``ctvlp.models.release`` adds the torch-side ``load_release`` and re-exports these names)."""

from __future__ import annotations

import json
from pathlib import Path

MANIFEST = "manifest.json"
FORMAT = "ctvlp-weights/1"


def architecture(config: dict) -> dict:
    """The dims of the configured model that the weights must fit (written to and checked against the manifest)."""
    m = config["model"]
    w, s, h, t = m["window_encoder"], m["scan_encoder"], m.get("heads", {}), m["text_encoder"]
    lora = t.get("lora") or {}
    return {"window_encoder": {"dim": w["dim"], "depth": w["depth"], "heads": w["heads"],
                               "patch_voxels": list(w["patch_voxels"])},
            "combiner": {"dim": s["dim"], "depth": s["depth"], "heads": s["heads"]},
            "heads": {"hidden_dim": h.get("hidden_dim"), "bottleneck_dim": h.get("bottleneck_dim"),
                      "embed_dim": m["embed_dim"]},
            "text": {"path": t["path"], "lora_r": lora.get("r"), "lora_alpha": lora.get("alpha"),
                     "target_modules": list(lora.get("target_modules", []))}}


def model_config_problems(config: dict) -> list[str]:
    """What in the model section cannot run, as ``config key`` lines (empty = fits): a head dimension that
    3D RoPE cannot split into three axes, or ``model.weights_dir`` whose weights have other dims."""
    problems = []
    for section in ("window_encoder", "scan_encoder"):
        part = config["model"][section]
        if part["dim"] % part["heads"] or (part["dim"] // part["heads"]) % 6:
            problems.append(f"config key 'model.{section}': dim {part['dim']} / heads {part['heads']} must give a "
                            "whole head dimension divisible by 6 (3D RoPE)")
    folder = config["model"].get("weights_dir")
    if not folder:
        return problems
    manifest = Path(folder) / MANIFEST
    if not manifest.is_file():
        return problems + [f"config key 'model.weights_dir': '{folder}' has no {MANIFEST} (import the released "
                           "weights with `ctvlp import-weights`)"]
    recorded_manifest = json.loads(manifest.read_text())
    recorded = recorded_manifest.get("architecture", {})
    text = config["model"]["text_encoder"]
    if recorded_manifest.get("text_merged_lora") and text.get("finetune") != "frozen":
        problems.append(f"config key 'model.text_encoder.finetune': {text.get('finetune')} needs a text tower with "
                        f"separate LoRA adapters, but {folder} holds a release's tower with the LoRA merged into its "
                        "weights (saved from eval mode): it can be evaluated (finetune: frozen), not fine-tuned; "
                        "fine-tuning needs the authors' unmerged training checkpoint")
    length = recorded_manifest.get("text_max_tokens")
    if length and text.get("max_tokens") != length:
        problems.append(f"config key 'model.text_encoder.max_tokens': {text.get('max_tokens')} differs from the "
                        f"release's text length {length} (its config.json) in {folder}")
    wanted = architecture(config)
    for part, dims in wanted.items():
        for key, value in dims.items():
            have = recorded.get(part, {}).get(key)
            if part == "text" and key == "path" or have is None or value is None:
                continue
            if have != value:
                problems.append(f"config key 'model': {part}.{key} = {value} does not fit the weights in "
                                f"{manifest} ({have})")
    return problems


def weights_provenance(config: dict) -> str:
    """One line for logs and reports: which weights the model starts from."""
    folder = config["model"].get("weights_dir")
    if not folder:
        return ("model.weights_dir is null: window encoder, combiner and heads start from a seeded RANDOM init, "
                "not the paper's pretrained SPECTRE weights")
    manifest = json.loads((Path(folder) / MANIFEST).read_text())
    files = ", ".join(f"{name} ({digest[:12]})" for name, digest in manifest.get("sources", {}).items())
    return f"pretrained weights from {folder} (preset {manifest.get('preset', '?')}): {files}"
