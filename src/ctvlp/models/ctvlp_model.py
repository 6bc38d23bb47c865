"""The trainable model (RadFinder's layout on SPECTRE's modules): the feature combiner over cached window
features, the text tower, SigLIP heads with their copies, and, with the end-to-end option, the window
encoder itself.

Which head serves what, as RadFinder: retrieval uses the main image and text heads; the prompt loss and
zero-shot use the image *copy* head (on the same [CLS; mean] scan feature) with the main text head;
localization uses both copies (depth bins through the image copy, snippets through the text copy).
The copies start as clones of the main heads (of the released weights, when loaded).
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass, replace

import torch
from torch import nn

from ctvlp.losses import LogitScale
from ctvlp.models.combiner import CombinerSpec, FeatureCombiner
from ctvlp.models.heads import SigLIPHead
from ctvlp.models.text_encoder import TextEncoder, TextEncoderSpec
from ctvlp.models.vit_blocks import set_layer_norm_eps
from ctvlp.models.weights import load_part, part_file
from ctvlp.models.weights_dir import weights_provenance
from ctvlp.models.window_encoder import WindowEncoder, WindowEncoderSpec, build_window_encoder

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class HeadSpec:
    hidden_dim: int
    bottleneck_dim: int
    embed_dim: int

    @classmethod
    def from_config(cls, config: dict) -> "HeadSpec":
        h = config["model"].get("heads") or {}
        return cls(int(h.get("hidden_dim", 2048)), int(h.get("bottleneck_dim", 256)), int(config["model"]["embed_dim"]))


class CTVLPModel(nn.Module):
    def __init__(self, combiner_spec: CombinerSpec, text_spec: TextEncoderSpec, head_spec: HeadSpec,
                 copy_heads: bool = True, logit_init: tuple[float, float] = (2.302585, -10.0),
                 window: WindowEncoder | None = None, standardize_features: bool = True,
                 text: TextEncoder | None = None):
        super().__init__()
        self.window = window  # None: the window encoder is frozen and its features are read from disk
        self.combiner = FeatureCombiner(combiner_spec)
        self.text = TextEncoder(text_spec) if text is None else text  # given: a release's tower (models.release)
        h = head_spec
        self.image_head = SigLIPHead(2 * combiner_spec.dim, h.hidden_dim, h.bottleneck_dim, h.embed_dim)
        self.text_head = SigLIPHead(self.text.dim, h.hidden_dim, h.bottleneck_dim, h.embed_dim)
        self.copy_heads = copy_heads
        self.make_copy_heads()
        self.scale = LogitScale(*logit_init)
        self.standardize_features = standardize_features

    def make_copy_heads(self) -> None:
        """Copies cloned from the main heads (again after loading pretrained main heads)."""
        self.image_copy_head = copy.deepcopy(self.image_head) if self.copy_heads else self.image_head
        self.text_copy_head = copy.deepcopy(self.text_head) if self.copy_heads else self.text_head

    @classmethod
    def from_config(cls, config: dict, load_window_weights: bool = True) -> "CTVLPModel":
        """``load_window_weights=False`` when a checkpoint will supply the trained weights (window encoder,
        combiner, heads): the pretrained folder is then not read for them."""
        spec = WindowEncoderSpec.from_config(config)
        weights_dir = config["model"].get("weights_dir")
        window = None
        if spec.trainable:  # same seeded start as the frozen features; built first so the rest stays seeded alike
            start = spec if load_window_weights else replace(spec, weights_dir=None, pretrained=None)
            window = build_window_encoder(start, config["seed"]).requires_grad_(True)
        model = cls(CombinerSpec.from_config(config), TextEncoderSpec.from_config(config), HeadSpec.from_config(config),
                    config["model"]["separate_depth_heads"], tuple(config["train"].get("logit_init", (2.302585, -10.0))),
                    window, standardize_features=not weights_dir)
        eps = config["model"].get("layer_norm_eps")
        if eps is not None:  # a run of RadFinder's release: its modules' LayerNorm eps (1e-6) on the same weights
            for module in (model.window, model.combiner):
                if module is not None:
                    set_layer_norm_eps(module, eps)
        if load_window_weights:  # building to train: say which start (a checkpoint's loader stays quiet)
            (log.info if weights_dir else log.warning)(weights_provenance(config))
            if weights_dir:
                model.load_pretrained(weights_dir)
        return model

    def load_pretrained(self, weights_dir: str) -> None:
        load_part(self.combiner, weights_dir, "combiner")
        for part, head in (("image_head", self.image_head), ("text_head", self.text_head)):
            if part_file(weights_dir, part).is_file():
                load_part(head, weights_dir, part)
        self.make_copy_heads()
        extra = [("image_copy_head", self.image_copy_head), ("text_copy_head", self.text_copy_head)] if self.copy_heads else []
        for part, module in extra + [("scale", self.scale)]:  # RadFinder's trained copies and logit scale
            if part_file(weights_dir, part).is_file():
                load_part(module, weights_dir, part)

    def set_feature_stats(self, scan: tuple[torch.Tensor, torch.Tensor], depth: tuple[torch.Tensor, torch.Tensor]) -> None:
        """Per-channel standardisation of the window features (random encoders only: pretrained weights
        were trained on raw features, so it stays the identity for them)."""
        if self.standardize_features:
            self.combiner.set_feature_stats(scan, depth)

    def scan_features(self, batch: dict) -> torch.Tensor:
        """[CLS; mean] of the combiner over the window grid (B, 2 dim)."""
        scale = batch.get("rope_log_scale")  # (B, 2): the trainer's per-sample draws (scan path, depth path)
        return self.combiner.scan(batch["scan_tokens"], batch["scan_coords"], batch["grid"], batch["scan_mask"],
                                  None if scale is None else scale[:, 0])

    def depth_features(self, batch: dict) -> torch.Tensor:
        """Per depth bin [CLS; in-plane mean] of the depth path (B, max_bins, 2 dim)."""
        scale = batch.get("rope_log_scale")
        return self.combiner.depth(batch["depth_tokens"], batch["depth_coords"], batch["grid"], batch["depth_mask"],
                                   int(batch["n_bins"].max()), None if scale is None else scale[:, 1])

    def encode_scan_views(self, batch: dict) -> dict[str, torch.Tensor]:
        """scan (main head: retrieval), scan_prompt (image copy head: prompt loss, zero-shot) and depth
        (image copy head per depth bin: localization), from one combiner pass per path."""
        feats = self.scan_features(batch)
        return {"scan": self.image_head(feats), "scan_prompt": self.image_copy_head(feats),
                "depth": self.image_copy_head(self.depth_features(batch))}

    def encode_scans(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """(scan embeddings (B, E) of the main head, depth-bin embeddings (B, max_bins, E) of the copy head)."""
        views = self.encode_scan_views(batch)
        return views["scan"], views["depth"]

    def encode_prompt_scans(self, batch: dict) -> torch.Tensor:
        """Scan embeddings of the image copy head (B, E): what prompts are compared with."""
        return self.image_copy_head(self.scan_features(batch))

    def encode_reports(self, texts: list[str]) -> torch.Tensor:
        return self.text_head(self.text(texts))

    def encode_snippets(self, texts: list[str]) -> torch.Tensor:
        return self.text_copy_head(self.text(texts))

    def encode_prompts(self, prompts: dict[str, list[list[str]]]) -> tuple[torch.Tensor, torch.Tensor]:
        """Positive and negative prompt embeddings per label (main text head), averaged over templates: (L, E)."""
        out = []
        for polarity in ("positive", "negative"):
            per_label = prompts[polarity]
            flat = [p for group in per_label for p in group]
            emb = self.text_head(self.text(flat))
            sizes = [len(group) for group in per_label]
            out.append(torch.stack([chunk.mean(dim=0) for chunk in emb.split(sizes)]))
        return out[0], out[1]

    def trainable_state(self) -> dict[str, torch.Tensor]:
        """Only what training changes or derives (heads, combiner, LoRA, feature statistics): small and
        safetensors-friendly; the frozen text backbone is reloaded from its own path."""
        names = {n for n, p in self.named_parameters() if p.requires_grad}
        names |= {n for n, _ in self.named_buffers() if n.startswith("combiner.") and n.split(".")[-1] in
                  ("scan_mu", "scan_sd", "depth_mu", "depth_sd")}
        return {n: t.detach().contiguous() for n, t in self.state_dict().items() if n in names}
