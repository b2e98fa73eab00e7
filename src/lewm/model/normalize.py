"""z-scoring of actions (and other low-dimensional columns), one definition for the data
pipeline, the planner and the surprise study (docs/design.md §1.3)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ZScore:
    """Per-dimension mean and std of a column, fitted on the training episodes."""

    mean: np.ndarray
    """(A,) mean per dimension"""
    std: np.ndarray
    """(A,) std per dimension (1 where a dimension is constant)"""

    @classmethod
    def from_dict(cls, entry: dict) -> ZScore:
        """From one stats.json entry, {"mean": [...], "std": [...]}."""
        mean = np.asarray(entry["mean"], np.float32)
        std = np.asarray(entry["std"], np.float32)
        if mean.ndim != 1 or mean.shape != std.shape or not (std > 0).all():
            raise ValueError(f"mean {mean.shape} and std {std.shape} must be matching vectors "
                             "with std > 0")
        return cls(mean, std)

    @classmethod
    def per_column(cls, stats: dict) -> dict[str, ZScore]:
        """Every column of a stats.json dictionary."""
        return {name: cls.from_dict(entry) for name, entry in stats.items()}

    @classmethod
    def of(cls, stats: dict, column: str = "action") -> ZScore:
        """The statistics of `column` from a stats.json dictionary."""
        return cls.from_dict(stats[column])

    def blocks(self, frameskip: int) -> ZScore:
        """The statistics of action blocks: `frameskip` actions concatenated, (fs * A,)."""
        return ZScore(np.tile(self.mean, frameskip), np.tile(self.std, frameskip))

    def to_z(self, x):
        """Raw values (..., A) -> z-scores (numpy arrays or torch tensors)."""
        return (x - _like(self.mean, x)) / _like(self.std, x)

    def from_z(self, z):
        """z-scores (..., A) -> raw values (numpy arrays or torch tensors)."""
        return z * _like(self.std, z) + _like(self.mean, z)


def _like(a: np.ndarray, x):
    if isinstance(x, np.ndarray):
        return a
    import torch

    return torch.as_tensor(a, dtype=x.dtype, device=x.device)
