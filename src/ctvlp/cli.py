"""``ctvlp``: a trained model on one scan (embed, classify, localize), the reference miner on one report,
the one-time import of SPECTRE's or RadFinder's released weights (import-weights) and a trained run written in
RadFinder's release layout (export-hf).

Every answer comes from the workflow's own reading, preprocessing and model code (``ctvlp.inference.scan``).
Errors print one line naming the input and the reason, and exit with status 2.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def _scan_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", required=True, type=Path,
                   help="a run folder of the workflow, e.g. results/runs/full (config.json + best.safetensors)")
    p.add_argument("--scan", required=True, type=Path,
                   help="a DICOM series folder, a NIfTI file or a Rad-ChestCT .npz (detected from the content)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ctvlp", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("embed", help="scan embedding and depth-bin embeddings")
    _scan_args(p)
    p.add_argument("--out", type=Path, help="output .npy (scan embedding) or .safetensors (scan + depth bins)")
    p = sub.add_parser("classify", help="probability of each label with the prompt ensemble")
    _scan_args(p)
    p.add_argument("--labels", help="label set YAML (synonyms + prompts); default: the run's own")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p = sub.add_parser("localize", help="where along z a sentence looks in the scan")
    _scan_args(p)
    p.add_argument("--text", required=True, help="one sentence, e.g. 'nodule in the right lower lobe'")
    p.add_argument("--figure", type=Path, help="write a PNG: the slice at the predicted depth and the profile")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p = sub.add_parser("mine", help="image references and snippets the miner finds in a report")
    p.add_argument("--report", required=True, type=Path, help="a UTF-8 text file")
    p.add_argument("--patterns", nargs="*", default=None, help="extra vocabulary YAML files (a site's styles)")
    p.add_argument("--json", action="store_true")
    p = sub.add_parser("import-weights", help="convert SPECTRE's released weight files into model.weights_dir")
    p.add_argument("--config", nargs="+", required=True, type=Path,
                   help="the workflow's config files, merged in order (e.g. config/config.yaml config/paper.yaml): "
                        "the architecture the weights must fit")
    p.add_argument("--out", type=Path, help="the model folder to write (default: the config's model.weights_dir)")
    p.add_argument("--source", type=Path, help="a folder holding the released files under their published names")
    p.add_argument("--radfinder", type=Path, help="RadFinder's trained model: the authors' Hugging Face folder "
                   "(config.json + model.safetensors, or shards + model.safetensors.index.json; its code files are "
                   "never run) or one safetensors file (keys prefixed 'model.'): every part at once, with its copy "
                   "heads and logit scale; a folder's LoRA-merged text tower loads for evaluation only "
                   "(model.text_encoder.finetune: frozen)")
    for part, flag in (("window_encoder", "--backbone"), ("combiner", "--combiner"), ("image_head", "--image-head"),
                       ("text_head", "--text-head"), ("text", "--text-lora")):
        p.add_argument(flag, dest=part, type=Path, help=f"the {part} file (overrides --source)")
    p.add_argument("--text-base", type=Path, help="local HF folder of the text model the LoRA was trained on, to "
                   "refuse a file whose base already holds the merged update (default: model.text_encoder.path)")
    p = sub.add_parser("export-hf", help="a trained run in RadFinder's release layout (config.json, "
                       "model.safetensors, model card)")
    p.add_argument("run", type=Path, help="a run folder of the workflow, e.g. results/runs/full")
    p.add_argument("out", type=Path, help="the folder to write (replaced if it exists)")
    p.add_argument("--dataset", action="append", help="a training data set for the model card (repeatable; "
                   "default: the run's train.datasets)")
    return parser


def cmd_export_hf(args) -> None:
    from ctvlp.convert.export import export_release

    folder = export_release(args.run, args.out, datasets=args.dataset)
    print(f"wrote {folder}: config.json, model.safetensors, preprocessor_config.json, README.md")


def cmd_embed(args) -> None:
    from ctvlp.inference.scan import ScanModel

    sm = ScanModel(args.checkpoint)
    scan, depth = sm.embed(sm.prepare(args.scan))
    if args.out is None:
        print(json.dumps({"scan": scan.round(6).tolist(), "n_bins": len(depth)}))
    elif args.out.suffix == ".npy":
        import numpy as np

        np.save(args.out, scan)
        print(f"wrote {args.out} (scan embedding, {scan.shape[0]}-d)")
    elif args.out.suffix == ".safetensors":
        import torch

        from ctvlp.core.state_dict import save_tensors

        save_tensors({"scan": torch.from_numpy(scan), "depth": torch.from_numpy(depth)}, args.out)
        print(f"wrote {args.out} (scan {scan.shape[0]}-d, {len(depth)} depth bins)")
    else:
        raise ValueError(f"{args.out}: use a .npy or .safetensors file name")


def cmd_classify(args) -> None:
    from ctvlp.inference.scan import ScanModel

    sm = ScanModel(args.checkpoint)
    probs = sm.classify(sm.prepare(args.scan), args.labels)
    if args.json:
        print(json.dumps(probs, indent=1))
        return
    width = max(map(len, probs))
    for name, p in probs.items():
        print(f"{name:<{width}}  {p:.3f}")


def cmd_localize(args) -> None:
    from ctvlp.inference.scan import ScanModel

    sm = ScanModel(args.checkpoint)
    prepared = sm.prepare(args.scan)
    result = sm.localize(prepared, args.text)
    if args.figure:
        from ctvlp.evaluate.figures import localize_figure

        localize_figure(prepared.data, result, sm.bin_voxels, sm.spec.spacing_mm[2], args.text, args.figure)
        result["figure"] = str(args.figure)
    if args.json:
        print(json.dumps(result, indent=1))
        return
    print(f"predicted depth: bin {result['bin']} of {result['n_bins']}, z = {result['z_mm']:.1f} mm")
    if "source_slice" in result:
        s = result["source_slice"]
        print(f"source series: slice {s['index']} (InstanceNumber {s['instance_number']}, z = {s['z_mm']:.1f} mm)")
    for t in result["top3"]:
        print(f"  bin {t['bin']:3d}  z = {t['z_mm']:7.1f} mm  score {t['score']:.3f}")
    if args.figure:
        print(f"figure: {args.figure}")


def cmd_mine(args) -> None:
    from ctvlp.text.mining import default_pattern_files, find_references

    try:
        text = args.report.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ValueError(f"{args.report}: not UTF-8 text") from None
    files = tuple(default_pattern_files()) + tuple(args.patterns or ())
    refs = find_references(text, files)
    rows = [{"series": r.series, "image": r.image, "span": list(r.span), "reference": text[r.span[0]:r.span[1]],
             "snippet": r.snippet, "confidence": r.confidence, "prior": r.prior} for r in refs]
    if args.json:
        print(json.dumps(rows, indent=1, ensure_ascii=False))
        return
    print(f"{len(rows)} reference(s) in {args.report} (confidence: high/medium/low; text.mining.min_confidence "
          "chooses which become localization targets)")
    for r in rows:
        series = "?" if r["series"] is None else r["series"]
        prior = ", prior study" if r["prior"] else ""
        print(f"  series {series}, image {r['image']} [{r['confidence']}{prior}]: \"{r['reference']}\" -> {r['snippet']}")


def merged_config(files: list[Path]) -> dict:
    """Config files merged in order, nested sections key by key (as snakemake merges --configfile)."""
    from ctvlp.core.config import load_yaml

    def merge(base: dict, over: dict) -> dict:
        out = dict(base)
        for key, value in over.items():
            out[key] = merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
        return out

    config: dict = {}
    for f in files:
        if not f.is_file():
            raise ValueError(f"{f}: no such config file")
        config = merge(config, load_yaml(f) or {})
    return config


def cmd_import_weights(args) -> None:
    from ctvlp.convert.importer import RELEASED, import_weights
    from ctvlp.core.config import resolve_model_path

    config = merged_config(args.config)
    out = args.out or config.get("model", {}).get("weights_dir")
    if not out:
        raise ValueError("no --out and the config's model.weights_dir is null")
    sources = {}
    for part in RELEASED:
        given = getattr(args, part)
        if given is None and args.source is not None and (args.source / RELEASED[part]).is_file():
            given = args.source / RELEASED[part]
        if given is not None:
            sources[part] = given
    if args.radfinder is None and ("window_encoder" not in sources or "combiner" not in sources):
        where = f" in {args.source}" if args.source else ""
        raise ValueError(f"the window encoder and combiner files are needed (--backbone, --combiner{where}, "
                         "or --radfinder)")
    base = args.text_base
    if base is None and ("text" in sources or args.radfinder is not None):
        candidate = resolve_model_path(config["model"]["text_encoder"]["path"])
        base = candidate if candidate.is_dir() else None
    folder = import_weights(config, sources, Path(out), " + ".join(f.name for f in args.config), base, args.radfinder)
    parts = json.loads((folder / "manifest.json").read_text())["parts"]
    print(f"wrote {folder}: {', '.join(sorted(parts))} (manifest.json lists sources and sha256)")


COMMANDS = {"embed": cmd_embed, "classify": cmd_classify, "localize": cmd_localize, "mine": cmd_mine,
            "import-weights": cmd_import_weights, "export-hf": cmd_export_hf}


def _quiet_libraries() -> None:
    """Keep stdout/stderr to the answer: no weight-loading progress bars or deprecation chatter."""
    import warnings

    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    warnings.filterwarnings("ignore", category=FutureWarning)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command != "mine":
        _quiet_libraries()
    try:
        COMMANDS[args.command](args)
    except (ValueError, OSError) as err:  # ScanError, CheckpointError, SeriesError are ValueErrors
        print(f"ctvlp {args.command}: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
