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

KV = tuple[torch.Tensor, torch.Tensor]  # one block's keys and values (B, heads, T, head_dim)


# Planning attends over at most `history` (3) tokens: there a fused attention kernel costs
# more to set up than the few dot products it computes (on a CPU, a quarter of a compiled
# plan's time), while the same products written out are element-wise work that
# torch.compile fuses. Run eagerly they are not fused, and materialise (rows, heads, Tq, Tk,
# head_dim) products: slower than the kernel for the paper model, so eager code keeps it.
SHORT_WINDOW = 8


def short_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                    causal: bool) -> torch.Tensor:
    """Softmax attention written out for a few keys: q (B, nh, Tq, hs), k and v (B, nh, Tk,
    hs) -> (B, nh, Tq, hs). With `causal`, query i (the queries being the last Tq tokens)
    sees keys j <= i + Tk - Tq, as scaled_dot_product_attention's is_causal with Tq = Tk."""
    Tq, Tk = q.shape[2], k.shape[2]
    s = (q.unsqueeze(3) * k.unsqueeze(2)).sum(-1) * q.shape[-1] ** -0.5  # (B, nh, Tq, Tk)
    if causal:
        i = torch.arange(Tq, device=q.device)[:, None] + (Tk - Tq)
        s = s.masked_fill(torch.arange(Tk, device=q.device)[None, :] > i, float("-inf"))
    w = s.softmax(-1)
    return (w.unsqueeze(-1) * v.unsqueeze(2)).sum(3)  # (B, nh, Tq, hs)


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

    def forward(self, x: torch.Tensor, past: KV | None = None,
                last_only: bool = False) -> tuple[torch.Tensor, KV]:
        """x (B, T, C) -> (output (B, T, C), or (B, 1, C) for the last token alone when
        `last_only`; the keys and values of every token so far, for a cache).

        past: keys and values (B, nh, P, hs) of the P tokens before x; then x must be a single
        token, which may attend to all of them (the causal mask is then all-ones).
        """
        B, T, _ = x.shape
        if past is None and T == 1 and not (self.training and self.drop.p > 0):
            # One token attending to itself alone: its softmax weight is exactly 1, so the
            # output is its value, and its query is never needed (a history-1 model's
            # rollout is nothing but such windows). Keys are kept for a cache.
            hd = self.heads * self.head_dim
            k, v = F.linear(self.norm(x), self.qkv.weight[hd:]).view(
                B, 1, 2, self.heads, self.head_dim).unbind(2)
            out = self.drop(self.out(v.reshape(B, 1, hd)))  # (B, 1, C)
            return out, (k.transpose(1, 2), v.transpose(1, 2))
        q, k, v = self.qkv(self.norm(x)).view(B, T, 3, self.heads, self.head_dim).unbind(2)
        q, k, v = (t.transpose(1, 2) for t in (q, k, v))  # (B, nh, T, hs)
        if past is not None:
            if T != 1:
                raise ValueError(f"attention with a cache takes one new token, got {T}")
            k, v = torch.cat([past[0], k], 2), torch.cat([past[1], v], 2)
        if last_only:
            q = q[:, :, -1:]  # the last token sees every key: no mask needed
        causal = q.shape[2] > 1
        if torch.compiler.is_compiling() and not self.training and k.shape[2] <= SHORT_WINDOW:
            a = short_attention(q, k, v, causal)
        else:
            p = self.drop.p if self.training else 0.0
            a = F.scaled_dot_product_attention(q, k, v, is_causal=causal, dropout_p=p)
        # a: (B, nh, Tq, hs)
        out = self.drop(self.out(a.transpose(1, 2).reshape(B, q.shape[2], -1)))  # (B, Tq, C)
        return out, (k, v)


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

    def forward(self, x: torch.Tensor, c: torch.Tensor | None, past: KV | None = None,
                last_only: bool = False, mod: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, KV]:
        """See `CausalAttention.forward`: with `last_only` only the last token's output is
        computed (B, 1, C), which is all the last block of a rollout step needs.

        mod: this block's `ada(c)` (B, T, 6C), when the caller computed it already (a
        rollout computes it once per action block instead of once per window it sits in)."""
        mod = self.ada(c) if mod is None else mod
        shift1, scale1, gate1, shift2, scale2, gate2 = mod.chunk(6, dim=-1)  # (B, T, C)
        h, kv = self.attn(modulate(self.norm1(x), shift1, scale1), past, last_only)
        if last_only:
            x, gate1, shift2, scale2, gate2 = (t[:, -1:] for t in (x, gate1, shift2, scale2, gate2))
        x = x + gate1 * h
        return x + gate2 * self.mlp(modulate(self.norm2(x), shift2, scale2)), kv


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
        return self.forward_cached(x, c)[0]

    def forward_cached(self, x: torch.Tensor, c: torch.Tensor | None,
                       past: list[KV] | None = None, last_only: bool = False,
                       mods: list[torch.Tensor] | None = None
                       ) -> tuple[torch.Tensor, list[KV]]:
        """`forward` for planning: (outputs, each block's keys and values so far).

        past: the cache returned by the previous call on the same sequence, whose tokens sat
        at positions 0..P-1; x is then the one token at position P. Exact only while the
        sequence grows from position 0: once a window slides, every token's position
        embedding changes and the cache no longer applies.
        last_only: compute the last token's output alone, (B, 1, D).
        mods: each block's modulation of x's tokens, `modulations(c)` sliced to them, in
        place of c.
        """
        start = 0 if past is None else past[0][0].shape[2]
        T = start + x.shape[1]
        if T > self.pos.shape[1]:
            raise ValueError(f"predictor got {T} tokens, more than its history {self.pos.shape[1]}")
        x = x + self.pos[:, start:T]  # (B, T - start, D)
        cache = []
        for i, block in enumerate(self.blocks):
            last = last_only and i == len(self.blocks) - 1
            x, kv = block(x, c, None if past is None else past[i], last,
                          None if mods is None else mods[i])
            cache.append(kv)
        return self.norm(x), cache

    def modulations(self, c: torch.Tensor) -> list[torch.Tensor]:
        """Each block's AdaLN modulation (B, T, 6D) of action embeddings c (B, T, D): a
        token's modulation depends on its action alone, not on its position or window."""
        return [block.ada(c) for block in self.blocks]
