"""Reacher: the DeepMind Control Suite two-link planar arm (MuJoCo, docs/design.md §2).

The arm turns about a shoulder (unbounded hinge) and a wrist (hinge limited to +-160 deg),
driven by two motors with torques clip(a, -1, 1) (gear 0.05). Each env step holds the action
for 2 physics steps of 0.02 s (action repeat 2), and the image is rendered from camera 0,
which looks straight down on the arena. Success: every joint within 0.05 rad of the goal
configuration, the shoulder compared modulo 2 pi.

`state` = (shoulder, wrist, shoulder velocity, wrist velocity), the shoulder wrapped into
[-pi, pi]: with MuJoCo's warm start disabled this is the whole simulation state, so
`set_state` reproduces a trajectory bit for bit. dm_control is imported only when an env is
built, after `lewm.envs.require` has chosen the headless GL backend.
"""

from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import numpy as np

from lewm.envs import gl, require
from lewm.envs.base import PixelWorld
from lewm.errors import LewmError

ACTION_REPEAT = 2
SUCCESS_TOL = 0.05  # rad, per joint
WRIST_LIMIT = np.deg2rad(160.0)  # the wrist's range in dm_control's reacher.xml
# Bounds on valid states, there to catch a wrong layout or units with a wide margin: from
# rest, random, constant and velocity-pumping torques took the wrist at most 0.14 rad past its
# range (MuJoCo's joint limits are soft) and no joint faster than 6.7 rad/s.
WRIST_SLACK = 0.5  # rad beyond the wrist's range
VEL_MAX = 20.0  # rad/s
TELEPORT_MIN = 1.0  # rad, in at least one joint
ARM_RGBA = np.array([0.1, 0.3, 1.0, 1.0])  # the surprise study's new arm colour (was orange)
HIDDEN_GROUP = 3  # a geom group MuJoCo does not draw by default


def wrap(angle):
    """Angles mapped into [-pi, pi)."""
    return (np.asarray(angle) + np.pi) % (2 * np.pi) - np.pi


def joint_error(q, q_goal) -> np.ndarray:
    """Per-joint angle error (..., 2) between configurations (..., 2); the unbounded shoulder
    is compared modulo 2 pi, the wrist (which cannot wrap) directly."""
    d = np.asarray(q, dtype=np.float64) - np.asarray(q_goal, dtype=np.float64)
    return np.abs(np.stack([wrap(d[..., 0]), d[..., 1]], axis=-1))


def sample_angles(rng: np.random.Generator) -> np.ndarray:
    """A configuration (2,) uniform over the joint ranges, as dm_control's reacher draws its
    start: shoulder in [-pi, pi), wrist in [-160, 160] deg."""
    return np.array([rng.uniform(-np.pi, np.pi), rng.uniform(-WRIST_LIMIT, WRIST_LIMIT)])


def _dm_control():
    """dm_control's `mujoco` (the official bindings) and `dm_control.mujoco`, imported after
    the GL backend is chosen. dm_control opens the GL display at import, so a broken backend
    fails here: with ImportError or RuntimeError, or, when PyOpenGL cannot load the platform
    library (OSMesa missing), with AttributeError."""
    require("reacher")
    try:
        import mujoco
        from dm_control import mujoco as dm_mujoco
    except (ImportError, RuntimeError, AttributeError) as e:
        raise gl.render_failed(e) from e
    return mujoco, dm_mujoco


class ReacherEnv(PixelWorld):
    """Gymnasium Reacher. Observation: RGB image (size, size, 3) uint8; action: (2,) joint
    torques in [-1, 1].

    `reset(options={"state": s, "goal_state": g})` sets the start and goal (4,) states;
    otherwise both configurations are drawn uniformly over the joint ranges, at rest. `info`
    holds `state`, `proprio` (both (4,)) and `goal_state`; `terminated` is True once every
    joint is within 0.05 rad of the goal.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 25}  # 2 x 0.02 s per step
    name = "reacher"

    def __init__(self, size: int = 64, render_mode: str | None = "rgb_array"):
        super().__init__(size, render_mode, action_dim=2)
        self.mj, dm_mujoco = _dm_control()
        import dm_control

        xml = Path(dm_control.__file__).parent / "suite" / "reacher.xml"
        # From the file rather than dm_control.suite, whose import loads every domain (0.2 s).
        self.physics = dm_mujoco.Physics.from_xml_path(str(xml))
        self.engine = dm_mujoco.engine
        m = self.physics.model.ptr
        # The warm start of the constraint solver (only the wrist limit is a constraint) is
        # state outside qpos and qvel; without it, (angles, velocities) restore the simulation
        # exactly. It changes trajectories by about 1e-15.
        m.opt.disableflags |= self.mj.mjtDisableBit.mjDSBL_WARMSTART
        # Goals are given as images of the goal configuration, so the suite's target sphere
        # would only be a distractor that says nothing about our goal. It is moved to a geom
        # group that MuJoCo does not draw rather than made transparent: it is then left out of
        # the scene, with nothing to blend or reflect in the floor. It is fixed to the world
        # and contacts are disabled, so the dynamics are unchanged.
        m.geom("target").group[0] = HIDDEN_GROUP
        m.vis.global_.offwidth = max(m.vis.global_.offwidth, self.size)
        m.vis.global_.offheight = max(m.vis.global_.offheight, self.size)
        self.camera = None  # made on the first render, so envs that never render need no GL

        hi = np.array([np.pi, WRIST_LIMIT + WRIST_SLACK, VEL_MAX, VEL_MAX], dtype=np.float32)
        self.state_space = gym.spaces.Box(-hi, hi, (4,), np.float32)
        self.goal = np.zeros(4)
        self._set(np.zeros(4))

    @staticmethod
    def check_state(state, what: str = "state") -> np.ndarray:
        """`state` as a valid (4,) float64 array, or a LewmError. Any shoulder angle is valid
        (the joint is unbounded)."""
        try:
            s = np.asarray(state, dtype=np.float64).reshape(-1)
        except (TypeError, ValueError):
            s = np.full(0, np.nan)
        if s.shape != (4,) or not np.all(np.isfinite(s)):
            raise LewmError(
                f"Reacher {what} must be 4 finite numbers (shoulder, wrist, "
                f"shoulder velocity, wrist velocity), got {state!r}"
            )
        if abs(s[1]) > WRIST_LIMIT + WRIST_SLACK:
            raise LewmError(
                f"Reacher {what}: wrist angle {s[1]:.4g} rad is out of bounds (at most "
                f"{WRIST_LIMIT + WRIST_SLACK:.4f}: its range +-{WRIST_LIMIT:.4f} plus slack)"
            )
        if np.any(np.abs(s[2:]) > VEL_MAX):
            raise LewmError(
                f"Reacher {what}: joint velocities {s[2:].tolist()} are out of "
                f"bounds (at most {VEL_MAX} rad/s)"
            )
        return s

    def reset(self, *, seed=None, options=None):
        """Start a new episode: (obs, info). `options` may hold "state" and "goal_state"."""
        super().reset(seed=seed)
        options = options or {}
        if "state" in options:
            start = self.check_state(options["state"], "state")
        else:
            start = np.concatenate([sample_angles(self.np_random), np.zeros(2)])
        if "goal_state" in options:
            self.goal = self.check_state(options["goal_state"], "goal_state")
        else:
            self.goal = np.concatenate([sample_angles(self.np_random), np.zeros(2)])
        self._set(start)
        return self.render(), self._info()

    def step(self, action):
        """Apply the torques for 2 physics steps: (obs, 0.0, success, False, info)."""
        m, d = self.physics.model.ptr, self.physics.data.ptr
        d.ctrl[:] = np.clip(np.asarray(action, dtype=np.float64).reshape(2), -1.0, 1.0)
        # Whole mj_steps (not dm_control's split mj_step2/mj_step1) make the next state a
        # function of (qpos, qvel, ctrl) alone; the physics is the same.
        self.mj.mj_step(m, d, ACTION_REPEAT)
        self._set(np.concatenate([d.qpos, d.qvel]))
        info = self._info()
        return self.render(), 0.0, bool(info["success"]), False, info

    def set_state(self, state) -> None:
        """Put the arm at `state` (4,) = (shoulder, wrist, their velocities)."""
        self._set(self.check_state(state))

    def _set(self, s: np.ndarray) -> None:
        m, d = self.physics.model.ptr, self.physics.data.ptr
        # The shoulder is kept in [-pi, pi], but float32 copies of angles next to +-pi round to
        # just outside it: those are left as they are, so that set_state(info["state"]) gives
        # back the same info["state"].
        shoulder = s[0] if abs(s[0]) <= np.pi + 1e-6 else wrap(s[0])
        self.mj.mj_resetData(m, d)
        d.qpos[:] = (shoulder, s[1])
        d.qvel[:] = s[2:]
        self.mj.mj_forward(m, d)  # positions of the bodies, for rendering

    def state(self) -> np.ndarray:
        """The current state (4,) float64."""
        d = self.physics.data.ptr
        return np.concatenate([d.qpos, d.qvel])

    def success(self, state=None, goal_state=None) -> bool:
        """Whether both joint angles of `state` are within 0.05 rad of `goal_state`'s
        (default: the current state and goal)."""
        s = self.state() if state is None else np.asarray(state, dtype=np.float64)
        g = self.goal if goal_state is None else np.asarray(goal_state, dtype=np.float64)
        return bool(np.all(joint_error(s[:2], g[:2]) < SUCCESS_TOL))

    success_rule = f"both joint angles within {SUCCESS_TOL:g} rad of the goal's (shoulder wrapped)"
    strict_rule = (f"both wrapped joint angles within {SUCCESS_TOL:g} rad of the goal's, first "
                   "hit (the authors' criterion as lewm has always computed it)")
    strict_hold = 1

    def strict_success(self, state=None, goal_state=None) -> bool:
        """The same predicate: lewm's authors' criterion already compares the unbounded
        shoulder modulo 2 pi (the authors' code compares raw angles), and a reach counts
        when first hit, as the audits count it."""
        return self.success(state, goal_state)

    @staticmethod
    def at_rest(state) -> np.ndarray:
        """Both joint velocities zeroed."""
        s = np.asarray(state, dtype=np.float64).copy()
        s[2:4] = 0.0
        return s

    def render(self) -> np.ndarray:
        """The current image (size, size, 3) uint8 from camera 0."""
        return self._view().render().copy()

    FLOOR_GEOMS = ("ground", "wall_x", "wall_y", "wall_neg_x", "wall_neg_y")

    @property
    def knows_floor(self) -> bool:
        return True

    def background_weights(self, frame, state=None) -> np.ndarray:
        """1 where camera 0 sees the arena's ground, its walls or the sky (MuJoCo's
        segmentation rendering, at `state` or the current one), 0 on the arm and target."""
        now = None if state is None else self.state()
        if now is not None:
            self._set(self.check_state(state))
        try:
            seg = self._view().render(segmentation=True)  # (H, W, 2): object id, type
        finally:
            if now is not None:
                self._set(now)
        from lewm.perturb import segmentation_floor

        ids = [self.physics.model.name2id(n, "geom") for n in self.FLOOR_GEOMS]
        return segmentation_floor(seg, ids, self.mj.mjtObj.mjOBJ_GEOM)

    def _view(self):
        if self.camera is None:
            import OpenGL.error

            try:
                self.camera = self.engine.Camera(self.physics, self.size, self.size, 0)
            except (RuntimeError, self.mj.FatalError, OpenGL.error.Error) as e:
                raise gl.render_failed(e) from e
        # One camera (and its scene) per env: physics.render would rebuild both every call.
        # Its image is a view of a buffer the next render overwrites, hence render's copy.
        return self.camera

    def render_state(self, state) -> np.ndarray:
        """The image (size, size, 3) uint8 with the arm at `state`; the simulation is left
        as it was."""
        now = self.state()
        self._set(self.check_state(state))
        try:
            return self.render()
        finally:
            self._set(now)

    def goal_pixels(self) -> np.ndarray:
        """The goal image: the arm drawn at the goal state."""
        return self.render_state(self.goal)

    def close(self) -> None:
        """Free the GL context and MuJoCo data now rather than at interpreter exit."""
        # At exit dm_control frees the contexts still alive before it terminates its EGL
        # display. But mujoco's own EGL module (mujoco.Renderer) terminates the same display
        # at exit, and atexit runs last-in first-out: a mujoco.Renderer made after this env
        # makes dm_control's cleanup fail with EGL_BAD_DISPLAY. Closed envs are not affected.
        physics = getattr(self, "physics", None)
        if physics is not None:
            self.camera = None
            physics.free()
            self.physics = None

    def __del__(self):
        self.close()

    def _info(self):
        s = self.state().astype(np.float32)
        return {
            "state": s.copy(),
            "proprio": s.copy(),
            "goal_state": self.goal.astype(np.float32),
            "success": self.success(),
        }


def teleport(env: ReacherEnv, rng: np.random.Generator) -> None:
    """Surprise event (physical): jump the arm to a configuration at least 1 rad away in
    some joint, keeping its velocities."""
    s = env.state()
    while True:
        q = sample_angles(rng)
        if joint_error(q, s[:2]).max() >= TELEPORT_MIN:
            env.set_state(np.concatenate([q, s[2:]]))
            return


def recolour(env: ReacherEnv, rng: np.random.Generator) -> None:
    """Surprise event (visual): the arm and its fingertip turn blue in later renders."""
    m = env.physics.model.ptr
    for material in ("self", "effector"):
        m.material(material).rgba[:] = ARM_RGBA
