"""Push-T: push a T-shaped block into a goal pose with a disc (pymunk physics, docs/design.md §2).

A 512 x 512 canvas. The agent is a kinematic disc of radius 15 driven by a PD controller
(kp 100, kv 20, 10 substeps of 0.01 s per env step) towards a relative target,
target = position + 100 * action. The T is one rigid body of mass 1 and friction 1: a
120 x 30 bar and a 30 x 90 stem. The space has no damping memory (pymunk damping 0 zeroes
the block's velocity every substep), so the block only moves while it is pushed.

State (7,): agent x, y; block x, y (the middle of the bar's outer edge, the body origin);
block angle in [0, 2 pi); agent vx, vy. Proprio (4,): agent x, y, vx, vy. These follow the
layout of the authors' datasets. Success (the authors'): ||(agent xy, block xy) - goal|| < 20
and the block angle within pi / 9 of the goal's. Strict: the block alone within 20 of the
goal's position and pi / 9 of its angle (the agent may be anywhere), for 3 steps in a row.

Images are drawn by a small numpy rasteriser with supersampling (no pygame): white floor,
light grey walls, a slate-grey T and a royal-blue agent. The goal pose is *not* drawn into
observations, because goals are given as images of the goal state.
"""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import pymunk

from lewm.envs.base import PixelWorld
from lewm.errors import LewmError

CANVAS = 512.0
AGENT_RADIUS = 15.0
K_P, K_V = 100.0, 20.0
DT, SUBSTEPS = 0.01, 10
ACTION_SCALE = 100.0  # target = position + ACTION_SCALE * action
WALL = 5.0  # wall segments run along x or y = 5 and 506, radius 2
SUCCESS_POS, SUCCESS_ANGLE = 20.0, math.pi / 9
MAX_SPEED = 5000.0  # |velocity| accepted by check_state (the controller peaks near 500)

# The T in body coordinates (x along the bar, y from the bar's outer edge into the stem).
BAR = ((-60.0, 0.0), (60.0, 0.0), (60.0, 30.0), (-60.0, 30.0))
STEM = ((-15.0, 30.0), (15.0, 30.0), (15.0, 120.0), (-15.0, 120.0))
# The centre of gravity is the mean of the two parts' centroids, not the area-weighted
# centroid (40.7): this is the original Push-T's convention, kept so that the dynamics match.
COG = np.array([0.0, 45.0])
# The T's outline in order, for contact points and their outward normals.
OUTLINE = np.array([(-60, 0), (60, 0), (60, 30), (15, 30), (15, 120), (-15, 120), (-15, 30),
                    (-60, 30)], dtype=np.float64)

FLOOR_RGB = np.array([255, 255, 255], np.float32)
WALL_RGB = np.array([211, 211, 211], np.float32)  # LightGray
BLOCK_RGB = np.array([119, 136, 153], np.float32)  # LightSlateGray
AGENT_RGB = np.array([65, 105, 225], np.float32)  # RoyalBlue

# The task's fixed target: agent (256, 400), block (256, 256) turned by pi / 4, at rest.
TARGET = np.array([256.0, 400.0, 256.0, 256.0, np.pi / 4, 0.0, 0.0])
# Where reset() draws start and goal states (the authors' ranges).
AGENT_RANGE = (50.0, 450.0)
BLOCK_RANGE = (100.0, 400.0)


def wrap(angle):
    """Angles to (-pi, pi]."""
    return (np.asarray(angle) + np.pi) % (2 * np.pi) - np.pi


def to_world(local: np.ndarray, pose) -> np.ndarray:
    """Body-frame points (..., 2) to canvas points for a block pose (x, y, angle)."""
    c, s = math.cos(pose[2]), math.sin(pose[2])
    x, y = local[..., 0], local[..., 1]
    return np.stack([pose[0] + c * x - s * y, pose[1] + s * x + c * y], -1)


def to_body(points: np.ndarray, pose) -> np.ndarray:
    """Canvas points (..., 2) to the body frame of a block pose (x, y, angle)."""
    c, s = math.cos(pose[2]), math.sin(pose[2])
    dx, dy = points[..., 0] - pose[0], points[..., 1] - pose[1]
    return np.stack([c * dx + s * dy, -s * dx + c * dy], -1)


def _rect_distance(local: np.ndarray, lo, hi) -> np.ndarray:
    d = np.maximum(np.maximum(lo - local, local - hi), 0.0)  # (..., 2)
    return np.hypot(d[..., 0], d[..., 1])


def t_distance(points: np.ndarray, pose) -> np.ndarray:
    """Distance (...,) from canvas points to the T at `pose` (0 inside)."""
    local = to_body(np.asarray(points, dtype=np.float64), pose)
    bar = _rect_distance(local, np.array([-60.0, 0.0]), np.array([60.0, 30.0]))
    stem = _rect_distance(local, np.array([-15.0, 30.0]), np.array([15.0, 120.0]))
    return np.minimum(bar, stem)


def cog_world(pose) -> np.ndarray:
    """The block's centre of gravity on the canvas."""
    return to_world(COG, pose)


def light(rgb: np.ndarray) -> np.ndarray:
    """The lighter fill the authors' renderer puts inside an outlined shape (pymunk's debug
    draw: 1.2 x the outline colour)."""
    return np.round(np.minimum(1.2 * np.asarray(rgb, np.float64), 255.0)).astype(np.float32)


def _bilinear_taps(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Source indices and weights of a bilinear resize without a low-pass prefilter (OpenCV's
    INTER_LINEAR, which the authors shrink their 512 px frames with)."""
    src = np.clip((np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5, 0, n_in - 1)
    i0 = np.floor(src).astype(np.int64)
    i1 = np.minimum(i0 + 1, n_in - 1)
    return i0, i1, (src - i0).astype(np.float32)


class PushTRenderer:
    """Draws states as the authors' Push-T does, so that their checkpoints see the images they
    were trained on: on the 512 px canvas without anti-aliasing (pixel i at coordinate i),
    the block as two light-filled rectangles outlined ~5 px in its colour (with the seam
    where bar meets stem), the agent as a disc with a lighter inner disc of radius 11, the
    walls drawn over both, and optionally the authors' fixed light-green goal T; then shrunk
    to 224 px bilinearly without prefiltering, and other sizes resized from 224 with PIL's
    bilinear filter, as the authors' pipeline does."""

    GOAL_POSE = (256.0, 256.0, math.pi / 4)
    GOAL_RGB = np.array([144, 238, 144], np.float32)  # LightGreen

    def __init__(self, size: int, draw_goal: bool = False):
        self.size = size
        n = int(CANVAS)
        c = np.arange(n, dtype=np.float64)
        self.xs, self.ys = np.meshgrid(c, c)  # (512, 512): rows = y, columns = x
        along = (c >= 3) & (c <= 508)
        across = ((c >= 3) & (c <= 7)) | ((c >= 504) & (c <= 508))
        self.wall = (across[None, :] & along[:, None]) | (across[:, None] & along[None, :])
        self.floor = np.broadcast_to(FLOOR_RGB.astype(np.uint8), (n, n, 3)).copy()
        if draw_goal:
            self._fill_t(self.floor, self.GOAL_POSE, self.GOAL_RGB, outline=None)
        self.floor[self.wall] = WALL_RGB
        self.taps = _bilinear_taps(n, 224)
        every = np.arange(224)
        self.floor224 = self._shrink(self.floor, every, every)  # (224, 224, 3) the static part
        self.block_rgb = BLOCK_RGB.copy()  # changed only by the surprise study's colour event
        self.agent_rgb = AGENT_RGB.copy()

    def _window(self, lo, hi) -> tuple[slice, slice]:
        n = int(CANVAS)
        x0, y0 = (min(n, max(0, int(math.floor(v)) - 3)) for v in lo)
        x1, y1 = (min(n, max(0, int(math.ceil(v)) + 4)) for v in hi)
        return slice(y0, max(y0, y1)), slice(x0, max(x0, x1))

    def _fill_t(self, img, pose, rgb, outline) -> tuple[slice, slice]:
        """The T at `pose`: each rectangle filled with `rgb`, then (when `outline` is given)
        every edge of both rectangles drawn 2.5 px either side in `outline`. Returns the
        window of canvas pixels it drew in."""
        corners = to_world(OUTLINE, pose)
        rows, cols = self._window(corners.min(0), corners.max(0))
        xs, ys = self.xs[rows, cols], self.ys[rows, cols]
        c, s = math.cos(pose[2]), math.sin(pose[2])
        dx, dy = xs - pose[0], ys - pose[1]
        lx, ly = c * dx + s * dy, -s * dx + c * dy  # pixel positions in the block frame
        inside = ((np.abs(lx) <= 60) & (ly >= 0) & (ly <= 30)) | (
            (np.abs(lx) <= 15) & (ly >= 30) & (ly <= 120))
        patch = img[rows, cols]
        patch[inside] = rgb
        if outline is not None:  # within 2.5 px of a rectangle's boundary (square corners)
            near = np.zeros_like(inside)
            for (x0, y0), _, (x1, y1), _ in (BAR, STEM):
                outer = (lx >= x0 - 2.5) & (lx <= x1 + 2.5) & (ly >= y0 - 2.5) & (ly <= y1 + 2.5)
                inner = (lx > x0 + 2.5) & (lx < x1 - 2.5) & (ly > y0 + 2.5) & (ly < y1 - 2.5)
                near |= outer & ~inner
            patch[near] = outline
        return rows, cols

    def render(self, state) -> np.ndarray:
        """An image (S, S, 3) uint8 of a state (7,)."""
        img = self.floor.copy()  # (512, 512, 3) uint8, walls included
        pose = (float(state[2]), float(state[3]), float(state[4]))
        windows = [self._fill_t(img, pose, light(self.block_rgb), outline=self.block_rgb)]
        cx, cy = round(float(state[0])), round(float(state[1]))  # integer centre, as drawn
        rows, cols = self._window((cx - AGENT_RADIUS, cy - AGENT_RADIUS),
                                  (cx + AGENT_RADIUS, cy + AGENT_RADIUS))
        d2 = (self.xs[rows, cols] + 0.5 - cx) ** 2 + (self.ys[rows, cols] + 0.5 - cy) ** 2
        patch = img[rows, cols]
        patch[d2 < AGENT_RADIUS**2] = self.agent_rgb
        patch[d2 < (AGENT_RADIUS - 4) ** 2] = light(self.agent_rgb)
        windows.append((rows, cols))
        out = self.floor224.copy()
        for rows, cols in windows:  # only the output pixels whose taps the bodies touched
            img[rows, cols][self.wall[rows, cols]] = WALL_RGB  # walls are drawn over bodies
            J, K = self._touched(rows), self._touched(cols)
            out[np.ix_(J, K)] = self._shrink(img, J, K)
        if self.size == 224:
            return out
        from PIL import Image

        return np.asarray(Image.fromarray(out).resize((self.size, self.size), Image.BILINEAR))

    def _touched(self, span: slice) -> np.ndarray:
        """Output indices (224 px) whose bilinear taps fall in a span of canvas pixels."""
        i0, i1, _ = self.taps
        return np.flatnonzero(((i0 >= span.start) & (i0 < span.stop))
                              | ((i1 >= span.start) & (i1 < span.stop)))

    def _shrink(self, img: np.ndarray, J: np.ndarray, K: np.ndarray) -> np.ndarray:
        """Output pixels (J x K) of the 512 -> 224 bilinear shrink of `img`, uint8."""
        i0, i1, w = self.taps
        a, b = img[i0[J]].astype(np.float32), img[i1[J]].astype(np.float32)
        rows = a * (1 - w[J])[:, None, None] + b * w[J][:, None, None]  # (J, 512, 3)
        out = rows[:, i0[K]] * (1 - w[K])[None, :, None] + rows[:, i1[K]] * w[K][None, :, None]
        return np.round(out).astype(np.uint8)


class PushTSim:
    """The pymunk world: walls, the kinematic agent and the T block."""

    def __init__(self):
        self._build()

    def _build(self) -> None:
        self.space = pymunk.Space()
        self.space.gravity = (0.0, 0.0)
        self.space.damping = 0.0
        lo, hi = WALL, CANVAS - WALL - 1
        for a, b in (((lo, hi), (lo, lo)), ((lo, lo), (hi, lo)), ((hi, lo), (hi, hi)),
                     ((lo, hi), (hi, hi))):
            self.space.add(pymunk.Segment(self.space.static_body, a, b, 2.0))
        self.agent = pymunk.Body(body_type=pymunk.Body.KINEMATIC)
        disc = pymunk.Circle(self.agent, AGENT_RADIUS)
        disc.friction = 1.0
        # Mass 1; the moment is twice the bar's, as in the original Push-T.
        self.block = pymunk.Body(1.0, 2 * pymunk.moment_for_poly(1.0, BAR))
        parts = [pymunk.Poly(self.block, BAR), pymunk.Poly(self.block, STEM)]
        for part in parts:
            part.friction = 1.0
        self.space.add(self.agent, disc, self.block, *parts)
        self.block.center_of_gravity = tuple(COG)

    def set_state(self, state) -> None:
        # In a fresh space: pymunk keeps each contact's impulses to warm-start the next step,
        # so in the old one what follows would depend on what came before the state was set
        # (episode i of a collection would differ with the env that ran it).
        self._build()
        self.agent.position = (float(state[0]), float(state[1]))
        self.agent.velocity = (float(state[5]), float(state[6]))
        self.block.angle = float(state[4])
        self.block.position = (float(state[2]), float(state[3]))
        self.block.velocity = (0.0, 0.0)
        self.block.angular_velocity = 0.0
        self.space.reindex_shapes_for_body(self.block)
        self.space.reindex_shapes_for_body(self.agent)

    def state(self) -> np.ndarray:
        a, b = self.agent.position, self.block.position
        v = self.agent.velocity
        return np.array([a.x, a.y, b.x, b.y, self.block.angle % (2 * np.pi), v.x, v.y])

    def step(self, action) -> None:
        a = np.clip(np.asarray(action, dtype=np.float64).reshape(2), -1.0, 1.0)
        pos = np.array(self.agent.position)
        # The target is kept on the canvas so that the agent cannot leave it.
        target = np.clip(pos + ACTION_SCALE * a, AGENT_RADIUS, CANVAS - AGENT_RADIUS)
        for _ in range(SUBSTEPS):
            p, v = np.array(self.agent.position), np.array(self.agent.velocity)
            self.agent.velocity = tuple(v + (K_P * (target - p) - K_V * v) * DT)
            self.space.step(DT)


class PushTEnv(PixelWorld):
    """Gymnasium Push-T. Observation: RGB (size, size, 3) uint8; action: (2,) in [-1, 1].

    `reset(options={"state": s7, "goal_state": g7})` sets the start and goal; otherwise both
    are drawn (agent in [50, 450]^2, block in [100, 400]^2, any angle, not overlapping).
    `info` holds `state` (7,), `proprio` (4,), `goal_state` (7,) and `success`.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 10}
    name = "pusht"
    floor_rgb = (255, 255, 255)

    def __init__(self, size: int = 64, render_mode: str | None = "rgb_array"):
        super().__init__(size, render_mode, action_dim=2)
        self.renderer = PushTRenderer(self.size)
        self.sim = PushTSim()
        hi = np.array([CANVAS, CANVAS, CANVAS, CANVAS, 2 * np.pi, MAX_SPEED, MAX_SPEED])
        lo = np.array([0, 0, 0, 0, 0, -MAX_SPEED, -MAX_SPEED])
        self.state_space = gym.spaces.Box(lo.astype(np.float32), hi.astype(np.float32))
        self.goal = TARGET.copy()
        self.sim.set_state(self.goal)

    @staticmethod
    def check_state(state, what: str = "state") -> np.ndarray:
        s = np.asarray(state, dtype=np.float64).reshape(-1)
        if s.shape != (7,) or not np.all(np.isfinite(s)):
            raise LewmError(f"Push-T {what} must be 7 finite numbers (agent x, y, block x, y, "
                            f"angle, agent vx, vy), got {np.asarray(state).tolist()!r}")
        if not (np.all((s[:4] >= 0) & (s[:4] <= CANVAS)) and np.all(np.abs(s[5:]) <= MAX_SPEED)):
            raise LewmError(f"Push-T {what} {np.round(s, 3).tolist()} is out of bounds: "
                            f"positions must lie in [0, {CANVAS:.0f}] and speeds within "
                            f"{MAX_SPEED:.0f}")
        s[4] %= 2 * np.pi
        return s

    @staticmethod
    def sample_state(rng: np.random.Generator) -> np.ndarray:
        """A random state: block anywhere in the middle, agent clear of it, at rest."""
        while True:
            block = rng.uniform(*BLOCK_RANGE, size=2)
            angle = rng.uniform(0, 2 * np.pi)
            agent = rng.uniform(*AGENT_RANGE, size=2)
            if t_distance(agent, (*block, angle)) > AGENT_RADIUS + 5:
                return np.array([*agent, *block, angle, 0.0, 0.0])

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        options = options or {}
        start = (self.check_state(options["state"], "state") if "state" in options
                 else self.sample_state(self.np_random))
        self.goal = (self.check_state(options["goal_state"], "goal_state")
                     if "goal_state" in options else self.sample_state(self.np_random))
        self.sim.set_state(start)
        return self.render(), self._info()

    def step(self, action):
        self.sim.step(action)
        info = self._info()
        return self.render(), 0.0, bool(info["success"]), False, info

    def set_state(self, state) -> None:
        self.sim.set_state(self.check_state(state))

    @staticmethod
    def is_success(state, goal_state) -> bool:
        s, g = np.asarray(state, np.float64), np.asarray(goal_state, np.float64)
        return bool(np.linalg.norm(s[:4] - g[:4]) < SUCCESS_POS
                    and abs(wrap(s[4] - g[4])) < SUCCESS_ANGLE)

    def success(self, state=None, goal_state=None) -> bool:
        return self.is_success(self.sim.state() if state is None else state,
                               self.goal if goal_state is None else goal_state)

    success_rule = (f"|(agent xy, block xy) - goal's| < {SUCCESS_POS:g} and the block angle "
                    "within pi/9 of the goal's")
    strict_rule = (f"the block within {SUCCESS_POS:g} of the goal's position and pi/9 of its "
                   "angle (the agent anywhere), for 3 steps in a row")

    @staticmethod
    def block_at_goal(state, goal_state) -> bool:
        """The strict predicate: the block's pose alone, at the authors' tolerances."""
        s, g = np.asarray(state, np.float64), np.asarray(goal_state, np.float64)
        return bool(np.linalg.norm(s[2:4] - g[2:4]) < SUCCESS_POS
                    and abs(wrap(s[4] - g[4])) < SUCCESS_ANGLE)

    def strict_success(self, state=None, goal_state=None) -> bool:
        return self.block_at_goal(self.sim.state() if state is None else state,
                                  self.goal if goal_state is None else goal_state)

    @staticmethod
    def at_rest(state) -> np.ndarray:
        """The agent's velocity zeroed (the block has none: it moves only while pushed)."""
        s = np.asarray(state, dtype=np.float64).copy()
        s[5:7] = 0.0
        return s

    def render(self):
        return self.renderer.render(self.sim.state())

    def render_state(self, state) -> np.ndarray:
        """The image the env would show in `state` (the simulation is not touched)."""
        return self.renderer.render(self.check_state(state))

    def goal_pixels(self) -> np.ndarray:
        return self.render_state(self.goal)

    def _info(self):
        s = self.sim.state()
        return {
            "state": s.astype(np.float32),
            "proprio": s[[0, 1, 5, 6]].astype(np.float32),
            "goal_state": self.goal.astype(np.float32),
            "success": self.is_success(s, self.goal),
        }


def far_pairs(rng: np.random.Generator, n: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """`lewm eval --goals far`: the full task, from a random start to the fixed target pose
    (the block at the centre turned by pi / 4, the agent below it)."""
    return [(PushTEnv.sample_state(rng), TARGET.copy()) for _ in range(n)]


def teleport(env: PushTEnv, rng: np.random.Generator) -> None:
    """Surprise study, physical violation: the block jumps to a pose far from its own."""
    state = env.sim.state()
    while True:
        new = env.sample_state(rng)
        far = np.linalg.norm(new[2:4] - state[2:4]) >= 100
        if far and t_distance(state[:2], (*new[2:4], new[4])) > AGENT_RADIUS + 5:
            state[2:5] = new[2:5]
            env.sim.set_state(state)
            return


def recolour(env: PushTEnv, rng: np.random.Generator) -> None:
    """Surprise study, visual violation: the block turns orange."""
    env.renderer.block_rgb = np.array([230, 140, 40], np.float32)
