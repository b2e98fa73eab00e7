"""Orientation errors of symmetric bodies, in pure numpy (the strict Cube criterion).

Unit quaternions are (w, x, y, z). The angle between rotations q and p is
2 arccos |<q, p>|; a cube looks the same under its 24 rotations, so its orientation error
is the smallest angle between its rotation and the goal's composed with any of them. For a
cube lying on a face the only freedom left is yaw, and the error is the yaw difference
modulo 90 degrees.
"""

from __future__ import annotations

import itertools

import numpy as np


def cube_group() -> np.ndarray:
    """(48, 4) the unit quaternions of the cube's 24 rotations (each with its negation):
    the 8 of (+-1, 0, 0, 0) permuted, the 16 of (+-1/2, +-1/2, +-1/2, +-1/2) and the 24 of
    (+-1/sqrt 2, +-1/sqrt 2, 0, 0) permuted (the binary octahedral group)."""
    out = set()
    for signs in itertools.product((1, -1), repeat=4):
        out.add(tuple(0.5 * s for s in signs))
    for i in range(4):
        for s in (1, -1):
            q = [0.0] * 4
            q[i] = float(s)
            out.add(tuple(q))
    r = 1 / np.sqrt(2)
    for i, j in itertools.combinations(range(4), 2):
        for si, sj in itertools.product((1, -1), repeat=2):
            q = [0.0] * 4
            q[i], q[j] = si * r, sj * r
            out.add(tuple(q))
    return np.array(sorted(out))


CUBE_GROUP = cube_group()


def multiply(q, p) -> np.ndarray:
    """The quaternion product q p (rotation p, then q)."""
    w1, x1, y1, z1 = q
    w2, x2, y2, z2 = p
    return np.array([w1 * w2 - x1 * x2 - y1 * y2 - z1 * z2,
                     w1 * x2 + x1 * w2 + y1 * z2 - z1 * y2,
                     w1 * y2 - x1 * z2 + y1 * w2 + z1 * x2,
                     w1 * z2 + x1 * y2 - y1 * x2 + z1 * w2])


def cube_angle(q, q_goal) -> float:
    """The rotation (rad, in [0, pi]) from the goal's orientation to `q`, modulo the cube's
    symmetries."""
    q = np.asarray(q, np.float64) / np.linalg.norm(q)
    g = np.asarray(q_goal, np.float64) / np.linalg.norm(q_goal)
    rel = multiply(g * np.array([1, -1, -1, -1]), q)  # goal^-1 q
    best = np.max(np.abs(CUBE_GROUP @ rel))
    return float(2 * np.arccos(min(1.0, best)))


def yaw_quaternion(angle: float) -> np.ndarray:
    """The rotation by `angle` (rad) about the vertical z axis."""
    return np.array([np.cos(angle / 2), 0.0, 0.0, np.sin(angle / 2)])
