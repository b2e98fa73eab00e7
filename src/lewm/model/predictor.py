"""The action-conditioned causal predictor (docs/design.md §1.2; arXiv 2603.19312 §3.1, App. D).

A transformer over the last `history` frame embeddings. Each token is conditioned on its
frame's action embedding through AdaLN-zero: the conditioning MLP starts at zero, so every
block starts as the identity.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from lewm.model.config import ModelConfig


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return x * (1 + scale) + shift


class CausalAttention(nn.Module):
    """LayerNorm -> q/k/v (no bias) -> causal attention -> output projection -> dropout."""

    def __init__(self, dim: int, heads: int, head_dim: int, dropout: float):
        super().__init__()
        self.heads, self.head_dim = heads, head_dim
        self.norm = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * heads * head_dim, bias=False)
        self.out = nn.Linear(heads * head_dim, dim)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, T, C) -> (B, T, C): token t attends to tokens <= t. (The fast paths planning
        uses, all equal to this: lewm.planning.fast.)"""
        B, T, _ = x.shape
        q, k, v = self.qkv(self.norm(x)).view(B, T, 3, self.heads, self.head_dim).unbind(2)
        q, k, v = (t.transpose(1, 2) for t in (q, k, v))  # (B, nh, T, hs)
        p = self.drop.p if self.training else 0.0
        # Causal at every length (one token's mask masks nothing): a rule that does not
        # branch on T, so graph exporters can keep the window dynamic.
        a = F.scaled_dot_product_attention(q, k, v, is_causal=True, dropout_p=p)
        return self.drop(self.out(a.transpose(1, 2).reshape(B, T, -1)))  # (B, T, C)


class MLP(nn.Module):
    """LayerNorm -> Linear -> GELU -> dropout -> Linear -> dropout."""

    def __init__(self, dim: int, hidden: int, dropout: float):
        super().__init__()
        self.net = nn.Sequential(
            nn.LayerNorm(dim), nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(dropout),
            nn.Linear(hidden, dim), nn.Dropout(dropout),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class AdaLNBlock(nn.Module):
    """x + gate1 * Attn(modulate(LN(x))), then x + gate2 * MLP(modulate(LN(x))), with shift,
    scale and gate per token from its action embedding."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        dim = cfg.embed_dim
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.attn = CausalAttention(dim, cfg.pred_heads, cfg.pred_head_dim, cfg.dropout)
        self.norm2 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.mlp = MLP(dim, cfg.pred_mlp, cfg.dropout)
        self.ada = nn.Sequential(nn.SiLU(), nn.Linear(dim, 6 * dim))
        nn.init.zeros_(self.ada[1].weight)  # AdaLN-zero: the block starts as the identity
        nn.init.zeros_(self.ada[1].bias)

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        shift1, scale1, gate1, shift2, scale2, gate2 = self.ada(c).chunk(6, dim=-1)  # (B, T, C)
        x = x + gate1 * self.attn(modulate(self.norm1(x), shift1, scale1))
        return x + gate2 * self.mlp(modulate(self.norm2(x), shift2, scale2))


class Predictor(nn.Module):
    """Maps embeddings (B, T, D) and action embeddings (B, T, D), T <= history, to outputs
    (B, T, D): output t may only look at tokens <= t."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.pos = nn.Parameter(torch.zeros(1, cfg.history, cfg.embed_dim))
        if cfg.pred_pos_init == "normal":
            nn.init.normal_(self.pos)  # the authors' torch.randn
        else:
            nn.init.trunc_normal_(self.pos, std=0.02)
        self.blocks = nn.ModuleList(AdaLNBlock(cfg) for _ in range(cfg.pred_depth))
        self.norm = nn.LayerNorm(cfg.embed_dim)

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        T = x.shape[1]
        if T > self.pos.shape[1]:
            raise ValueError(f"predictor got {T} tokens, more than its history {self.pos.shape[1]}")
        x = x + self.pos[:, :T]
        for block in self.blocks:
            x = block(x, c)
        return self.norm(x)
