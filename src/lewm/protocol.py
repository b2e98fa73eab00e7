"""The evaluation protocol's settings (docs/design.md §1.4). Imports nothing heavy: the CLI
builds its flags from it."""

from __future__ import annotations

from dataclasses import dataclass

from lewm.errors import LewmError
from lewm.validate import check_numbers


@dataclass(frozen=True)
class EvalConfig:
    episodes: int = 50
    """episodes evaluated"""
    offset: int = 25
    """env steps between a start row and its goal row (dataset goals)"""
    budget: int = 0
    """env steps allowed per episode (0: the goal set's: 50 for the paper's, the
    world's far_budget (lewm.worlds) for far goals, or a goal file's "budget")"""
    seed: int = 42
    """seed of the start-state draw (paper: 42), the planner and the random policy"""
    goals: str = "dataset"
    """dataset: the paper's, starts and goals `offset` steps apart in dataset rows; env:
    drawn by the environment; far: the world's long-horizon set (Two-Room: other room);
    or a .json file of (start, goal) state pairs"""
    manifest: str = ""
    """a previous evaluation's eval.json, or a goal-pairs file: its (start, goal) pairs are
    replayed exactly, in their order and with its budget, in place of drawing them (so that
    two planners or models are compared on the same episodes; --goals, --episodes and
    --offset then do not apply)"""
    start: str = "recorded"
    """recorded: each episode starts in its start state as drawn (the paper's); rest: with
    the state's velocities zeroed (Push-T's agent, Reacher's joints, Cube's arm and cube),
    which one frame cannot show the planner"""
    perturb: str = ""
    """NAME[:LEVEL]: show every frame, the goal's included, through a perturbed scene
    (lewm.perturb: colour, texture, distractors, hue, camera, noise, blur; LEVEL in
    (0, 1]), drawn per episode from the seed; the state and success are untouched"""
    gifs: int = 4
    """episodes written as GIFs (observation beside goal)"""
    batch: int = 0
    """episodes run at once, their environments alive together and planned in one planner
    call (0: all, at most the world's eval_batch in lewm.worlds: 100, Cube 25); each
    episode draws its own noise and the random policy's draws continue from batch to
    batch, so results do not depend on it (memory does)"""

    def __post_init__(self):
        for name in ("episodes", "offset"):
            if getattr(self, name) < 1:
                raise LewmError(f"--{name} must be >= 1, got {getattr(self, name)}")
        if self.budget < 0:
            raise LewmError(f"--budget must be >= 0, got {self.budget}")
        if self.goals not in ("dataset", "env", "far") and not self.goals.endswith(".json"):
            raise LewmError(f"--goals must be dataset, env, far or a .json file, got "
                            f"{self.goals!r}")
        if self.start not in ("recorded", "rest"):
            raise LewmError(f"--start must be recorded or rest, got {self.start!r}")
        if self.perturb:
            from lewm.perturbspec import parse

            parse(self.perturb)
        if not 0 <= self.seed < 2**63:
            raise LewmError(f"--seed must be in [0, 2**63), got {self.seed}")
        if self.gifs < 0 or self.batch < 0:
            raise LewmError("--gifs and --batch must be >= 0")
        check_numbers(self)  # what the checks above leave: NaN, inf
