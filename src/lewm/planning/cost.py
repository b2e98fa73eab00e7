"""The latent cost of candidate action sequences (docs/design.md §1.4; arXiv 2603.19312
Eq. 4): roll each candidate out through the model from the context and measure how far its
predictions end from the goal embedding."""

from __future__ import annotations

import torch

from lewm.planning.config import CostConfig, RuntimeConfig
from lewm.planning.ensemble import Ensemble
from lewm.planning.fast import compiled_rollout, keep_freed_memory, rollout_of


def member_dims(model, embed_dim: int) -> list[int]:
    """The parts of the model's `embed_dim`-wide embedding that are distances of their own:
    an ensemble's members (their latent spaces are not aligned, so never mixed in one
    distance), else the whole."""
    return list(model.dims) if isinstance(model, Ensemble) else [embed_dim]


def latent_cost(model, context_emb, context_act, goal_emb, cost: CostConfig | None = None,
                runtime: RuntimeConfig | None = None, chunk: int | None = None):
    """cost(candidates (b, S, H, blk)) -> (b, S): squared L2 between the last predicted
    embedding and the goal embedding (cost "final"); averaged over all H predictions
    ("path"), or with weights 1, ..., H ("ramp").

    context_emb (b, h, D), context_act (b, h - 1, blk) or None, goal_emb (b, D).
    An ensemble costs the sum of its members' distances, plus `cost.disagreement` times the
    number of members times the std of their costs.
    All b * S rollouts go through the model together; on a CPU in chunks of `chunk` rows
    (default 4096 there, none on accelerators): one huge batch spills the caches.
    """
    cost, runtime = cost or CostConfig(), runtime or RuntimeConfig()
    on_cpu = torch.device(model.device).type == "cpu"
    if chunk is None:
        chunk = 4096 if on_cpu else 1 << 30
    if on_cpu:
        keep_freed_memory()
    rollout = compiled_rollout(model) if runtime.compile else rollout_of(model)
    parts = member_dims(model, goal_emb.shape[-1])
    reduce, weight = cost.cost, cost.disagreement

    def evaluate(cand: torch.Tensor) -> torch.Tensor:
        b, S = cand.shape[:2]
        rep = lambda x: x.unsqueeze(1).expand(b, S, *x.shape[1:]).reshape(b * S, *x.shape[1:])
        ctx, goal = rep(context_emb), rep(goal_emb)
        ctx_act = rep(context_act) if context_act is not None else None
        flat = cand.flatten(0, 1)  # (b*S, H, blk)
        if reduce == "ramp":  # block k of H weighs k / (1 + ... + H)
            ramp = torch.arange(1, cand.shape[2] + 1, device=cand.device, dtype=torch.float32)
            ramp /= ramp.sum()
        out = []
        device_type = torch.device(model.device).type
        with torch.autocast(device_type, torch.bfloat16, enabled=runtime.precision == "bf16"):
            for i in range(0, b * S, chunk):
                part = slice(i, i + chunk)
                acts = ctx_act[part] if ctx_act is not None else None
                # Compiled on CUDA, `pred` may live in a CUDA graph's output buffer, which the
                # next call overwrites: it is reduced to costs before then.
                pred = rollout(ctx[part], acts, flat[part])  # (n, H, D)
                pred = pred[:, -1:] if reduce == "final" else pred
                sq = (pred.float() - goal[part, None]) ** 2  # (n, 1 or H, D)
                dist = torch.stack([d.sum(-1) for d in sq.split(parts, -1)], -1)  # (n, ., M)
                per_member = (torch.einsum("nhm,h->nm", dist, ramp) if reduce == "ramp"
                              else dist.mean(1))  # (n, M)
                total = per_member.sum(-1)
                if weight and len(parts) > 1:
                    total = total + weight * len(parts) * per_member.std(-1, correction=0)
                out.append(total)
        return torch.cat(out).view(b, S)

    return evaluate
