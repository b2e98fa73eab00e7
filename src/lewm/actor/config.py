"""The actor's settings. Imports nothing heavy: the CLI builds `lewm train-actor`'s flags
from it."""

from __future__ import annotations

from dataclasses import dataclass

from lewm.errors import LewmError
from lewm.validate import check_numbers

MIN_STEPS = 4
"""the shortest schedule: a warm-up step or two, then the decay"""


@dataclass(frozen=True)
class ActorConfig:
    hidden: int = 512
    """width of the network's hidden layers"""
    depth: int = 3
    """hidden layers"""
    steps: int = 6000
    """optimiser steps"""
    batch_size: int = 512
    """training pairs per step"""
    lr: float = 1e-3
    """peak learning rate (one-cycle schedule, AdamW)"""
    weight_decay: float = 1e-4
    """AdamW's"""
    max_offset: int = 60
    """env steps from a frame to its hindsight goal, at most (the protocol's goals are 25
    ahead; longer ones teach the way to goals beyond them)"""
    drop_motion: float = 0.2
    """fraction of training pairs shown without the previous frame (as at an episode's first
    decision, or when the planner is given one frame of context)"""
    loss: str = "mse"
    """mse: the squared error of the z-scored block (a deterministic actor); gaussian: the
    negative log-likelihood of a diagonal Gaussian whose mean it acts with (as INTACT)"""
    consistency: float = 0.0
    """weight of a term through the frozen world model: the squared distance between the
    embedding the predictor expects after the actor's block and the one the data reached
    after its own (0: none)"""
    seed: int = 0
    """seed of the network's initialisation and of the pairs drawn"""
    threads: int = 0
    """CPU threads for torch (0: torch's default)"""

    def __post_init__(self):
        for name in ("hidden", "depth", "steps", "batch_size", "max_offset"):
            if getattr(self, name) < 1:
                raise LewmError(f"actor {name} must be >= 1, got {getattr(self, name)}")
        if self.steps < MIN_STEPS:
            raise LewmError(f"actor steps must be >= {MIN_STEPS} (a warm-up, then the "
                            f"decay), got {self.steps}")
        if not self.lr > 0 or self.weight_decay < 0:
            raise LewmError(f"actor lr must be > 0 and weight_decay >= 0, got {self.lr}, "
                            f"{self.weight_decay}")
        if not 0 <= self.drop_motion <= 1:
            raise LewmError(f"actor drop_motion must be a fraction in [0, 1], got "
                            f"{self.drop_motion}")
        if self.loss not in ("mse", "gaussian"):
            raise LewmError(f"actor loss must be mse or gaussian, got {self.loss!r}")
        if not self.consistency >= 0:
            raise LewmError(f"actor consistency weight must be >= 0, got {self.consistency}")
        if self.threads < 0:
            raise LewmError(f"--threads must be >= 0, got {self.threads}")
        check_numbers(self)  # what the checks above leave: NaN, inf


def run_actor_config(meta: dict) -> ActorConfig:
    """The actor settings a run's recipe gave it (its config.json's "actor" section), or the
    defaults for runs made without a recipe or before recipes had them."""
    import dataclasses

    recorded = meta.get("actor")
    if recorded is None:
        return ActorConfig()
    known = {f.name for f in dataclasses.fields(ActorConfig)}
    if unknown := sorted(set(recorded) - known):
        raise LewmError(f"the run's actor settings name {', '.join(unknown)}, unknown to this "
                        "version of lewm")
    return ActorConfig(**recorded)
