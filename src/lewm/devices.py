"""Which torch device a command runs on: one rule for training, planning and analysis."""

from __future__ import annotations

import torch

from lewm.errors import LewmError


def resolve_device(name: str) -> torch.device:
    """auto (cuda, then mps, then cpu), cpu, cuda or mps -> a torch device, checked to exist."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise LewmError("device cuda requested but CUDA is not available")
    if name == "mps" and not torch.backends.mps.is_available():
        raise LewmError("device mps requested but MPS is not available")
    if name not in ("cpu", "cuda", "mps"):
        raise LewmError(f"device must be auto, cpu, cuda or mps, got {name!r}")
    return torch.device(name)
