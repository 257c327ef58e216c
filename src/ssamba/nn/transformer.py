"""Pre-norm ViT block of the SSAST encoder (the timm 0.4.5 DeiT block the official code uses).

Parameter names match timm: ``norm1``, ``attn.qkv``, ``attn.proj``, ``norm2``, ``mlp.fc1``, ``mlp.fc2``.
Attention is either ``"naive"`` (explicit softmax(QK^T / sqrt(d)) V, as timm computes it) or
``"sdpa"`` (``F.scaled_dot_product_attention``: same maths, fused and memory-efficient).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ssamba.nn.droppath import DropPath

ATTENTION_IMPLS = ("naive", "sdpa")


class Attention(nn.Module):
    """Multi-head self-attention with a fused qkv projection."""

    def __init__(self, dim: int, num_heads: int, impl: str = "sdpa") -> None:
        super().__init__()
        if impl not in ATTENTION_IMPLS:
            raise ValueError(f"attention={impl!r}: must be one of {ATTENTION_IMPLS}")
        self.num_heads, self.impl = num_heads, impl
        self.scale = (dim // num_heads) ** -0.5
        self.qkv = nn.Linear(dim, dim * 3, bias=True)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, keys: torch.Tensor | None = None) -> torch.Tensor:
        """(B, L, D) -> (B, L, D); ``keys`` (B, L) bool: the positions each query may attend to
        (a key padding mask: False at a clip's padding), all when None."""
        batch, length, dim = x.shape
        qkv = self.qkv(x).reshape(batch, length, 3, self.num_heads, dim // self.num_heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]                         # (B, H, L, d)
        allowed = None if keys is None else keys[:, None, None, :]  # (B, 1, 1, L)
        if self.impl == "sdpa":
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed)
        else:
            scores = (q @ k.transpose(-2, -1)) * self.scale
            if allowed is not None:
                scores = scores.masked_fill(~allowed, float("-inf"))
            attn = scores.softmax(dim=-1)
            out = attn @ v
        return self.proj(out.transpose(1, 2).reshape(batch, length, dim))


class Mlp(nn.Module):
    """fc1 -> GELU (exact) -> fc2."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class TransformerBlock(nn.Module):
    """x + drop_path(attn(norm1(x))), then x + drop_path(mlp(norm2(x)))."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, norm_eps: float = 1e-6,
                 drop_path: float = 0.0, attention: str = "sdpa") -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=norm_eps)
        self.attn = Attention(dim, num_heads, attention)
        self.norm2 = nn.LayerNorm(dim, eps=norm_eps)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.drop_path = DropPath(drop_path)

    def forward(self, x: torch.Tensor, keys: torch.Tensor | None = None) -> torch.Tensor:
        """``keys``: the key padding mask of ``Attention.forward``."""
        x = x + self.drop_path(self.attn(self.norm1(x), keys))
        return x + self.drop_path(self.mlp(self.norm2(x)))
