"""The planner interface: what every planner (CEM, the graph planner, a learned actor, ...)
is to the MPC loop (`lewm.planning.mpc.run_mpc`).

A planner is built once per evaluation from a PlanConfig, a model (anything with `encode`,
`rollout`, `cfg`, `card`, `device`; an ensemble is such a model) and a `PlanSetup`, then
asked, at every re-plan, for the next action blocks of a batch of episodes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import torch

if TYPE_CHECKING:
    from lewm.planning.config import PlanConfig


@dataclass(frozen=True)
class PlanSetup:
    """What a planner needs beyond its config and model."""

    low: torch.Tensor
    """(blk,) the env's action box, z-scored as the model's action blocks"""
    high: torch.Tensor
    """(blk,) its upper corner"""
    seed: int = 0
    """seed of the planner's noise: with an episode's index it fixes that episode's draws"""
    data_path: str | None = None
    """the run's training episodes, for planners that build on them (the graph planner)"""
    run_dir: str | None = None
    """the run directory, for planners that read what was trained into it (the actor)"""


@dataclass
class PlanRequest:
    """One re-plan of b episodes."""

    episodes: list[int]
    """each episode's index in the whole evaluation (seeds its noise; keys its state)"""
    context: torch.Tensor
    """(b, h, D) embeddings of the last h frames, the current one last"""
    context_actions: torch.Tensor | None
    """(b, h - 1, blk) the z-scored blocks executed between them (None when h = 1)"""
    goal: torch.Tensor
    """(b, D) the goal embeddings"""
    horizon: int
    """action blocks to plan"""
    carried: torch.Tensor | None = None
    """(b, k, blk), k <= horizon: the leading blocks taken over from the plan being executed
    (the MPC loop's carry-over policy), or None to plan afresh"""


@dataclass
class Plan:
    blocks: torch.Tensor
    """(b, horizon, blk) z-scored action blocks, to execute from the current frame"""
    target: torch.Tensor
    """(b, D) the embeddings the plan aims at: the goal, or a subgoal on the way"""
    target_frames: list | None = None
    """per episode, an image of the target (None: the goal image), for the eval GIFs"""


class Planner(Protocol):
    """Built as `Planner(cfg, model, setup)`: a PlanConfig (its own part of it, and `mpc`,
    which the MPC loop reads from `planner.cfg`), a model and a PlanSetup. It may also
    have `report() -> dict`, merged into eval.json (e.g. the graph planner's graph)."""

    cfg: PlanConfig

    def __init__(self, cfg: PlanConfig, model, setup: PlanSetup): ...

    def plan(self, request: PlanRequest) -> Plan:
        """The next `request.horizon` action blocks of each episode in the request."""
        ...
