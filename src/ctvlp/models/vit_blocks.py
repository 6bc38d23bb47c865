"""The transformer block both SPECTRE encoders share (window backbone and feature combiner).

Module and parameter names follow SPECTRE's state dicts (``norm1``, ``attn.q``, ``attn.kv``,
``attn.proj``, ``ls1.gamma``, ``norm2``, ``mlp.fc1``, ``mlp.fc2``, ``ls2.gamma``) so released weights
load by name, without a renaming table.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ctvlp.models.rope import AxialRope3D, apply_rope

LN_EPS = 1e-5  # SPECTRE's ViT builders pass nn.LayerNorm (eps 1e-5), not timm's 1e-6 default


def set_layer_norm_eps(module: nn.Module, eps: float) -> None:
    """Every LayerNorm of ``module`` with ``eps``: RadFinder's modules use 1e-6 where SPECTRE's use 1e-5 (the
    weights are the same; ``model.layer_norm_eps`` of a run built from RadFinder's release says so)."""
    for m in module.modules():
        if isinstance(m, nn.LayerNorm):
            m.eps = float(eps)


class LayerScale(nn.Module):
    def __init__(self, dim: int, init_value: float = 1.0):
        super().__init__()
        self.gamma = nn.Parameter(torch.full((dim,), float(init_value)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()  # exact (erf) GELU, as SPECTRE
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, key_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Scaled dot-product attention (scale head_dim^-0.5) of (B, H, N, d) tensors; key_mask (B, N) True = attended.

    Why the padding: SPECTRE's ViT-L and the combiner have 1080 / 12 = 90-dimensional heads and always pass a
    key mask, and CUDA's efficient SDPA kernels need a head dim that is a multiple of 8; otherwise SDPA falls
    back to the math kernel, which stores the (B, H, N, N) probabilities in float32 (gigabytes at paper
    sizes). Zero columns appended to q and k add nothing to q.k, and those of v give output columns that are
    dropped, so with the original scale the result equals the unpadded one (the tests check 1e-6)."""
    d = q.shape[-1]
    mask = None if key_mask is None else key_mask[:, None, None, :]
    pad = -d % 8
    if pad:
        q, k, v = (F.pad(t, (0, pad)) for t in (q, k, v))
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=d ** -0.5)
    return out[..., :d] if pad else out


class Attention(nn.Module):
    """Multi-head self-attention with separate ``q`` and ``kv`` projections (kv output split k then v)."""

    def __init__(self, dim: int, heads: int, qkv_bias: bool = True):
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim {dim} is not divisible by {heads} heads")
        self.heads, self.head_dim = heads, dim // heads
        self.q = nn.Linear(dim, dim, bias=qkv_bias)
        self.kv = nn.Linear(dim, 2 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor] | None = None,
                key_mask: torch.Tensor | None = None) -> torch.Tensor:
        """x (B, N, dim); rope (sin, cos) for the last tokens; key_mask (B, N) True = may be attended to."""
        b, n, _ = x.shape
        q = self.q(x).reshape(b, n, self.heads, self.head_dim).transpose(1, 2)
        k, v = self.kv(x).reshape(b, n, 2, self.heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        if rope is not None:
            q, k = apply_rope(q, *rope), apply_rope(k, *rope)
        out = attention(q, k, v, key_mask)
        return self.proj(out.transpose(1, 2).reshape(b, n, -1))


class Block(nn.Module):
    """Pre-norm block with LayerScale: x + g1 * Attn(LN1 x), then x + g2 * MLP(LN2 x)."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float = 4.0, init_value: float = 1.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=LN_EPS)
        self.attn = Attention(dim, heads)
        self.ls1 = LayerScale(dim, init_value)
        self.norm2 = nn.LayerNorm(dim, eps=LN_EPS)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.ls2 = LayerScale(dim, init_value)

    def forward(self, x: torch.Tensor, rope=None, key_mask: torch.Tensor | None = None) -> torch.Tensor:
        x = x + self.ls1(self.attn(self.norm1(x), rope, key_mask))
        return x + self.ls2(self.mlp(self.norm2(x)))


def init_like_spectre(module: nn.Module) -> None:
    """Random init as SPECTRE's (truncated normal 0.02 for linear weights, zero bias, a CLS token ~ N(0, 1e-6)),
    for every SPECTRE-style module (encoders, the MAE decoder)."""
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    if isinstance(getattr(module, "cls_token", None), nn.Parameter):
        nn.init.normal_(module.cls_token, std=1e-6)


class ClsTransformer(nn.Module):
    """The body both SPECTRE encoders share, under SPECTRE's key names: ``cls_token``, ``rope.periods``,
    ``blocks.i.*`` and the final ``norm``. Subclasses add their token embedding and call ``encode``."""

    def __init__(self, dim: int, depth: int, heads: int, mlp_ratio: float, rope_base: float):
        super().__init__()
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.rope = AxialRope3D(dim // heads, rope_base)
        self.blocks = nn.ModuleList(Block(dim, heads, mlp_ratio) for _ in range(depth))
        self.norm = nn.LayerNorm(dim, eps=LN_EPS)

    def init_like_spectre(self) -> None:
        """Random init as SPECTRE's: the demo's start (see ``init_like_spectre``)."""
        init_like_spectre(self)

    def encode(self, tokens: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor],
               mask: torch.Tensor | None = None) -> torch.Tensor:
        """tokens (B, N, dim) -> final-norm [CLS; tokens] (B, 1 + N, dim); ``mask`` (B, N) False = never attended."""
        x = torch.cat([self.cls_token.expand(len(tokens), -1, -1).to(tokens.dtype), tokens], dim=1)
        key_mask = None if mask is None else torch.cat([torch.ones_like(mask[:, :1]), mask], dim=1)
        for block in self.blocks:
            x = block(x, rope, key_mask)
        return self.norm(x)
