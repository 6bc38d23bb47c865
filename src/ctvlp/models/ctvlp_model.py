"""The trainable model: scan/slice encoder over cached window features, text encoder, SigLIP heads,
and, with the end-to-end option, the window encoder itself."""

from __future__ import annotations

from dataclasses import replace

import torch
from torch import nn

from ctvlp.losses import LogitScale
from ctvlp.models.scan_encoder import GridTransformer, ScanEncoderSpec, projection_head
from ctvlp.models.text_encoder import TextEncoder, TextEncoderSpec
from ctvlp.models.window_encoder import WindowEncoder, WindowEncoderSpec, build_window_encoder


class CTVLPModel(nn.Module):
    def __init__(self, scan_spec: ScanEncoderSpec, text_spec: TextEncoderSpec, embed_dim: int,
                 separate_depth_heads: bool = True, logit_init: tuple[float, float] = (2.302585, -10.0),
                 window: WindowEncoder | None = None):
        super().__init__()
        self.window = window  # None: the window encoder is frozen and its features are read from disk
        self.grid = GridTransformer(scan_spec)
        self.text = TextEncoder(text_spec)
        self.scan_head = projection_head(scan_spec.dim, embed_dim)
        self.text_head = projection_head(self.text.dim, embed_dim)
        self.depth_head = projection_head(scan_spec.dim, embed_dim) if separate_depth_heads else self.scan_head
        self.snippet_head = projection_head(self.text.dim, embed_dim) if separate_depth_heads else self.text_head
        self.scale = LogitScale(*logit_init)

    @classmethod
    def from_config(cls, config: dict, load_window_weights: bool = True) -> "CTVLPModel":
        """``load_window_weights=False`` when a checkpoint will supply the trained window encoder."""
        spec = WindowEncoderSpec.from_config(config)
        window = None
        if spec.trainable:  # same seeded start as the frozen features; built first so the rest stays seeded alike
            start = spec if load_window_weights else replace(spec, weights=None)
            window = build_window_encoder(start, config["seed"]).requires_grad_(True)
        return cls(ScanEncoderSpec.from_config(config), TextEncoderSpec.from_config(config),
                   config["model"]["embed_dim"], config["model"]["separate_depth_heads"],
                   tuple(config["train"].get("logit_init", (2.302585, -10.0))), window)

    def encode_scans(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """(scan embeddings (B, E), depth-bin embeddings (B, max_bins, E))."""
        scan = self.grid.scan(batch["scan_tokens"], batch["scan_coords"], batch["scan_mask"])
        depth = self.grid.depth(batch["depth_tokens"], batch["depth_coords"], batch["depth_mask"],
                                int(batch["n_bins"].max()))
        return self.scan_head(scan), self.depth_head(depth)

    def encode_reports(self, texts: list[str]) -> torch.Tensor:
        return self.text_head(self.text(texts))

    def encode_snippets(self, texts: list[str]) -> torch.Tensor:
        return self.snippet_head(self.text(texts))

    def encode_prompts(self, prompts: dict[str, list[list[str]]]) -> tuple[torch.Tensor, torch.Tensor]:
        """Positive and negative prompt embeddings per label, averaged over templates: (L, E) each."""
        out = []
        for polarity in ("positive", "negative"):
            per_label = prompts[polarity]
            flat = [p for group in per_label for p in group]
            emb = self.text_head(self.text(flat))
            sizes = [len(group) for group in per_label]
            out.append(torch.stack([chunk.mean(dim=0) for chunk in emb.split(sizes)]))
        return out[0], out[1]

    def trainable_state(self) -> dict[str, torch.Tensor]:
        """Only what training changes or derives (heads, scan encoder, LoRA, feature statistics):
        small and safetensors-friendly; the frozen text backbone is reloaded from its own path."""
        names = {n for n, p in self.named_parameters() if p.requires_grad}
        names |= {n for n, _ in self.named_buffers() if n.startswith("grid.")}
        return {n: t.detach().contiguous() for n, t in self.state_dict().items() if n in names}
