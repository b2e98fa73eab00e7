"""Scripted collection policies. A policy is reset with the episode's first `info` and an RNG,
then maps (observation, info) to an action; it owns no state beyond one episode."""

from __future__ import annotations

import importlib

import numpy as np

from lewm.envs import tworoom
from lewm.errors import LewmError
from lewm.worlds import get_world


class RandomPolicy:
    """Uniform actions over the action box."""

    def __init__(self, action_space):
        self.low = np.asarray(action_space.low, dtype=np.float32)
        self.high = np.asarray(action_space.high, dtype=np.float32)

    def reset(self, info, rng: np.random.Generator):
        self.rng = rng

    def __call__(self, obs, info) -> np.ndarray:
        return self.rng.uniform(self.low, self.high).astype(np.float32)


class TwoRoomNoisyExpert:
    """Waypoint expert: head for the door when the target is in the other room, then for the
    target; Gaussian noise (std `noise_std`, 2.0 in the authors' data) is added and the action
    clipped to [-1, 1], which makes it close to a random walk with drift. On reaching its
    target it draws a new one, so long episodes keep moving."""

    def __init__(self, noise_std: float = 2.0):
        self.noise_std = float(noise_std)

    def reset(self, info, rng: np.random.Generator):
        self.rng = rng
        self.target = np.asarray(info["goal_state"], dtype=np.float64)

    def __call__(self, obs, info) -> np.ndarray:
        pos = np.asarray(info["state"], dtype=np.float64)
        if np.linalg.norm(self.target - pos) < tworoom.SUCCESS_RADIUS / 2:
            self.target = tworoom.sample_free(self.rng, 1)[0]
        side = lambda p: p[0] < tworoom.DOOR_CENTRE[0]
        in_doorway = tworoom.WALL_X[0] < pos[0] < tworoom.WALL_X[1]
        waypoint = self.target
        if side(pos) != side(self.target) and not in_doorway:
            waypoint = tworoom.DOOR_CENTRE
        delta = waypoint - pos
        direction = delta / max(np.linalg.norm(delta), 1e-8)
        # Full speed when far; proportional when the waypoint is within one step.
        step = direction * min(1.0, np.linalg.norm(delta) / tworoom.STEP)
        noisy = step + self.rng.normal(0.0, self.noise_std, size=2)
        return np.clip(noisy, -1.0, 1.0).astype(np.float32)


def check_policy(world: str, name: str | None, noise_std: float | None = None) -> str:
    """The policy name `world` will use (None: its default), or a one-line error for a name
    the world does not have or a noise std it cannot take. Cheap: nothing is built."""
    declared = get_world(world)
    name = name or declared.default_policy
    names = declared.policies
    if name not in names:
        raise LewmError(f"world {world!r} has no policy {name!r} (choose from "
                        f"{', '.join(sorted(names))})")
    if names[name] is None and noise_std is not None:
        raise LewmError("--noise-std applies to scripted policies, not to 'random'")
    if noise_std is not None and not noise_std >= 0:  # `not >=` also rejects NaN
        raise LewmError(f"noise std must be >= 0, got {noise_std}")
    return name


def make_policy(world: str, name: str | None, env, noise_std: float | None = None):
    """The named collection policy for `world` (None: its default; both declared in
    lewm.worlds); a one-line error for a name the world does not have."""
    name = check_policy(world, name, noise_std)
    spec = get_world(world).policies[name]
    if spec is None:
        return RandomPolicy(env.action_space)
    module, cls = spec.split(":")
    policy = getattr(importlib.import_module(module), cls)
    return policy() if noise_std is None else policy(noise_std=noise_std)
