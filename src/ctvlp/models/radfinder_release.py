"""RadFinder's model as its authors publish it (a Hugging Face ``save_pretrained`` folder), on the workflow's own
modules: ``load_release(path, text_config)`` (re-exported by ``ctvlp.models.release``).

The folder: ``config.json`` (``radfinder_model_config``: backbone, combiner and projection widths, the text length)
and ``model.safetensors`` or shards listed by ``model.safetensors.index.json``; keys are ``model.`` + the SigLIP
module names (``backbone_image``, ``feature_comb_image``, ``projection_image[_copy]``, ``backbone_text``,
``projection_text[_copy]``, ``criterion``). Only JSON and safetensors are read: the custom code files a release
carries (``modeling_radfinder.py`` ...) are never imported, and a pickled ``pytorch_model.bin`` is refused.

The text tower is stored LoRA-merged (the authors save from eval mode, where loralib has added B @ A * scaling to
each adapted weight; ``lora_A``/``lora_B`` are still in the file): it loads as plain weights, the adapters
dropped, and is frozen (evaluation only; fine-tuning needs the authors' unmerged training checkpoint). Its
architecture is not in the release (the authors' code hard-codes Qwen3-Embedding-0.6B): ``text_config`` gives
it, as a dict or a folder holding ``config.json``.

The returned ``ReleaseModel`` wraps a ``CTVLPModel`` with its window encoder: window features, the token batch
(``ctvlp.models.tokens.volume_tokens`` / ``collate``), the combiner paths and the heads are the very code that
training, ``embed`` and the CLI run. Method names and arguments follow the authors' ``RadFinderModel``:
``pixel_values`` (N, 1, H, W, D) windows of all scans concatenated (each scan's windows row-major over its window
grid, D fastest), ``grid_size`` (B, 3) window grid per scan, ``input_ids``/``attention_mask`` (S, L) token ids
(left or right padded).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import NamedTuple

import torch
from safetensors import safe_open
from torch import nn

from ctvlp.core.state_dict import WeightFileError, load_strict
from ctvlp.losses import LogitScale
from ctvlp.models import combiner as combiner_module
from ctvlp.models import window_encoder as window_module
from ctvlp.models.combiner import CombinerSpec
from ctvlp.models.ctvlp_model import CTVLPModel, HeadSpec
from ctvlp.models.spectre import convert_backbone
from ctvlp.models.text_encoder import TextEncoder, TextEncoderSpec
from ctvlp.models.tokens import collate, volume_tokens
from ctvlp.models.vit_blocks import set_layer_norm_eps
from ctvlp.models.window_encoder import WindowEncoder, WindowEncoderSpec

CONFIG = "config.json"
WEIGHTS = "model.safetensors"
INDEX = "model.safetensors.index.json"
# module prefixes of the release's state dict -> the parts of the workflow's model (and of model.weights_dir)
PREFIXES = {
    "model.backbone_image.": "window_encoder", "model.feature_comb_image.": "combiner",
    "model.projection_image.": "image_head", "model.projection_image_copy.": "image_copy_head",
    "model.projection_text.": "text_head", "model.projection_text_copy.": "text_copy_head",
    "model.backbone_text.": "text", "model.criterion.": "scale",
}
LORA_LEAVES = (".lora_A", ".lora_B")
# RadFinder's backbone and combiner build their LayerNorms with eps 1e-6 (SPECTRE's own release: 1e-5, the
# workflow's default); measured on the oracle: 1e-5 instead moves the backbone's tokens by ~2e-4
RADFINDER_LN_EPS = 1e-6


def head_names(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """torch's newer weight-norm names (parametrizations.weight.original0/1) -> the older weight_g/weight_v."""
    return {k.replace("parametrizations.weight.original0", "weight_g").replace("parametrizations.weight.original1",
                                                                               "weight_v"): v for k, v in state.items()}


def read_release_config(folder: str | Path) -> dict:
    path = Path(folder) / CONFIG
    if not path.is_file():
        raise WeightFileError(f"{folder}: no {CONFIG} (a RadFinder release folder holds config.json and "
                              f"{WEIGHTS} or shards with {INDEX})")
    config = json.loads(path.read_text())
    if "radfinder_model_config" not in config:
        raise WeightFileError(f"{path}: no radfinder_model_config (not a RadFinder release)")
    return config


def weight_files(folder: str | Path) -> list[Path]:
    """The safetensors files of a release: one file, or the shards its index lists."""
    folder = Path(folder)
    if (folder / WEIGHTS).is_file():
        return [folder / WEIGHTS]
    if (folder / INDEX).is_file():
        shards = sorted(set(json.loads((folder / INDEX).read_text())["weight_map"].values()))
        missing = [s for s in shards if not (folder / s).is_file()]
        if missing:
            raise WeightFileError(f"{folder / INDEX}: lists shards that are not there: {missing[:3]}")
        return [folder / s for s in shards]
    pickled = [p.name for p in folder.glob("*.bin")]
    hint = f" ({', '.join(pickled)} is a pickle: not read; save the release with safe_serialization)" if pickled else ""
    raise WeightFileError(f"{folder}: neither {WEIGHTS} nor {INDEX}{hint}")


def read_release_state(folder: str | Path) -> dict[str, torch.Tensor]:
    state: dict[str, torch.Tensor] = {}
    for f in weight_files(folder):
        with safe_open(str(f), framework="pt") as fh:
            state.update({k: fh.get_tensor(k) for k in fh.keys()})
    return state


def split_release(state: dict[str, torch.Tensor], source: str | Path) -> dict[str, dict[str, torch.Tensor]]:
    """The release's one state dict -> one per part (a key of no known module is an error naming it)."""
    parts: dict[str, dict[str, torch.Tensor]] = {}
    unknown = []
    for key, value in state.items():
        prefix = next((p for p in PREFIXES if key.startswith(p)), None)
        if prefix is None:
            unknown.append(key)
            continue
        parts.setdefault(PREFIXES[prefix], {})[key[len(prefix):]] = value
    if unknown:
        raise WeightFileError(f"{source}: {len(unknown)} tensors of no known RadFinder module (e.g. {unknown[:3]})")
    return parts


def merged_text_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The text tower as plain weights: the stored weights already hold the merged LoRA update (saved from eval
    mode), so the adapters are dropped, never added again."""
    return {k: v for k, v in state.items() if not k.endswith(LORA_LEAVES)}


def text_model(text_config: dict | str | Path) -> nn.Module:
    """An HF encoder of ``text_config`` (a dict, ``model_type`` qwen3 unless given, or a folder holding
    config.json), float32, random weights (the release fills them)."""
    from transformers import AutoConfig, AutoModel  # here: parsing the workflow imports no transformers

    if isinstance(text_config, (str, Path)):
        folder = Path(text_config)
        if not (folder / CONFIG).is_file():
            raise WeightFileError(f"{folder}: no {CONFIG} for the text tower (give the Qwen3 config as a dict or "
                                  "the local Qwen3-Embedding-0.6B folder)")
        cfg = AutoConfig.from_pretrained(str(folder), local_files_only=True)
    else:
        d = dict(text_config)
        cfg = AutoConfig.for_model(d.pop("model_type", "qwen3"), **d)
    return AutoModel.from_config(cfg, attn_implementation="sdpa").float()


class Architecture(NamedTuple):
    window: WindowEncoderSpec
    combiner: CombinerSpec
    heads: HeadSpec
    copy_heads: bool
    max_tokens: int
    pooling: str
    localization: bool
    layer_norm_eps: float


def architecture(config: dict, parts: dict[str, dict[str, torch.Tensor]]) -> Architecture:
    """Every width from the release's config.json and tensor shapes (the text tower's from its own config)."""
    rc = config["radfinder_model_config"]
    bb = rc["backbone_kwargs"]
    comb = rc.get("feature_combiner_kwargs") or {}
    for name, kwargs, base in (("backbone", bb, window_module.ROPE_BASE), ("feature combiner", comb,
                                                                           combiner_module.ROPE_BASE)):
        have = float((kwargs.get("rope_kwargs") or {}).get("base", base))
        if kwargs.get("pos_embed", "rope") != "rope" or have != base:
            raise WeightFileError(f"config.json: the {name} uses {kwargs.get('pos_embed')} base {have}; the "
                                  f"workflow's model has RoPE base {base}")
    patch = list(bb["patch_size"])
    if bb.get("half_patch_embed"):
        patch[2] //= 2
    window = tuple(bb.get("sliding_window_size") or config["image_preprocessing"]["sliding_window_size"])
    w = WindowEncoderSpec(window, tuple(patch), int(bb["embed_dim"]), int(bb["depth"]), int(bb["num_heads"]),
                          mlp_ratio=float(bb.get("mlp_ratio", 4)))
    c = CombinerSpec(int(rc.get("image_backbone_embed_dim", bb["embed_dim"])), int(rc["feature_comb_embed_dim"]),
                     int(rc["feature_comb_num_layers"]), int(rc["feature_comb_num_heads"]))
    head = parts["image_head"]
    h = HeadSpec(int(head["layers.0.weight"].shape[0]), int(head["layers.4.weight"].shape[0]),
                 int(rc["projection_dim"]))
    snippet = config.get("do_snippet_alignment") or {}
    extra = config.get("ctvlp") or {}  # written by ctvlp export-hf for its own towers (pooling); absent in RadFinder's
    return Architecture(w, c, h, "image_copy_head" in parts,
                        int((rc.get("text_backbone_kwargs") or {}).get("tokenizer_max_length", 4096)),
                        extra.get("text_pooling", "last_token"),
                        bool(snippet.get("enabled")) and snippet.get("snippet_mode") == "axis_localization",
                        float(extra.get("layer_norm_eps", RADFINDER_LN_EPS)))


class LocalizeOutput(NamedTuple):
    """As the authors' ``localize``: a tuple in this order, also readable by name (``out["snippet_emb"]``)."""
    scan_slice_emb: torch.Tensor
    scan_valid_depth_mask: torch.Tensor
    snippet_emb: torch.Tensor

    def __getitem__(self, key):
        return getattr(self, key) if isinstance(key, str) else tuple.__getitem__(self, key)

    def keys(self):
        return self._fields


class ReleaseModel(nn.Module):
    """The authors' ``RadFinderModel`` interface over the workflow's ``CTVLPModel`` (``self.model``, its window
    encoder in ``self.model.window``). Evaluation only: the text tower holds merged LoRA weights."""

    def __init__(self, model: CTVLPModel, arch: Architecture, config: dict):
        super().__init__()
        self.model, self.arch, self.config = model, arch, config

    def image_batch(self, pixel_values: torch.Tensor, grid_size, chunk: int = 16) -> dict[str, torch.Tensor]:
        """Windows -> window features -> the token batch the combiner reads (``ctvlp.models.tokens.collate``)."""
        if pixel_values.ndim != 5:
            raise ValueError(f"pixel_values must be (N, C, H, W, D), got {tuple(pixel_values.shape)}")
        grid = torch.as_tensor(grid_size).reshape(-1, 3).long().cpu()
        counts = grid.prod(dim=1).tolist()
        if sum(counts) != len(pixel_values):
            raise ValueError(f"grid_size {grid.tolist()} gives {sum(counts)} windows, pixel_values has "
                             f"{len(pixel_values)}")
        window = self.model.window
        x = pixel_values.to(next(window.parameters()).device, torch.float32)
        feats = [window(x[i:i + chunk]) for i in range(0, len(x), chunk)]
        feats = {k: torch.cat([f[k] for f in feats]) for k in feats[0]}
        items, start = [], 0
        for (h, w, d), n in zip(grid.tolist(), counts):
            items.append(volume_tokens({k: v[start:start + n].reshape(h, w, d, *v.shape[1:]) for k, v in feats.items()}))
            start += n
        return collate(items)

    def text_features(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        device = next(self.model.text.model.parameters()).device
        return self.model.text.tower(input_ids.to(device), attention_mask.to(device))

    @torch.no_grad()
    def encode_image_retrieval(self, pixel_values: torch.Tensor, grid_size) -> torch.Tensor:
        """(B, projection_dim) global embeddings of the main image head (retrieval), unnormalised."""
        return self.model.image_head(self.model.scan_features(self.image_batch(pixel_values, grid_size)))

    @torch.no_grad()
    def encode_image_disease(self, pixel_values: torch.Tensor, grid_size) -> torch.Tensor:
        """(B, projection_dim) embeddings of the image copy head (zero-shot disease prompts), unnormalised."""
        return self.model.encode_prompt_scans(self.image_batch(pixel_values, grid_size))

    @torch.no_grad()
    def encode_text(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """(S, projection_dim) report embeddings of the main text head (last-token pooling), unnormalised."""
        return self.model.text_head(self.text_features(input_ids, attention_mask))

    @torch.no_grad()
    def localize(self, pixel_values: torch.Tensor, grid_size, input_ids: torch.Tensor,
                 attention_mask: torch.Tensor) -> LocalizeOutput:
        """scan_slice_emb (B, D2, P) per depth bin (image copy head), scan_valid_depth_mask (B, D2) bool,
        snippet_emb (S, P) (text copy head)."""
        if not self.arch.localization:
            raise NotImplementedError("this release was not trained for localization (do_snippet_alignment "
                                      "enabled + snippet_mode axis_localization)")
        batch = self.image_batch(pixel_values, grid_size)
        slices = self.model.image_copy_head(self.model.depth_features(batch))
        valid = torch.arange(slices.shape[1], device=slices.device)[None] < batch["n_bins"].to(slices.device)[:, None]
        snippets = self.model.text_copy_head(self.text_features(input_ids, attention_mask))
        return LocalizeOutput(slices, valid, snippets)

    @property
    def logit_scale(self) -> torch.Tensor:
        return self.model.scale.t.exp()

    @property
    def logit_bias(self) -> torch.Tensor:
        return self.model.scale.b


def build_model(arch: Architecture, text: nn.Module) -> CTVLPModel:
    spec = TextEncoderSpec(path="(release)", pooling=arch.pooling, max_tokens=arch.max_tokens, finetune="frozen")
    window = WindowEncoder(arch.window).eval().requires_grad_(False)
    model = CTVLPModel(arch.combiner, spec, arch.heads, arch.copy_heads, window=window, standardize_features=False,
                       text=TextEncoder(spec, model=text))
    set_layer_norm_eps(model.window, arch.layer_norm_eps)
    set_layer_norm_eps(model.combiner, arch.layer_norm_eps)
    return model


def fill(model: CTVLPModel, parts: dict[str, dict[str, torch.Tensor]], source: str | Path) -> None:
    """Every part loaded strictly into its module (the combiner's feature statistics stay the identity)."""
    needed = {"window_encoder", "combiner", "image_head", "text_head", "text", "scale"}
    if model.copy_heads:
        needed |= {"image_copy_head", "text_copy_head"}
    missing = sorted(needed - set(parts))
    if missing:
        raise WeightFileError(f"{source}: no tensors of {missing}")
    load_strict(model.window, convert_backbone(parts["window_encoder"], model.window.spec.patch[2], source), source)
    model.combiner.load_weights(parts["combiner"], source)
    targets = {"image_head": model.image_head, "text_head": model.text_head, "scale": model.scale}
    if model.copy_heads:
        targets.update(image_copy_head=model.image_copy_head, text_copy_head=model.text_copy_head)
    for part, module in targets.items():
        load_strict(module, head_names(parts[part]), source)
    load_strict(model.text.model, merged_text_state(parts["text"]), source)


def load_release(path: str | Path, text_config: dict | str | Path, device: str | torch.device = "cpu") -> ReleaseModel:
    """The release in ``path`` as a ``ReleaseModel`` in eval mode (see the module docstring)."""
    path = Path(path)
    config = read_release_config(path)
    parts = split_release(read_release_state(path), path)
    arch = architecture(config, parts)
    model = build_model(arch, text_model(text_config))
    fill(model, parts, path)
    model.requires_grad_(False)
    return ReleaseModel(model, arch, config).to(device).eval()

