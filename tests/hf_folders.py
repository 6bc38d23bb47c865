"""Hugging Face model folders for tests: a tiny Qwen3 text tower saved the way Qwen3-Embedding is published.

Why bf16: Qwen3-Embedding's safetensors hold bfloat16 tensors and transformers 5 loads a checkpoint in its
own dtype unless asked otherwise, so a tower built in float32 in a test never shows what the real
files do (a bf16 tower under float32 heads). ``tiny_qwen3_folder`` writes **bf16** safetensors with a
Qwen3 config and a word-level tokenizer that appends an end-of-text token (as Qwen3-Embedding's
does, which last-token pooling reads). Used by the bf16 tests (tests/test_gpu_dtype.py) and the paper
journey test.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

# Qwen3 at toy size: 2 layers, 64-d, grouped-query attention as the real model (16 q / 8 kv heads there).
TINY_QWEN3 = dict(vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, head_dim=16, max_position_embeddings=2048,
                  tie_word_embeddings=False)
# Qwen3-Embedding-0.6B's architecture (its config.json): benchmarks/bench_gpu.py builds a random tower of it.
QWEN3_EMBEDDING_06B = dict(vocab_size=151669, hidden_size=1024, intermediate_size=3072, num_hidden_layers=28,
                           num_attention_heads=16, num_key_value_heads=8, head_dim=128, max_position_embeddings=32768,
                           tie_word_embeddings=True, rope_theta=1000000.0)
EOS = "<|endoftext|>"


def tiny_qwen3_folder(folder: str | Path, seed: int = 0, dtype: torch.dtype = torch.bfloat16,
                      vocab: list[str] | None = None, arch: dict | None = None) -> Path:
    """Write a tiny random Qwen3 model (``Qwen3Model`` weights in ``dtype``, bf16 by default) and its tokenizer
    into ``folder``; returns the folder. ``vocab``: words the tokenizer knows (others map to the unknown token);
    by default lower-case words common in radiology reports and ``w0`` .. ``wN``. ``arch``: another Qwen3
    architecture (default ``TINY_QWEN3``; the benchmark passes ``QWEN3_EMBEDDING_06B``)."""
    arch = arch or TINY_QWEN3
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast, Qwen3Config, Qwen3Model

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    model = Qwen3Model(Qwen3Config(**arch)).to(dtype)
    model.save_pretrained(folder)  # safetensors, in the tensors' own dtype
    words = vocab or (["no", "mild", "small", "large", "left", "right", "lung", "nodule", "effusion", "pleural",
                       "lobe", "upper", "lower", "opacity", "there", "is", "a", "the", "of", "in", "and", "with"]
                      + [f"w{i}" for i in range(64)])
    specials = ["<unk>", "<pad>", EOS]
    table = {tok: i for i, tok in enumerate(specials + [w for w in dict.fromkeys(words) if w not in specials])}
    if len(table) > arch["vocab_size"]:
        raise ValueError(f"{len(table)} words exceed the model's vocabulary of {arch['vocab_size']}")
    tok = Tokenizer(models.WordLevel(table, unk_token="<unk>"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(single=f"$A {EOS}", special_tokens=[(EOS, table[EOS])])
    PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", pad_token="<pad>", eos_token=EOS,
                            padding_side="left").save_pretrained(folder)
    return folder


def saved_dtypes(folder: str | Path) -> set[str]:
    """The dtypes the folder's safetensors hold, read from the file header (what a user's download holds)."""
    out = set()
    for path in Path(folder).glob("*.safetensors"):
        raw = path.read_bytes()
        n = int.from_bytes(raw[:8], "little")
        header = json.loads(raw[8:8 + n])
        out |= {v["dtype"] for k, v in header.items() if k != "__metadata__"}
    return out
