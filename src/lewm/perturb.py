"""Render-time perturbations of a world's frames: does the model hold up when the scene
changes but the task does not (docs/robustness.md)?

A perturbation is a family and a level in (0, 1] (`NAME[:LEVEL]`, e.g. `distractors:0.5`).
Each episode draws its own scene from a seed (the evaluation seed and the episode's index),
so a perturbed evaluation is bit-identical when repeated. Only pixels change: the state, the
physics, the reward and both success criteria are the env's own (`PerturbedEnv` wraps the
env and transforms the frames it returns, its goal image included, which shows the goal in
the same scene).

Families that paint the floor (colour, texture, distractors) need to know which pixels are
floor: a world declares `floor_rgb` (the numpy worlds draw a flat floor), and its
`background_weights(frame, state)` returns, per pixel, how much of it is floor
(lewm.envs.base). The task's
objects are always drawn over what these families add, so that nothing the goal depends on
is hidden: a perturbation may distract, never occlude.
"""

from __future__ import annotations

import math

import numpy as np

from lewm.errors import LewmError
from lewm.perturbspec import FAMILIES, Family, Perturbation, parse  # noqa: F401 (re-exported)

GOAL_T = -1
"""the time the goal image is rendered at: moving parts stand where the formulas put them
one step before the episode starts, and noise draws its own stream"""


# --- scenes: one episode's draws, applied frame by frame --------------------------------


class Scene:
    """apply(frame (H, W, 3) uint8, t, floor (H, W) float in [0, 1] or None) -> frame."""

    def apply(self, frame: np.ndarray, t: int, floor: np.ndarray | None) -> np.ndarray:
        raise NotImplementedError


def _to_uint8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


def _random_colour(rng: np.random.Generator) -> np.ndarray:
    """A colour clearly away from white and black: one channel low, one high."""
    c = rng.uniform(0, 255, 3)
    lo, hi = rng.choice(3, 2, replace=False)
    c[lo], c[hi] = rng.uniform(0, 60), rng.uniform(180, 255)
    return c.astype(np.float32)


def _need_floor(floor, family: str):
    if floor is None:
        raise LewmError(f"perturbation {family!r} paints the floor, and this world does not "
                        "say which pixels are floor")
    return floor[..., None].astype(np.float32)


class FloorColour(Scene):
    def __init__(self, rng, level, size):
        self.level, self.colour = level, _random_colour(rng)

    def apply(self, frame, t, floor):
        x = frame.astype(np.float32)
        return _to_uint8(x + _need_floor(floor, "colour") * self.level * (self.colour - x))


class Texture(Scene):
    """A sum of three plane waves, each drifting at its own speed, mapped between two
    colours: smooth, always moving, and unlike anything in the clean worlds."""

    def __init__(self, rng, level, size):
        self.level, self.size = level, size
        self.colours = np.stack([_random_colour(rng), _random_colour(rng)])  # (2, 3)
        angle = rng.uniform(0, 2 * math.pi, 3)
        wavelength = rng.uniform(0.12, 0.5, 3) * size  # px
        k = 2 * math.pi / wavelength
        self.k = np.stack([k * np.cos(angle), k * np.sin(angle)], 1)  # (3, 2)
        self.phase = rng.uniform(0, 2 * math.pi, 3)
        self.omega = rng.uniform(0.15, 0.4, 3) * rng.choice([-1, 1], 3)  # rad per step
        ys, xs = np.mgrid[0:size, 0:size].astype(np.float32)
        self.xy = np.stack([xs, ys], -1)  # (S, S, 2)

    def pattern(self, t: int) -> np.ndarray:
        waves = np.cos(self.xy @ self.k.T + self.phase + self.omega * t)  # (S, S, 3)
        return (waves.sum(-1) / 3 + 1) / 2  # (S, S) in [0, 1]

    def apply(self, frame, t, floor):
        w = _need_floor(floor, "texture")
        p = self.pattern(t)[..., None]
        tex = self.colours[0] + p * (self.colours[1] - self.colours[0])  # (S, S, 3)
        frame = frame.astype(np.float32)
        target = frame + self.level * (tex - frame)  # towards the texture, on the floor only
        return _to_uint8(frame + w * (target - frame))


class Distractors(Scene):
    """Shapes that move on their own in straight lines, bouncing off the image's edges."""

    def __init__(self, rng, level, size):
        n = 1 + int(round(4 * level))
        self.size = size
        self.radius = rng.uniform(0.05, 0.09, n) * size
        self.start = rng.uniform(0, size, (n, 2))
        angle = rng.uniform(0, 2 * math.pi, n)
        speed = rng.uniform(0.02, 0.04, n) * size  # px per env step
        self.velocity = speed[:, None] * np.stack([np.cos(angle), np.sin(angle)], 1)
        self.square = rng.random(n) < 0.5
        self.colours = np.stack([_random_colour(rng) for _ in range(n)])
        ys, xs = np.mgrid[0:size, 0:size].astype(np.float32)
        self.xs, self.ys = xs + 0.5, ys + 0.5

    def centres(self, t: int) -> np.ndarray:
        """(n, 2) positions at step t: the straight path folded back at the edges."""
        lo, hi = self.radius[:, None], self.size - self.radius[:, None]
        span = hi - lo
        u = np.mod(self.start - lo + self.velocity * t, 2 * span)
        return lo + np.where(u > span, 2 * span - u, u)

    def apply(self, frame, t, floor):
        w = _need_floor(floor, "distractors")[..., 0]
        out = frame.astype(np.float32)
        for (cx, cy), r, square, colour in zip(self.centres(t), self.radius, self.square,
                                               self.colours):
            dx, dy = np.abs(self.xs - cx), np.abs(self.ys - cy)
            dist = np.maximum(dx, dy) if square else np.hypot(dx, dy)
            cover = np.clip(r + 0.5 - dist, 0, 1) * w  # one pixel of anti-aliasing
            out += cover[..., None] * (colour - out)
        return _to_uint8(out)


class Hue(Scene):
    """A rotation of every colour about the grey axis (greys stay grey)."""

    def __init__(self, rng, level, size):
        theta = level * math.pi * rng.uniform(0.5, 1) * rng.choice([-1, 1])
        axis = np.ones(3) / math.sqrt(3)
        cross = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]],
                          [-axis[1], axis[0], 0]])
        self.rotation = (math.cos(theta) * np.eye(3) + math.sin(theta) * cross
                         + (1 - math.cos(theta)) * np.outer(axis, axis)).astype(np.float32)

    def apply(self, frame, t, floor):
        x = frame.astype(np.float32)
        turned = x @ self.rotation.T
        keep = 0.0 if floor is None else floor[..., None]
        return _to_uint8(x + (1 - keep) * (turned - x))


class Camera(Scene):
    """A fixed affine view per episode: shift, zoom and roll about the image centre, sampled
    bilinearly with the edge pixels repeated outside the original view."""

    def __init__(self, rng, level, size):
        shift = level * 0.08 * size * rng.uniform(0.5, 1, 2) * rng.choice([-1, 1], 2)
        zoom = 1 + level * 0.15 * rng.uniform(0.5, 1)
        roll = math.radians(level * 10 * rng.uniform(0.5, 1) * rng.choice([-1, 1]))
        c = (size - 1) / 2
        ys, xs = np.mgrid[0:size, 0:size].astype(np.float64)
        # where each output pixel looks in the original frame: undo shift, zoom and roll
        u, v = (xs - c - shift[0]) / zoom, (ys - c - shift[1]) / zoom
        cos, sin = math.cos(roll), math.sin(roll)
        sx = np.clip(cos * u + sin * v + c, 0, size - 1)
        sy = np.clip(-sin * u + cos * v + c, 0, size - 1)
        self.x0, self.y0 = np.floor(sx).astype(int), np.floor(sy).astype(int)
        self.x1, self.y1 = np.minimum(self.x0 + 1, size - 1), np.minimum(self.y0 + 1, size - 1)
        self.fx = (sx - self.x0)[..., None].astype(np.float32)
        self.fy = (sy - self.y0)[..., None].astype(np.float32)

    def apply(self, frame, t, floor):
        f = frame.astype(np.float32)
        top = f[self.y0, self.x0] * (1 - self.fx) + f[self.y0, self.x1] * self.fx
        bottom = f[self.y1, self.x0] * (1 - self.fx) + f[self.y1, self.x1] * self.fx
        return _to_uint8(top * (1 - self.fy) + bottom * self.fy)


class Noise(Scene):
    def __init__(self, rng, level, size):
        self.std = level * 40.0
        self.seed = int(rng.integers(2**63))

    def apply(self, frame, t, floor):
        stream = np.random.default_rng([self.seed, t + 1])  # t = GOAL_T draws stream 0
        return _to_uint8(frame + stream.normal(0, self.std, frame.shape))


class Blur(Scene):
    def __init__(self, rng, level, size):
        sigma = level * 1.5 * size / 64
        r = max(1, math.ceil(3 * sigma))
        k = np.exp(-np.arange(-r, r + 1) ** 2 / (2 * sigma**2))
        self.kernel, self.r = (k / k.sum()).astype(np.float32), r

    def apply(self, frame, t, floor):
        x = frame.astype(np.float32)
        for axis in (0, 1):
            pad = [(0, 0)] * 3
            pad[axis] = (self.r, self.r)
            p = np.pad(x, pad, mode="edge")
            n = x.shape[axis]
            x = sum(w * np.take(p, range(i, i + n), axis=axis)
                    for i, w in enumerate(self.kernel))
        return _to_uint8(x)


SCENES = {"colour": FloorColour, "texture": Texture, "distractors": Distractors, "hue": Hue,
          "camera": Camera, "noise": Noise, "blur": Blur}


# --- worlds ------------------------------------------------------------------------------


def floor_weights(frame: np.ndarray, floor_rgb, tolerance: float = 32.0) -> np.ndarray:
    """(H, W) in [0, 1]: 1 where a frame shows its flat floor colour, falling to 0 within
    `tolerance` (of 255) of it, so the anti-aliased edges of objects blend."""
    d = np.abs(frame.astype(np.float32) - np.asarray(floor_rgb, np.float32)).max(-1)
    return np.clip(1 - d / tolerance, 0, 1)


def segmentation_floor(seg: np.ndarray, floor_geoms, geom_type) -> np.ndarray:
    """(H, W) float32 from a MuJoCo segmentation image (H, W, 2: object id, object type):
    1 on the sky (id -1) and on the geoms `floor_geoms` (ids), 0 on everything else."""
    geoms = seg[..., 1] == int(geom_type)
    return ((seg[..., 0] == -1) | (geoms & np.isin(seg[..., 0], list(floor_geoms)))
            ).astype(np.float32)


class PerturbedEnv:
    """An env whose frames are shown through one episode's perturbed scene; everything
    else (state, physics, success) is the env's own, reached through attribute access."""

    def __init__(self, env, perturbation: Perturbation, seed):
        if perturbation.paints_floor and not env.knows_floor:
            raise LewmError(f"perturbation {perturbation.family!r} paints the floor, which "
                            f"world {env.name!r} cannot tell apart yet")
        self.env, self.perturbation = env, perturbation
        self.scene = perturbation.scene(seed, env.size)
        self.t = 0

    def __getattr__(self, name):
        return getattr(self.env, name)

    def show(self, frame: np.ndarray, t: int, state=None) -> np.ndarray:
        floor = self.env.background_weights(frame, state)
        return self.scene.apply(frame, t, floor)

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        self.t = 0
        return self.show(obs, 0), info

    def step(self, action):
        obs, *rest = self.env.step(action)
        self.t += 1
        return (self.show(obs, self.t), *rest)

    def render(self):
        return self.show(self.env.render(), self.t)

    def goal_pixels(self):
        return self.show(self.env.goal_pixels(), GOAL_T, self.env.goal)

    def close(self):
        self.env.close()
