"""Collapse diagnostics of embeddings: how spread out and how many-dimensional they are."""

from __future__ import annotations

import torch

# A principal direction counts towards `rank_abs` when its std is at least this fraction of
# the unit scale that SIGReg (and VICReg's variance hinge) hold the embeddings at.
RANK_FLOOR = 0.01


def collapse_stats(emb: torch.Tensor) -> dict:
    """Collapse diagnostics of embeddings (N, D): per-dimension std (min, mean); the effective
    rank exp(entropy of the normalised singular values) of the centred matrix, which is
    scale-free; and `rank_abs`, the number of principal directions whose std is at least
    RANK_FLOOR. Both ranks are needed: an unregularised model shrinks its embeddings towards
    a point (std -> 0, so rank_abs -> 0) while the shape of the tiny residual spread, which is
    all the scale-free rank sees, can stay high-dimensional."""
    emb = emb.double()
    std = emb.std(dim=0)
    s = torch.linalg.svdvals(emb - emb.mean(0))
    p = s / s.sum().clamp_min(1e-12)
    entropy = -(p * torch.log(p.clamp_min(1e-30))).sum()
    principal_std = s / max(1, len(emb) - 1) ** 0.5
    return {"std_min": float(std.min()), "std_mean": float(std.mean()),
            "effective_rank": float(torch.exp(entropy)),
            "rank_abs": int((principal_std >= RANK_FLOOR).sum())}
