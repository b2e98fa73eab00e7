"""Two-Room: a point agent in two rooms joined by a door (pure numpy, docs/design.md §2).

All geometry is in units of a 224 px canvas; frames are drawn on it as the authors draw
them and resized to the render size. The agent is a red Gaussian dot; each step moves it by
clip(a, -1, 1) * 5, clamped to the room, and a move into the wall outside the door stops at
the wall.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np

from lewm.envs.base import PixelWorld
from lewm.errors import LewmError

CANVAS = 224.0
BORDER = (10.0, 14.0)  # a 4-unit black line just inside 14 units of each edge
WALL_X = (107.0, 117.0)  # the vertical wall band
DOOR_Y = (35.0, 63.0)  # the gap in the wall
POS_LOW, POS_HIGH = 21.0, 203.0  # where the agent's centre may be
STEP = 5.0  # units moved per step at |a| = 1
SIGMA = 7.0  # the agent dot's Gaussian std
SUCCESS_RADIUS = 16.0
DOOR_CENTRE = np.array([(WALL_X[0] + WALL_X[1]) / 2, (DOOR_Y[0] + DOOR_Y[1]) / 2])
AGENT_RGB = np.array([1.0, 0.0, 0.0], dtype=np.float32)


def in_wall(pos: np.ndarray) -> np.ndarray:
    """True where a position (..., 2) lies strictly inside the wall band outside the door."""
    x, y = pos[..., 0], pos[..., 1]
    in_band = (x > WALL_X[0]) & (x < WALL_X[1])
    in_door = (y >= DOOR_Y[0]) & (y <= DOOR_Y[1])
    return in_band & ~in_door


def is_free(pos: np.ndarray) -> np.ndarray:
    """True where a position (..., 2) is a legal agent position."""
    inside = np.all((pos >= POS_LOW) & (pos <= POS_HIGH), axis=-1)
    return inside & ~in_wall(pos)


def move(pos: np.ndarray, action: np.ndarray) -> np.ndarray:
    """One step of the dynamics for positions (N, 2) and actions (N, 2)."""
    pos = np.asarray(pos, dtype=np.float64)
    new = np.clip(pos + np.clip(action, -1.0, 1.0) * STEP, POS_LOW, POS_HIGH)
    blocked = in_wall(new)
    if blocked.any():
        # Stop at the wall face on the side the agent came from; an agent already in the
        # doorway stays in it (its y is held to the door's extent).
        was_left = pos[:, 0] <= WALL_X[0]
        was_right = pos[:, 0] >= WALL_X[1]
        new[blocked & was_left, 0] = WALL_X[0]
        new[blocked & was_right, 0] = WALL_X[1]
        in_door = blocked & ~was_left & ~was_right
        new[in_door, 1] = np.clip(new[in_door, 1], *DOOR_Y)
    return new


def sample_free(rng: np.random.Generator, n: int) -> np.ndarray:
    """n positions drawn uniformly from the free space, by rejection. (n, 2)"""
    out = np.empty((0, 2))
    while len(out) < n:
        cand = rng.uniform(POS_LOW, POS_HIGH, size=(2 * n, 2))
        out = np.concatenate([out, cand[is_free(cand)]])
    return out[:n]


FAR_MARGIN = 40.0  # how far from the wall both ends of a far pair lie


def far_pairs(rng: np.random.Generator, n: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """`lewm eval --goals far`: n (start, goal) positions in different rooms, each at least
    FAR_MARGIN units from the wall, so that every path runs through the door."""
    pairs = []
    while len(pairs) < n:
        a, b = sample_free(rng, 2)
        left = WALL_X[0] - FAR_MARGIN
        right = WALL_X[1] + FAR_MARGIN
        if (a[0] <= left and b[0] >= right) or (a[0] >= right and b[0] <= left):
            pairs.append((a, b))
    return pairs


class TwoRoomRenderer:
    """Renders agent positions as the authors' Two-Room does, so that their checkpoints see
    the images they were trained on: on the 224 px canvas with pixel i at coordinate i, the
    4 px border lines and the wall running across the whole image (wall columns 107-117 and
    door rows 35-63, both inclusive), and a red Gaussian dot scaled so its nearest pixel is
    fully red, blended over everything and truncated to uint8. Other sizes are the 224 px
    frame resized with bilinear filtering (PIL), as the authors' pipeline resizes."""

    def __init__(self, size: int):
        self.size = size
        S = int(CANVAS)
        self.coords = np.arange(S, dtype=np.float32)  # (224,) pixel i sits at coordinate i
        c = self.coords
        lines = np.zeros(S, dtype=bool)  # the four border lines, each 4 px
        for lo in (BORDER[0], CANVAS - BORDER[1]):
            lines |= (c >= lo) & (c < lo + BORDER[1] - BORDER[0])
        wall = (c >= WALL_X[0]) & (c <= WALL_X[1])
        door = (c >= DOOR_Y[0]) & (c <= DOOR_Y[1])
        black = lines[None, :] | lines[:, None] | (wall[None, :] & ~door[:, None])  # (y, x)
        self.background = np.where(black[..., None], 0.0, 255.0).astype(np.float32)
        self.agent_rgb = AGENT_RGB.copy()  # changed only by the surprise test's colour event

    def render(self, pos: np.ndarray) -> np.ndarray:
        """Images (N, S, S, 3) uint8 for positions (N, 2) given as (x, y)."""
        pos = np.asarray(pos, dtype=np.float32).reshape(-1, 2)
        gx = np.exp(-((self.coords[None, :] - pos[:, :1]) ** 2) / (2 * SIGMA**2))  # (N, 224)
        gy = np.exp(-((self.coords[None, :] - pos[:, 1:]) ** 2) / (2 * SIGMA**2))  # (N, 224)
        gx /= gx.max(1, keepdims=True)  # peak 1 at the nearest pixel
        gy /= gy.max(1, keepdims=True)
        a = gy[:, :, None, None] * gx[:, None, :, None]  # (N, 224, 224, 1) rows = y, cols = x
        img = self.background * (1 - a) + (255.0 * self.agent_rgb) * a
        img = img.astype(np.uint8)  # truncation, as the authors' .to(torch.uint8)
        if self.size == int(CANVAS):
            return img
        from PIL import Image

        size = (self.size, self.size)
        return np.stack([np.asarray(Image.fromarray(f).resize(size, Image.BILINEAR))
                         for f in img])


class TwoRoomEnv(PixelWorld):
    """Gymnasium Two-Room. Observation: RGB image (size, size, 3) uint8; action: (2,) in [-1, 1].

    `reset(options={"state": xy, "goal_state": xy})` sets the start and goal; otherwise both
    are drawn uniformly from the free space. `info` holds `state`, `proprio` (both the agent
    position) and `goal_state`; `terminated` is True once the agent is within 16 of the goal.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 10}
    name = "tworoom"
    floor_rgb = (255, 255, 255)

    def __init__(self, size: int = 64, render_mode: str | None = "rgb_array"):
        super().__init__(size, render_mode, action_dim=2)
        self.renderer = TwoRoomRenderer(self.size)
        self.state_space = gym.spaces.Box(POS_LOW, POS_HIGH, (2,), np.float32)
        self.pos = np.full(2, POS_LOW)
        self.goal = np.full(2, POS_HIGH)

    @staticmethod
    def check_state(state, what: str = "state") -> np.ndarray:
        s = np.asarray(state, dtype=np.float64).reshape(-1)
        if s.shape != (2,) or not np.all(np.isfinite(s)):
            raise LewmError(f"Two-Room {what} must be 2 finite numbers (x, y), got {state!r}")
        if not is_free(s):
            raise LewmError(
                f"Two-Room {what} {s.tolist()} is out of bounds: it must lie in "
                f"[{POS_LOW}, {POS_HIGH}]^2 and outside the wall"
            )
        return s

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        options = options or {}
        if "state" in options:
            self.pos = self.check_state(options["state"], "state")
        else:
            self.pos = sample_free(self.np_random, 1)[0]
        if "goal_state" in options:
            self.goal = self.check_state(options["goal_state"], "goal_state")
        else:
            self.goal = sample_free(self.np_random, 1)[0]
        return self.render(), self._info()

    def step(self, action):
        action = np.asarray(action, dtype=np.float64).reshape(1, 2)
        self.pos = move(self.pos[None], action)[0]
        info = self._info()
        return self.render(), 0.0, bool(info["success"]), False, info

    def set_state(self, state) -> None:
        self.pos = self.check_state(state)

    def success(self, state=None, goal_state=None) -> bool:
        s = self.pos if state is None else np.asarray(state, dtype=np.float64)
        g = self.goal if goal_state is None else np.asarray(goal_state, dtype=np.float64)
        return bool(np.linalg.norm(s - g) < SUCCESS_RADIUS)

    success_rule = f"within {SUCCESS_RADIUS:g} units of the goal position"
    strict_rule = (f"within {SUCCESS_RADIUS:g} units of the goal position for 3 steps in a "
                   "row (the wall is solid, so every route is physical)")

    def strict_success(self, state=None, goal_state=None) -> bool:
        """The authors' predicate: only the hold makes the criterion strict here, since a
        move into the wall stops at the wall and no route can pass through it."""
        return self.success(state, goal_state)

    @staticmethod
    def at_rest(state) -> np.ndarray:
        """The agent has no velocity: the state itself."""
        return np.asarray(state, dtype=np.float64).copy()

    def render(self):
        return self.renderer.render(self.pos)[0]

    def render_state(self, state) -> np.ndarray:
        """The image the env would show with the agent at `state`."""
        return self.renderer.render(np.asarray(state, dtype=np.float64))[0]

    def goal_pixels(self) -> np.ndarray:
        """The goal image: the agent drawn at the goal state."""
        return self.render_state(self.goal)

    def _info(self):
        pos = self.pos.astype(np.float32)
        return {
            "state": pos.copy(),
            "proprio": pos.copy(),
            "goal_state": self.goal.astype(np.float32),
            "success": self.success(),
        }


def teleport(env: TwoRoomEnv, rng: np.random.Generator) -> None:
    """Surprise study, physical violation: the agent jumps to a free position at least 60
    units away."""
    while True:
        pos = sample_free(rng, 1)[0]
        if np.linalg.norm(pos - env.pos) >= 60:
            env.set_state(pos)
            return


def recolour(env: TwoRoomEnv, rng: np.random.Generator) -> None:
    """Surprise study, visual violation: the red dot turns blue."""
    env.renderer.agent_rgb = np.array([0.0, 0.3, 1.0], dtype=np.float32)
