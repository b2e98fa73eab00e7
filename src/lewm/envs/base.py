"""What every world shares: square RGB uint8 observations of a chosen size and actions in
[-1, 1]. Each world subclasses `PixelWorld` and adds its dynamics, state and success rules:

* `success(state=None, goal_state=None)`: the authors' criterion, reported as `terminated`;
* `strict_success(state=None, goal_state=None)`: the strict criterion's predicate, which an
  evaluation requires for `strict_hold` steps in a row (lewm.criteria);
* `success_rule`, `strict_rule`: each in words, for eval.json;
* `at_rest(state)`: the state with its velocities zeroed (`lewm eval --start rest`);
* `floor_rgb`: the flat floor's colour, where the world draws one, so that perturbations
  can paint the floor (`background_weights`, lewm.perturb).
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np

from lewm.errors import LewmError

MIN_SIZE = 16  # the encoders' patching and convolutions need at least this many pixels


class PixelWorld(gym.Env):
    strict_hold = 3
    """steps in a row the strict predicate must hold (the audits' 3; 1: first hit)"""
    success_rule = ""
    strict_rule = ""
    floor_rgb: tuple[int, int, int] | None = None

    def __init__(self, size: int, render_mode: str | None, action_dim: int):
        if int(size) < MIN_SIZE:
            raise LewmError(f"image size {size} is too small (at least {MIN_SIZE})")
        self.size = int(size)
        self.render_mode = render_mode
        self.observation_space = gym.spaces.Box(0, 255, (self.size, self.size, 3), np.uint8)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (action_dim,), np.float32)

    @property
    def knows_floor(self) -> bool:
        """Whether `background_weights` can tell the floor's pixels from the objects'."""
        return self.floor_rgb is not None

    def background_weights(self, frame: np.ndarray, state=None) -> np.ndarray | None:
        """(H, W) in [0, 1]: how much of each pixel of `frame` (rendered at `state`, the
        current one if None) is floor; None where the world cannot tell."""
        if self.floor_rgb is None:
            return None
        from lewm.perturb import floor_weights

        return floor_weights(frame, self.floor_rgb)
