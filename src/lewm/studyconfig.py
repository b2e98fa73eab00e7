"""Settings of the studies of a trained run's latent space (`lewm probe`, `lewm surprise`,
`lewm decode`). Imports nothing heavy: the CLI builds its flags from them."""

from __future__ import annotations

from dataclasses import dataclass

from lewm.errors import LewmError
from lewm.validate import check_numbers


@dataclass(frozen=True)
class ProbeConfig:
    rows: int = 20_000
    """frames per split (train, test), at most"""
    seed: int = 0
    """seed of the frame draw and of the MLP probes"""

    def __post_init__(self):
        if self.rows < 2:
            raise LewmError(f"--rows must be >= 2, got {self.rows}")
        check_numbers(self)  # what the checks above leave: NaN, inf


@dataclass(frozen=True)
class SurpriseConfig:
    trajectories: int = 64
    """trajectories, each perturbed once mid-way (and replayed unperturbed)"""
    blocks: int = 12
    """action blocks per trajectory"""
    seed: int = 0
    """seed of the start states, actions and events"""

    def __post_init__(self):
        if self.trajectories < 2 or self.blocks < 4:
            raise LewmError(f"--trajectories must be >= 2 and --blocks >= 4, got "
                            f"{self.trajectories} and {self.blocks}")
        check_numbers(self)  # what the checks above leave: NaN, inf


@dataclass(frozen=True)
class DecodeConfig:
    steps: int = 2000
    """optimisation steps of the decoder"""
    batch_size: int = 64
    """frames per step"""
    lr: float = 2e-3
    """AdamW peak learning rate (cosine decay)"""
    channels: tuple[int, ...] = (64, 32, 16, 8)
    """channels of each x2 upsampling stage, coarse to fine"""
    frames: int = 20_000
    """training frames drawn from the run's training episodes (fewer at large sizes, to
    keep them under 1 GB)"""
    test_frames: int = 2000
    """held-out frames scored"""
    rollout_blocks: int = 16
    """action blocks of the imagined rollout in the GIF"""
    seed: int = 0
    """seed of the frame draw, the decoder's initialisation and its batches"""

    def __post_init__(self):
        for name in ("steps", "batch_size", "frames", "test_frames", "rollout_blocks"):
            if getattr(self, name) < 1:
                raise LewmError(f"--{name.replace('_', '-')} must be >= 1, got "
                                f"{getattr(self, name)}")
        if not self.lr > 0:
            raise LewmError(f"--lr must be > 0, got {self.lr}")
        if not self.channels or min(self.channels) < 1:
            raise LewmError(f"decoder channels must be positive, got {self.channels}")
        check_numbers(self)  # what the checks above leave: NaN, inf
