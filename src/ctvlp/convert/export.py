"""``ctvlp export-hf RUN DIR``: a trained run written in the RadFinder authors' release layout.

The folder is what their ``save_pretrained`` writes: ``config.json`` (``radfinder_model_config`` with the widths,
``do_snippet_alignment``, ``image_preprocessing``), ``model.safetensors`` (keys ``model.`` + their module names,
weight-norm heads in torch's ``parametrizations`` names, the text tower as plain weights with any LoRA merged) and
``preprocessor_config.json``, plus a model card ``README.md`` (data, metrics, licence). No code files: it loads with
``ctvlp.models.release.load_release`` (or ``ctvlp import-weights --radfinder``). What the authors' format has no
field for goes under the extra key ``ctvlp`` (their code ignores unknown keys): the text tower's path and pooling,
the LayerNorm epsilon, the run's name.

The run's window encoder is written too: its trained copy (end to end), else the frozen encoder its features came
from (the workflow's pretrained one, ``model.weights_dir``'s, or the seeded random one). The combiner's feature
standardisation (random encoders) is folded into ``patch_proj``/``axis_patch_proj``, so the file holds exactly
the authors' tensors.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from ctvlp.convert.importer import atomic_folder
from ctvlp.core.state_dict import save_tensors
from ctvlp.models.loading import load_trained_model
from ctvlp.models.radfinder_release import CONFIG, WEIGHTS
from ctvlp.models.text_encoder import merge_peft_state
from ctvlp.models.vit_blocks import LN_EPS
from ctvlp.models.window_encoder import WindowEncoderSpec, build_window_encoder

LICENCE = "cc-by-nc-sa-4.0"  # SPECTRE's and RadFinder's weights; a model trained on them inherits it
PREPROCESSOR = "preprocessor_config.json"


def folded_combiner(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """(x - mu) / sd -> W x' + b folded into W' = W / sd, b' = b - W (mu / sd); the statistics dropped."""
    out = {k: v for k, v in state.items() if not k.startswith(("scan_", "depth_"))}
    for proj, stats in (("patch_proj", "scan"), ("axis_patch_proj", "depth")):
        w, b = state[f"{proj}.weight"].double(), state[f"{proj}.bias"].double()
        mu, sd = state[f"{stats}_mu"].double(), state[f"{stats}_sd"].double()
        out[f"{proj}.weight"] = (w / sd[None]).float()
        out[f"{proj}.bias"] = (b - w @ (mu / sd)).float()
    return out


def head_state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k.replace("weight_g", "parametrizations.weight.original0").replace("weight_v",
                                                                             "parametrizations.weight.original1"): v
            for k, v in module.state_dict().items()}


def text_state(model, scaling: float) -> dict[str, torch.Tensor]:
    """Plain names, LoRA merged into the weights (as the authors' eval-mode save); loralib's adapters beside them."""
    state = model.text.model.state_dict()
    if not any(".lora_A." in k for k in state):
        return dict(state)
    out = merge_peft_state(state, scaling)
    for key, value in state.items():
        for part in ("lora_A", "lora_B"):
            if f".{part}.default.weight" in key:
                module = key.removeprefix("base_model.model.").split(f".{part}.")[0]
                out[f"{module}.{part}"] = value
    return out


def window_encoder(model, config: dict):
    if model.window is not None:
        return model.window
    return build_window_encoder(WindowEncoderSpec.from_config(config), config["seed"])


def release_state(model, config: dict) -> dict[str, torch.Tensor]:
    t = config["model"]["text_encoder"]
    lora = t.get("lora") or {}
    parts = {"backbone_image": window_encoder(model, config).state_dict(),
             "feature_comb_image": folded_combiner(model.combiner.state_dict()),
             "projection_image": head_state(model.image_head), "projection_text": head_state(model.text_head),
             "backbone_text": text_state(model, float(lora.get("alpha", 32)) / float(lora.get("r", 8))),
             "criterion": model.scale.state_dict()}
    if model.copy_heads:
        parts.update(projection_image_copy=head_state(model.image_copy_head),
                     projection_text_copy=head_state(model.text_copy_head))
    return {f"model.{prefix}.{k}": v.detach().float().contiguous()
            for prefix, state in parts.items() for k, v in state.items()}


def release_config(model, config: dict, run: str) -> dict:
    m, p = config["model"], config["preprocess"]
    w, s, t = m["window_encoder"], m["scan_encoder"], m["text_encoder"]
    window, spacing = list(p["window_voxels"]), list(p["spacing_mm"])
    lora = t.get("lora") or {}
    hu = list(p["hu_range"])
    return {
        "architectures": ["RadFinderModel"], "model_type": "radfinder",
        "radfinder_model_config": {
            "backbone": "ctvlp_window_encoder", "image_backbone_embed_dim": w["dim"],
            "backbone_kwargs": {"embed_dim": w["dim"], "depth": w["depth"], "num_heads": w["heads"], "mlp_ratio": 4,
                                "patch_size": list(w["patch_voxels"]), "half_patch_embed": False, "qkv_bias": True,
                                "sliding_window_size": window, "pixdim": spacing, "pos_embed": "rope",
                                "rope_kwargs": {"base": 1000.0}, "init_values": 1.0, "num_classes": 0,
                                "global_pool": ""},
            "feature_combiner": "ctvlp_combiner", "feature_comb_embed_dim": s["dim"],
            "feature_comb_num_layers": s["depth"], "feature_comb_num_heads": s["heads"],
            "feature_combiner_kwargs": {"pos_embed": "rope", "rope_kwargs": {"base": 100.0}, "init_values": 1.0,
                                        "num_classes": 0, "global_pool": ""},
            "projection_dim": m["embed_dim"], "text_hidden_size": model.text.dim, "text_tokenizer": t["path"],
            "text_backbone_kwargs": {"tokenizer_max_length": t["max_tokens"], "use_lora": t["finetune"] == "lora",
                                     "lora_r": lora.get("r"), "lora_alpha": lora.get("alpha"),
                                     "lora_target_keywords": list(lora.get("target_modules", []))},
        },
        "do_snippet_alignment": {"enabled": True, "snippet_mode": "axis_localization", "rope_mode": "physical",
                                 "projector_mode_image": "copy" if model.copy_heads else "shared",
                                 "projector_mode_text": "copy" if model.copy_heads else "shared"},
        "image_preprocessing": {"pixdim": spacing, "sliding_window_size": window, "intensity_a_min": float(hu[0]),
                                "intensity_a_max": float(hu[1]), "intensity_b_min": 0.0, "intensity_b_max": 1.0,
                                "orientation_axcodes": "RAS", "dtype": "float16"},
        "text_tokenizer_name": t["path"],
        "ctvlp": {"run": run, "text_model": t["path"], "text_pooling": t["pooling"], "layer_norm_eps": LN_EPS,
                  "text_finetune": t["finetune"]},
    }


HEADLINE = {  # metrics.json path -> card name: the numbers the paper reports per data set
    ("retrieval", "t2i_scans", "R@1"): "text-to-image R@1", ("retrieval", "t2i_scans", "R@5"): "text-to-image R@5",
    ("retrieval", "t2i_scans", "R@10"): "text-to-image R@10", ("zero_shot", "ensemble", "macro_auc"): "zero-shot AUC",
    ("localization", "model", "mae_mm"): "localization MAE (mm)",
}


def headline_metrics(metrics: dict) -> dict[str, float]:
    """{"<set>/<metric>": value} of the run's metrics.json (point estimates; the CIs stay in that file)."""
    out = {}
    for name, section in metrics.items():
        if not isinstance(section, dict) or "set" not in section:
            continue
        for path, label in HEADLINE.items():
            node = section
            for key in path:
                node = node.get(key) if isinstance(node, dict) else None
            value = node.get("value") if isinstance(node, dict) else node
            if isinstance(value, (int, float)) and not isinstance(value, bool) and value == value:
                out[f"{name}/{label}"] = float(value)
    return out


def model_card(config: dict, run: str, metrics: dict | None, datasets: list[str]) -> str:
    """README.md with YAML front matter (licence, datasets, metrics) as on the Hugging Face hub."""
    lines = ["---", f"license: {LICENCE}", "library_name: ctvlp", "tags: [computed-tomography, vision-language, "
             "3d-medical-imaging, retrieval]", "datasets:"] + [f"  - {d}" for d in datasets or ["unspecified"]]
    flat = headline_metrics(metrics or {})
    lines += ["model-index:", f"  - name: ctvlp-{run}", "    results:"]
    lines += [f"      - {{metric: {json.dumps(k)}, value: {v:.6g}}}" for k, v in sorted(flat.items())] or ["      []"]
    lines += ["---", "", f"# ctvlp run `{run}` in RadFinder's release layout", "",
              "Written by `ctvlp export-hf` from a run of the ctvlp workflow (a reimplementation of RadFinder, "
              "arXiv 2603.02026). Load it with `ctvlp.models.release.load_release(folder, text_config)` or import it "
              "with `ctvlp import-weights --radfinder folder`; no code files are included or needed.", "",
              "## Training data", ""]
    lines += [f"- {d}" for d in datasets or ["(not recorded)"]]
    lines += ["", "## Metrics", "", "The run's test-split metrics (`metrics.json` of the run; bootstrap CIs there)."
              if flat else "No metrics in this export (the workflow's own export for a released row carries none; "
              "`ctvlp export-hf` after the run's evaluation adds them).", ""]
    lines += [f"- {k}: {v:.4f}" for k, v in sorted(flat.items())]
    lines += ["", "## Licence", "",
              f"Weights: {LICENCE.upper()} (non-commercial, share alike), as the SPECTRE and RadFinder weights they "
              "derive from; the data they were trained on carries its own terms (listed above).", ""]
    return "\n".join(lines)


def export_release(run_dir: str | Path, out_dir: str | Path, metrics: dict | None = None,
                   datasets: list[str] | None = None) -> Path:
    """Write ``run_dir`` (a trained run: config.json + best.safetensors) into ``out_dir`` atomically."""
    run_dir, out_dir = Path(run_dir), Path(out_dir)
    model, config = load_trained_model(run_dir)
    if metrics is None and (run_dir / "metrics.json").is_file():
        metrics = json.loads((run_dir / "metrics.json").read_text())
    if datasets is None:
        datasets = sorted(config["train"].get("datasets") or [])
    run = run_dir.name
    with atomic_folder(out_dir) as tmp:
        with torch.no_grad():
            save_tensors(release_state(model, config), tmp / WEIGHTS)
        cfg = release_config(model, config, run)
        (tmp / CONFIG).write_text(json.dumps(cfg, indent=2) + "\n")
        pre = {"image_processor_type": "RadFinderImageProcessor", "dtype": "float16", "min_area_for_padding": 0.0,
               **{k: cfg["image_preprocessing"][k] for k in ("pixdim", "sliding_window_size")}}
        (tmp / PREPROCESSOR).write_text(json.dumps(pre, indent=2) + "\n")
        (tmp / "README.md").write_text(model_card(config, run, metrics, datasets))
    return out_dir
