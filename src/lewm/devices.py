"""Which torch device a command runs on (one rule for training, planning and analysis), and
the data-parallel context under torchrun."""

from __future__ import annotations

import os
from dataclasses import dataclass

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


@dataclass
class Dist:
    """Data-parallel context (a single process when not launched by torchrun)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    def any(self, flag: bool, device) -> bool:
        """Whether `flag` is set on any rank (on one process, `flag`): a signal that reaches
        one rank stops them all at the same step, so none waits forever in a collective."""
        if self.world == 1:
            return flag
        import torch
        import torch.distributed as dist

        t = torch.tensor([int(flag)], device=device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return bool(t.item())

    @classmethod
    def from_env(cls, device_kind: str) -> Dist:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world == 1:
            return cls()
        import torch.distributed as dist

        if not dist.is_initialized():
            dist.init_process_group("nccl" if device_kind == "cuda" else "gloo")
        return cls(dist.get_rank(), world, int(os.environ.get("LOCAL_RANK", "0")))
