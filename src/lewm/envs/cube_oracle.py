"""The Cube world's collection policy: OGBench's Markov (closed-loop) oracle with the noise
of its `noisy` datasets, reading lewm's state and proprio columns."""

from __future__ import annotations

import numpy as np
from ogbench.manipspace.oracles.markov.cube_markov import CubeMarkovOracle

from lewm.envs.cube import (
    ARM_BOUNDS,
    CUBE_HALF,
    CUBE_POS,
    CUBE_QUAT,
    EFF_POS,
    EFF_YAW,
    GRIPPER_CLOSURE,
    GRIPPER_CONTACT,
    TARGET_BOUNDS,
    yaw_of,
)
from lewm.errors import LewmError


class _Oracle(CubeMarkovOracle):
    """OGBench's closed-loop cube oracle, with its episode randomness drawn from our RNG."""

    def __init__(self, rng: np.random.Generator):
        super().__init__(env=None, min_norm=0.4)  # 0.4: OGBench's data-generation default
        self._rng = rng

    def reset(self, ob, info):
        self._done = False
        self._step = 0
        self._max_step = 200
        # Where the arm goes after placing the cube (OGBench draws it from np.random).
        self._final_pos = self._rng.uniform(*ARM_BOUNDS)
        self._final_yaw = self._rng.uniform(-np.pi, np.pi)


class CubeOracle:
    """OGBench's Markov (closed-loop) cube oracle with the noise of its `noisy` datasets:
    each episode draws a noise level xi ~ U(0, noise_std) and every action gets Gaussian
    noise of std xi * (1, 1, 1, 3, 10) (position, yaw, gripper); with probability `p_random`
    the action is instead uniform in [-1, 1] (OGBench: --noise=0.1, --p_random_action=0.1
    for cube-single-noisy). The oracle picks the cube up, places it on the goal state's cube
    and moves the arm away; then, like OGBench's collection, it draws a new target on the
    table and goes on."""

    def __init__(self, noise_std: float = 0.1, p_random: float = 0.1):
        if not 0 <= p_random <= 1:
            raise LewmError(f"random-action probability must be in [0, 1], got {p_random}")
        self.noise_std = float(noise_std)
        self.p_random = float(p_random)

    def reset(self, info, rng: np.random.Generator):
        """Start an episode heading for `info["goal_state"]`'s cube pose."""
        self.rng = rng
        goal = np.asarray(info["goal_state"], dtype=np.float64)
        self.target_pos = goal[CUBE_POS].copy()
        self.target_yaw = yaw_of(goal[CUBE_QUAT])
        self.scale = rng.uniform(0.0, self.noise_std) * np.array([1.0, 1.0, 1.0, 3.0, 10.0])
        self.oracle = _Oracle(rng)
        self.oracle.reset(None, info)

    def __call__(self, obs, info) -> np.ndarray:
        """The next action, float32 (5,) in [-1, 1]."""
        if self.oracle.done:
            xy = self.rng.uniform(*TARGET_BOUNDS)
            self.target_pos = np.array([xy[0], xy[1], CUBE_HALF])
            self.target_yaw = self.rng.uniform(0.0, 2 * np.pi)
            self.oracle.reset(None, info)
        s = np.asarray(info["state"], dtype=np.float64)
        p = np.asarray(info["proprio"], dtype=np.float64)
        # The keys OGBench's oracle reads from its env's info dict.
        ogb_info = {
            "proprio/effector_pos": p[EFF_POS],
            "proprio/effector_yaw": p[[EFF_YAW]],
            "proprio/gripper_opening": p[[GRIPPER_CLOSURE]],
            "proprio/gripper_contact": p[[GRIPPER_CONTACT]],
            "privileged/target_block": 0,
            "privileged/block_0_pos": s[CUBE_POS],
            "privileged/block_0_yaw": np.array([yaw_of(s[CUBE_QUAT])]),
            "privileged/target_block_pos": self.target_pos,
            "privileged/target_block_yaw": np.array([self.target_yaw]),
        }
        action = np.asarray(self.oracle.select_action(None, ogb_info), dtype=np.float64)
        if self.rng.random() < self.p_random:
            action = self.rng.uniform(-1.0, 1.0, size=5)
        else:
            action = action + self.rng.normal(0.0, self.scale)
        return np.clip(action, -1.0, 1.0).astype(np.float32)
