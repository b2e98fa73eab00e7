"""Scripted Push-T collection policies: a pushing expert and a weak random-near-block policy.

The expert works with the quasi-static physics of Push-T (the block moves only while it is
pushed). Each decision picks a contact point on the T's outline and pushes along its inward
normal; the contact is chosen to best reduce the block's pose error, scoring each candidate
by how much the push translates the centre of gravity towards the goal and how much its
torque turns the block towards the goal angle. The agent walks around the block to the
contact's pre-push point, pushes for a few steps, and re-chooses. Once the block is in
place, it moves to the goal's agent position. Gaussian noise is added to every action.
"""

from __future__ import annotations

import numpy as np

from lewm.envs.pusht import (
    ACTION_SCALE,
    AGENT_RADIUS,
    CANVAS,
    COG,
    OUTLINE,
    PushTEnv,
    cog_world,
    t_distance,
    to_world,
    wrap,
)


def _contacts(spacing: float = 8.0, corner: float = 4.0):
    """Candidate contact points on the T's outline (body frame) and their outward normals."""
    points, normals = [], []
    for a, b in zip(OUTLINE, np.roll(OUTLINE, -1, axis=0)):
        edge = b - a
        length = float(np.hypot(*edge))
        n = np.array([edge[1], -edge[0]]) / length
        mid = (a + b) / 2
        if t_distance(to_world(mid + n, (0, 0, 0)), (0, 0, 0)) == 0:
            n = -n  # point the normal out of the T
        for t in np.arange(corner, length - corner + 1e-9, spacing):
            points.append(a + edge * (t / length))
            normals.append(n)
    return np.array(points), np.array(normals)


CONTACT_POINTS, CONTACT_NORMALS = _contacts()  # (K, 2), (K, 2)
CLEARANCE = AGENT_RADIUS + 8.0  # pre-push distance of the agent's centre from the outline
GYRATION = 50.0  # the T's radius of gyration, sqrt(moment / mass), px
PLACED_POS, PLACED_ANGLE = 6.0, 0.08  # block pose error at which the expert stops pushing
MIN_PUSH = 4  # steps a push lasts at least
SLOW = 40.0  # px: the longest waypoint step next to the block
WALL_ZONE = 150.0  # distance from a wall (of the centre of gravity) where pushes avoid it


def _orbit(directions: int = 72, margin: float = 14.0) -> np.ndarray:
    """For each polar direction around the centre of gravity (body frame), the radius beyond
    which the agent clears the T by `margin`: the path the agent walks around the block."""
    phi = np.arange(directions) * (2 * np.pi / directions)
    r = np.arange(0.0, 160.0, 1.0)
    ray = COG + r[None, :, None] * np.stack([np.cos(phi), np.sin(phi)], -1)[:, None]  # (n, R, 2)
    close = t_distance(ray, (0, 0, 0)) < AGENT_RADIUS + margin  # (n, R)
    return r[np.where(close.any(1), close.shape[1] - 1 - np.argmax(close[:, ::-1], 1), 0)] + 1


ORBIT = _orbit()  # (72,)


class PushTExpert:
    """Scripted pushing expert with Gaussian action noise (`noise_std`, in action units).

    Contacts are scored with a quasi-static model: pushing the outline point p along the
    inward normal u translates the centre of gravity along u and turns the block by
    (r x u) / rho^2 (r = p - cog, rho = radius of gyration); the score is the rate at which
    that reduces the pose error |d_pos|^2 + (rho d_angle)^2. Its first target is the
    episode's goal; on reaching it (the env's success rule) it draws a fresh goal pose near
    the block and keeps pushing, so long episodes stay informative.
    """

    def __init__(self, noise_std: float = 0.1):
        self.noise_std = float(noise_std)

    def reset(self, info, rng: np.random.Generator):
        self.rng = rng
        self.goal = np.asarray(info["goal_state"], dtype=np.float64)
        self.contact = None  # index into CONTACT_POINTS of the chosen contact
        self.pushed = 0  # steps spent pushing it (0: still walking to it)
        self.orbit_sign = 0.0  # direction of the walk round the block (0: not walking round)

    def __call__(self, obs, info) -> np.ndarray:
        state = np.asarray(info["state"], dtype=np.float64)
        if PushTEnv.is_success(state, self.goal):
            self.goal = self._new_goal(state)
        target = self._target(state)
        action = (target - state[:2]) / ACTION_SCALE
        action = action + self.rng.normal(0.0, self.noise_std, size=2)
        return np.clip(action, -1.0, 1.0).astype(np.float32)

    def _new_goal(self, state) -> np.ndarray:
        """A fresh goal: a pose near the current one, so the episode keeps pushing."""
        while True:
            block = np.clip(state[2:4] + self.rng.normal(0, 80, 2), 100, 400)
            angle = (state[4] + self.rng.normal(0, 1.0)) % (2 * np.pi)
            agent = self.rng.uniform(50, 450, size=2)
            if t_distance(agent, (*block, angle)) > AGENT_RADIUS + 5:
                return np.array([*agent, *block, angle, 0.0, 0.0])

    def _target(self, state) -> np.ndarray:
        agent, pose = state[:2], (state[2], state[3], state[4])
        goal_pose = (self.goal[2], self.goal[3], self.goal[4])
        d_pos = cog_world(goal_pose) - cog_world(pose)
        d_ang = float(wrap(goal_pose[2] - pose[2]))
        if np.hypot(*d_pos) < PLACED_POS and abs(d_ang) < PLACED_ANGLE:
            self.contact, self.pushed = None, 0
            return self._walk(agent, self.goal[:2], pose)
        points = to_world(CONTACT_POINTS, pose)  # (K, 2)
        normals = to_world(CONTACT_NORMALS, (0, 0, pose[2]))  # (K, 2)
        score = self._scores(pose, points, normals, d_pos, d_ang)  # (K,)
        c = self.contact
        if self.pushed > 0:
            # Commit to a push for a few steps, then keep it while it still helps, unless
            # another is much better: switching sides costs a walk round the block.
            if self.pushed >= MIN_PUSH and (score[c] < 0.3 or score[c] < score.max() - 0.6):
                c, self.pushed = None, 0
        if self.pushed == 0:
            # Choose (or keep walking to) a contact; travel costs, the current one gets a bonus.
            travel = np.hypot(*(points + CLEARANCE * normals - agent).T) / CANVAS  # (K,)
            value = score - 0.5 * travel
            if c is not None:
                value[c] += 0.1
            best = int(np.argmax(value))
            if best != c:
                self.orbit_sign = 0.0
            c = self.contact = best
            pre = points[c] + CLEARANCE * normals[c]
            touching = np.hypot(*(agent - points[c] - AGENT_RADIUS * normals[c])) < 8
            if not touching and np.hypot(*(agent - pre)) > 8:
                return self._walk(agent, pre, pose)
        self.pushed += 1
        # The block moves by about as much as the agent's surface passes the outline, so the
        # push is proportional to the remaining error (a P-controller on the pose).
        push = float(np.clip(0.6 * np.hypot(*d_pos) + 0.6 * GYRATION * abs(d_ang), 3, 30))
        return points[c] + (AGENT_RADIUS - push) * normals[c]

    @staticmethod
    def _scores(pose, points, normals, d_pos, d_ang) -> np.ndarray:
        u = -normals  # a push moves the block along the inward normal
        lever = points - cog_world(pose)  # (K, 2)
        turn = (lever[:, 0] * u[:, 1] - lever[:, 1] * u[:, 0]) / GYRATION**2  # rad per px
        err = np.hypot(np.hypot(*d_pos), GYRATION * d_ang)
        score = (u @ d_pos + GYRATION**2 * d_ang * turn) / max(err, 1e-6)  # (K,) in [-1, 1]
        pre = points + CLEARANCE * normals
        reachable = (t_distance(pre, pose) > AGENT_RADIUS + 2) & np.all(
            (pre > AGENT_RADIUS + 6) & (pre < CANVAS - AGENT_RADIUS - 6), axis=1)
        # Keep the block off the walls, where the agent cannot get behind it: pushes towards
        # a wall less than WALL_ZONE away are penalised in proportion to how close it is.
        cog = cog_world(pose)
        near_low = np.clip(1 - (cog - 0) / WALL_ZONE, 0, 1)  # (2,) for the x and y walls at 0
        near_high = np.clip(1 - (CANVAS - cog) / WALL_ZONE, 0, 1)
        score = score - 2.0 * (np.maximum(-u, 0) @ near_low + np.maximum(u, 0) @ near_high)
        return np.where(reachable, score, -np.inf)

    def _walk(self, agent, goal, pose) -> np.ndarray:
        """The next waypoint towards `goal` that keeps the agent off the block: straight when
        the way is clear, else along the orbit that hugs the T, the shorter way round (or the
        other way when the short way leaves the canvas). Near the block, waypoints are at
        most SLOW px away: the agent carries momentum and would otherwise bump the block."""
        gap = t_distance(agent, pose) - AGENT_RADIUS
        if gap < 8 and t_distance(goal, pose) - AGENT_RADIUS > gap:
            # Touching the block: sliding along it would drag it (friction 1), so first step
            # straight away from it.
            eps = np.array([[1.0, 0.0], [0.0, 1.0]])
            grad = (t_distance(agent + eps, pose) - t_distance(agent - eps, pose)) / 2
            return agent + 15.0 * grad / max(np.hypot(*grad), 1e-6)
        way = self._waypoint(agent, goal, pose)
        step = way - agent
        if t_distance(agent, pose) < AGENT_RADIUS + 25 and np.hypot(*step) > SLOW:
            way = agent + step * (SLOW / np.hypot(*step))
        return way

    def _waypoint(self, agent, goal, pose) -> np.ndarray:
        path = agent + np.linspace(0, 1, 12)[:, None] * (goal - agent)  # (12, 2)
        if np.all(t_distance(path, pose) > AGENT_RADIUS + 4):
            self.orbit_sign = 0.0
            return goal
        centre = cog_world(pose)
        here = np.arctan2(*(agent - centre)[::-1])
        there = np.arctan2(*(goal - centre)[::-1])
        short = float(wrap(there - here))
        # Keep the direction chosen for this walk, so the agent does not dither at the half-way
        # point; the other way round is tried when this one leaves the canvas.
        first = self.orbit_sign if self.orbit_sign else (np.sign(short) or 1.0)
        for sign in (first, -first):
            step = min(0.6, abs(short) + 0.05) if sign == np.sign(short) else 0.6
            way = self._orbit_point(centre, pose, here + sign * step)
            if np.all((way > AGENT_RADIUS) & (way < CANVAS - AGENT_RADIUS)):
                self.orbit_sign = sign
                return way
        self.orbit_sign = 0.0
        return np.clip(way, AGENT_RADIUS + 2, CANVAS - AGENT_RADIUS - 2)

    @staticmethod
    def _orbit_point(centre, pose, phi: float) -> np.ndarray:
        k = int(round(float(wrap(phi - pose[2])) / (2 * np.pi) * len(ORBIT))) % len(ORBIT)
        return centre + ORBIT[k] * np.array([np.cos(phi), np.sin(phi)])


class NearBlockPolicy:
    """The weak baseline data: random targets within reach of the block, held for a few steps,
    with Gaussian noise. It touches the block often but pushes it nowhere in particular."""

    def __init__(self, noise_std: float = 0.3, hold: int = 5):
        self.noise_std = float(noise_std)
        self.hold = hold

    def reset(self, info, rng: np.random.Generator):
        self.rng = rng
        self.t = 0

    def __call__(self, obs, info) -> np.ndarray:
        state = np.asarray(info["state"], dtype=np.float64)
        if self.t % self.hold == 0:
            centre = cog_world((state[2], state[3], state[4]))
            self.target = centre + self.rng.uniform(-90, 90, size=2)
        self.t += 1
        action = (self.target - state[:2]) / ACTION_SCALE
        action = action + self.rng.normal(0.0, self.noise_std, size=2)
        return np.clip(action, -1.0, 1.0).astype(np.float32)

