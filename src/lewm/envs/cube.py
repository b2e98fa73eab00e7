"""OGBench Cube (`cube-single`): a UR5e arm with a Robotiq gripper and one cube on a table
(MuJoCo; docs/design.md §2).

OGBench's own environment (`ogbench.manipspace.envs.cube_env.CubeEnv`, single cube, its
pixel-task look: purple gripper, translucent arm) is wrapped to the project's interface.
Actions are OGBench's 5-D relative end-effector control in [-1, 1]: (dx, dy, dz) * 0.05 m,
dyaw * 0.3 rad and a change of the gripper closure; one step is 0.05 s (25 physics steps).
Observations come from OGBench's `front_pixels` camera, the one of its visual cube tasks.
Success (the authors', OGBench's): the cube's centre within 0.04 m of the goal state's cube
centre. Strict: that, and the cube's orientation within 30 degrees of the goal's modulo the
cube's symmetries (for a cube lying on a face: its yaw modulo 90 degrees), for 3 steps in a row.

`state` (41 float32) is MuJoCo's qpos (21) then qvel (20); passing it back to `set_state`
restores the simulation (to float32 precision, with the solver's warm start cleared; `reset`
goes through the same path, so a reset from a recorded state and goal replays bit for bit):

    [0:6]    arm joint angles (rad)          ARM_QPOS
    [6:14]   gripper joint angles (rad)      GRIPPER_QPOS
    [14:17]  cube centre x, y, z (m)         CUBE_POS
    [17:21]  cube orientation, quaternion (w, x, y, z)   CUBE_QUAT
    [21:41]  qvel: arm (6), gripper (8), cube linear (3) and angular (3) velocity

The end effector is not a joint, so its position is in `proprio` (6 float32), OGBench's
proprioception recomputed from the state:

    [0:3]  end-effector (pinch site) x, y, z (m)    EFF_POS
    [3]    end-effector yaw (rad)                    EFF_YAW
    [4]    gripper closure in [0, 1] (0 = open)      GRIPPER_CLOSURE
    [5]    gripper contact force / 50, in [0, 1]     GRIPPER_CONTACT

`goal_state` has the layout of `state`. The table's invisible walls keep the cube in about
x in [0.24, 0.61], y in [-0.36, 0.36]; a state is accepted when its cube lies in CUBE_LOW ..
CUBE_HIGH, its quaternion has unit norm and its joints lie within their ranges.

Without options `reset` draws start and goal as OGBench's data collection does (arm pose,
cube pose, target pose), all from the env's `np_random`; the goal's arm pose is drawn like
OGBench's task goals (a fresh random arm pose, the cube resting at the target).
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np

from lewm.envs import require
from lewm.envs.base import PixelWorld
from lewm.envs.gl import close_at_exit, closed, keep_egl_display, render_failed
from lewm.envs.meshes import simplify_meshes
from lewm.envs.rotations import cube_angle
from lewm.errors import LewmError

# MuJoCo reads MUJOCO_GL once, on import: choose the headless backend first, also when this
# module is imported directly rather than through make_env (else MuJoCo falls back to GLFW,
# which needs a display). A no-op when make_env has already done it.
require("cube")

import mujoco  # noqa: E402
from ogbench.manipspace.envs.cube_env import CubeEnv as OGBenchCubeEnv  # noqa: E402
from ogbench.manipspace.lie import SO3  # noqa: E402
from OpenGL import error as gl_error  # noqa: E402

NQ, NV = 21, 20
STATE_DIM = NQ + NV
ARM_QPOS = slice(0, 6)
GRIPPER_QPOS = slice(6, 14)
CUBE_POS = slice(14, 17)
CUBE_QUAT = slice(17, 21)
QVEL = slice(NQ, STATE_DIM)
CUBE_VEL = slice(NQ + 14, STATE_DIM)  # linear then angular

PROPRIO_DIM = 6
EFF_POS = slice(0, 3)
EFF_YAW = 3
GRIPPER_CLOSURE = 4
GRIPPER_CONTACT = 5

SUCCESS_RADIUS = 0.04  # m, OGBench's
STRICT_ANGLE = np.deg2rad(30.0)  # the audits' yaw tolerance, modulo the cube's symmetries
CUBE_HALF = 0.02  # m, half the cube's edge
# The walls stop the cube at about 0.245 <= x <= 0.607 and |y| <= 0.357; the box is a little
# larger so that states of a cube pressed against a wall or held high still pass.
CUBE_LOW = np.array([0.20, -0.40, 0.0])
CUBE_HIGH = np.array([0.65, 0.40, 0.45])
JOINT_SLACK = 0.1  # rad; joint limits are soft, so simulated states overshoot them a little
CAMERA = "front_pixels"
SHADOW_SIZE = 1024
# Visual meshes are simplified to a grid of MESH_CELL / size metres (3.9 mm at 64 px, 1.1 mm
# at 224 px; a pixel spans ~12 mm and ~3.5 mm of the workspace): 185k triangles become ~29k at
# 64 px, frames render ~4x faster in software GL and differ by ~0.13 / 255 on average.
MESH_CELL = 0.25
CUBE_RGBA = np.array([0.96, 0.26, 0.33, 1.0])  # OGBench's red (cube 0)
RECOLOUR_RGBA = np.array([0.35, 0.55, 0.91, 1.0])  # OGBench's blue
# OGBench's sampling boxes (ManipSpaceEnv): the arm's random poses, the cube's targets (x, y).
ARM_BOUNDS = (np.array([0.25, -0.35, 0.20]), np.array([0.6, 0.35, 0.35]))
TARGET_BOUNDS = (np.array([0.3, -0.3]), np.array([0.55, 0.3]))


class _OGBenchCube(OGBenchCubeEnv):
    """OGBench's cube world without its own rendering: `CubeEnv` renders observations itself,
    with one renderer it can close, and never pays for a frame it throws away."""

    def compute_observation(self):
        return None


def yaw_of(quat) -> float:
    """Yaw (rad) of a (w, x, y, z) quaternion, as OGBench computes it."""
    return float(SO3(wxyz=np.asarray(quat, dtype=np.float64)).compute_yaw_radians())


class CubeEnv(PixelWorld):
    """Gymnasium OGBench Cube. Observation: RGB image (size, size, 3) uint8; action: (5,) in
    [-1, 1].

    `reset(options={"state": s, "goal_state": g})` sets the start and goal (41-vectors, see
    the module docstring); otherwise both are drawn as OGBench does. `info` holds `state`,
    `proprio`, `goal_state` and `success`; `terminated` is True once the cube is within
    0.04 m of the goal state's cube.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 20}
    name = "cube"

    def __init__(self, size: int = 64, render_mode: str | None = "rgb_array"):
        super().__init__(size, render_mode, action_dim=5)
        self.renderer = None
        # terminate_at_goal=False: success is ours to report. visualize_info=False keeps the
        # translucent target cube hidden and the cube's colour fixed, as in OGBench's visual
        # tasks; mode="data_collection" gives its random start and target sampling.
        self.ogb = _OGBenchCube(env_type="single", ob_type="pixels", width=self.size,
                                height=self.size, terminate_at_goal=False,
                                mode="data_collection", visualize_info=False)
        self.ogb.reset(seed=0)  # builds and compiles the MuJoCo model
        self.model, self.data = self.ogb.model, self.ogb.data
        self._check_layout()
        m = self.model
        self._cube_geom = m.geom("object_0").id
        self._target_mocap = m.body("object_target_0").mocapid[0]
        # Goals are images rendered from the goal state, so the target marker must never
        # show: group 5 is not drawn by the default scene option, whatever its alpha.
        m.geom_group[m.geom("target_object_0").id] = 5
        self._camera = m.camera(CAMERA).id
        self._scratch = mujoco.MjData(m)  # render_state's own data, so the sim is untouched
        self.cube_rgba = CUBE_RGBA.copy()  # changed only by the surprise test's colour event

        low = np.full(STATE_DIM, -np.inf)
        high = np.full(STATE_DIM, np.inf)
        limited = m.jnt_limited[:14].astype(bool)
        low[:14] = np.where(limited, m.jnt_range[:14, 0] - JOINT_SLACK, -np.inf)
        high[:14] = np.where(limited, m.jnt_range[:14, 1] + JOINT_SLACK, np.inf)
        low[CUBE_POS], high[CUBE_POS] = CUBE_LOW, CUBE_HIGH
        low[CUBE_QUAT], high[CUBE_QUAT] = -1.0, 1.0
        self.state_space = gym.spaces.Box(low.astype(np.float32), high.astype(np.float32),
                                          (STATE_DIM,), np.float32)

        # MuJoCo's default 4096^2 shadow map is most of the cost of a frame in software GL
        # (Mesa llvmpipe, the headless default); at 1024^2 frames render ~2x faster and differ
        # by 0.03 / 255 on average (a few pixels at shadow edges).
        m.vis.quality.shadowsize = SHADOW_SIZE
        simplify_meshes(m, MESH_CELL / self.size)
        try:
            self.renderer = mujoco.Renderer(m, self.size, self.size)
        except (ImportError, RuntimeError, mujoco.FatalError, gl_error.Error) as e:
            raise render_failed(e) from e
        keep_egl_display()  # after the first renderer: MuJoCo registers its hook then
        close_at_exit(self)
        self.goal = self._get_state()

    def _check_layout(self) -> None:
        """The index constants above describe OGBench 1.x's model; fail loudly if it changes."""
        m = self.model
        cube = m.joint("object_joint_0")
        if (m.nq, m.nv, int(cube.qposadr[0]), int(cube.dofadr[0])) != (NQ, NV, 14, 14):
            raise LewmError(f"this ogbench's cube model has nq={m.nq}, nv={m.nv} and the cube at "
                            f"qpos {int(cube.qposadr[0])}; lewm expects 21, 20, 14 "
                            "(pip install 'ogbench>=1.1,<2')")
        if not (np.allclose(self.ogb._arm_sampling_bounds, ARM_BOUNDS)
                and np.allclose(self.ogb._target_sampling_bounds, TARGET_BOUNDS)):
            raise LewmError("this ogbench samples arm poses or cube targets from other boxes "
                            "than lewm's copies (pip install 'ogbench>=1.1,<2')")

    def check_state(self, state, what: str = "state") -> np.ndarray:
        """`state` as a float64 41-vector; a LewmError naming what is wrong otherwise."""
        s = np.asarray(state, dtype=np.float64).reshape(-1)
        if s.shape != (STATE_DIM,) or not np.all(np.isfinite(s)):
            raise LewmError(f"Cube {what} must be {STATE_DIM} finite numbers (qpos, qvel), got "
                            f"{s.size} numbers"
                            + ("" if s.size != STATE_DIM else " with NaN or inf"))
        cube = s[CUBE_POS]
        if np.any(cube < CUBE_LOW) or np.any(cube > CUBE_HIGH):
            raise LewmError(f"Cube {what}: cube position {np.round(cube, 4).tolist()} is outside "
                            f"the workspace {CUBE_LOW.tolist()} .. {CUBE_HIGH.tolist()}")
        norm = np.linalg.norm(s[CUBE_QUAT])
        if abs(norm - 1.0) > 1e-3:
            raise LewmError(f"Cube {what}: cube quaternion {np.round(s[CUBE_QUAT], 4).tolist()} "
                            f"has norm {norm:.4f}, not 1")
        low, high = self.state_space.low[:14], self.state_space.high[:14]
        bad = np.flatnonzero((s[:14] < low) | (s[:14] > high))
        if bad.size:
            j = int(bad[0])
            raise LewmError(f"Cube {what}: joint {self.model.joint(j).name} angle {s[j]:.4f} "
                            f"is outside its range [{low[j]:.3f}, {high[j]:.3f}]")
        return s

    def reset(self, *, seed=None, options=None):
        """Start an episode; options may hold "state" and "goal_state" (41-vectors)."""
        super().reset(seed=seed)
        options = options or {}
        start = goal = None
        if "state" in options:
            start = self.check_state(options["state"], "state")
        if "goal_state" in options:
            goal = self.check_state(options["goal_state"], "goal_state")
        # OGBench samples from its own generator; sharing ours makes the seed decide all.
        self.ogb.np_random = self.np_random
        self.ogb.reset()
        if goal is None:
            goal = self._sample_goal()
        if start is None:
            start = self._get_state()
        self.goal = np.asarray(goal, dtype=np.float32)
        # Through set_state even when sampled: reset(seed) and reset(options={"state":
        # info["state"], ...}) then leave bit-identical simulations.
        self.set_state(start)
        return self.render(), self._info()

    def _sample_goal(self) -> np.ndarray:
        """The goal state: the cube resting at OGBench's sampled target, the arm at a fresh
        random pose (as OGBench makes its task goals)."""
        d = self.data
        saved = d.qpos.copy()
        self.ogb.initialize_arm()  # draws from np_random
        d.qpos[CUBE_POS] = d.mocap_pos[self._target_mocap]
        d.qpos[CUBE_QUAT] = d.mocap_quat[self._target_mocap]
        goal = self._get_state()
        d.qpos[:] = saved
        mujoco.mj_forward(self.model, d)
        return goal

    def step(self, action):
        """Apply one 5-D action for 0.05 s; returns (obs, 0.0, success, False, info)."""
        a = np.asarray(action, dtype=np.float64).reshape(-1)
        if a.shape != (5,) or not np.all(np.isfinite(a)):
            raise LewmError(f"Cube action must be 5 finite numbers, got {action!r}")
        self.ogb.step(np.clip(a, -1.0, 1.0))
        # OGBench leaves positions-derived quantities one physics step stale; refresh them so
        # that proprio and the image describe the state, exactly as after set_state(state).
        self._forward(self.data)
        info = self._info()
        return self.render(), 0.0, bool(info["success"]), False, info

    def set_state(self, state) -> None:
        """Set the simulation to a 41-vector state (see the module docstring)."""
        s = self.check_state(state)
        m, d = self.model, self.data
        # From a clean MjData, so that nothing but the state (no solver warm start, no old
        # control) carries over: equal states then step identically.
        mujoco.mj_resetData(m, d)
        d.qpos[:] = s[:NQ]
        d.qvel[:] = s[NQ:]
        # OGBench's own success flag reads the (hidden) target mocap body; keep it truthful.
        d.mocap_pos[self._target_mocap] = self.goal[CUBE_POS]
        d.mocap_quat[self._target_mocap] = self.goal[CUBE_QUAT]
        self._forward(d)

    def _forward(self, d) -> None:
        mujoco.mj_forward(self.model, d)
        mujoco.mj_rnePostConstraint(self.model, d)  # contact forces, for gripper contact

    def success(self, state=None, goal_state=None) -> bool:
        """Whether the cube of `state` (default: now) is within 0.04 m of that of
        `goal_state` (default: the episode's goal)."""
        s = self._get_state() if state is None else np.asarray(state, dtype=np.float64)
        g = self.goal if goal_state is None else np.asarray(goal_state, dtype=np.float64)
        dist = np.linalg.norm(np.asarray(s[CUBE_POS], np.float64) - g[CUBE_POS])
        return bool(dist < SUCCESS_RADIUS)

    success_rule = f"the cube's centre within {SUCCESS_RADIUS:g} m of the goal's"
    strict_rule = (f"the cube's centre within {SUCCESS_RADIUS:g} m of the goal's and its "
                   "orientation within 30 deg of the goal's modulo the cube's symmetries (on a "
                   "face: yaw modulo 90 deg), for 3 steps in a row")

    def strict_success(self, state=None, goal_state=None) -> bool:
        """The authors' predicate and the cube's orientation (`lewm.envs.rotations`)."""
        s = self._get_state() if state is None else np.asarray(state, dtype=np.float64)
        g = self.goal if goal_state is None else np.asarray(goal_state, dtype=np.float64)
        return self.success(s, g) and cube_angle(s[CUBE_QUAT], g[CUBE_QUAT]) < STRICT_ANGLE

    @staticmethod
    def at_rest(state) -> np.ndarray:
        """Every joint velocity zeroed: the arm's, the gripper's and the cube's."""
        s = np.asarray(state, dtype=np.float64).copy()
        s[QVEL] = 0.0
        return s

    def render(self):
        """The current image (size, size, 3) uint8."""
        return self._render(self.data)

    def render_state(self, state) -> np.ndarray:
        """The image the env would show at `state`; the simulation is not touched."""
        return self._render(self._scratch_at(state))

    def _scratch_at(self, state):
        """render_state's own MjData put at `state` (the simulation is not touched)."""
        s = self.check_state(state)
        d = self._scratch
        d.qpos[:] = s[:NQ]
        d.qvel[:] = s[NQ:]
        mujoco.mj_forward(self.model, d)
        return d

    def goal_pixels(self) -> np.ndarray:
        """The goal image: the scene rendered at the goal state."""
        return self.render_state(self.goal)

    FLOOR_GEOMS = ("floor", "wall_0", "wall_1", "wall_2", "wall_3")

    @property
    def knows_floor(self) -> bool:
        return True

    def background_weights(self, frame, state=None) -> np.ndarray:
        """1 where the camera sees the floor, the arena's walls or the sky (MuJoCo's
        segmentation rendering, at `state` or the current one), 0 on the arm and cube."""
        d = self.data if state is None else self._scratch_at(state)
        if self.renderer is None:
            raise LewmError("this Cube env is closed")
        self.renderer.enable_segmentation_rendering()
        try:
            self.renderer.update_scene(d, camera=self._camera)
            seg = self.renderer.render()  # (H, W, 2): object id, object type
        finally:
            self.renderer.disable_segmentation_rendering()
        from lewm.perturb import segmentation_floor

        ids = [mujoco.mj_name2id(self.model, mujoco.mjtObj.mjOBJ_GEOM, n)
               for n in self.FLOOR_GEOMS]
        return segmentation_floor(seg, ids, mujoco.mjtObj.mjOBJ_GEOM)

    def _render(self, d) -> np.ndarray:
        if self.renderer is None:
            raise LewmError("this Cube env is closed")
        self.model.geom_rgba[self._cube_geom] = self.cube_rgba
        self.renderer.update_scene(d, camera=self._camera)
        return self.renderer.render()

    def close(self) -> None:
        """Free the renderer's GL context (safe to call more than once)."""
        renderer, self.renderer = getattr(self, "renderer", None), None
        if renderer is not None:
            renderer.close()
        closed(self)

    def __del__(self):
        self.close()

    def _get_state(self) -> np.ndarray:
        return np.concatenate([self.data.qpos, self.data.qvel]).astype(np.float32)

    def _proprio(self) -> np.ndarray:
        ob = self.ogb.compute_ob_info()
        return np.concatenate([ob["proprio/effector_pos"], ob["proprio/effector_yaw"],
                               ob["proprio/gripper_opening"],
                               ob["proprio/gripper_contact"]]).astype(np.float32)

    def _info(self):
        state = self._get_state()
        return {
            "state": state,
            "proprio": self._proprio(),
            "goal_state": self.goal.copy(),
            "success": self.success(state),
        }


def teleport(env: CubeEnv, rng: np.random.Generator) -> None:
    """Move the cube, at rest, to a random place on the table at least 0.1 m from where it
    was and clear of the gripper (a physical violation for the surprise test)."""
    s = env._get_state().astype(np.float64)
    eff = env._proprio()[EFF_POS]
    while True:
        xy = rng.uniform(*TARGET_BOUNDS)
        if np.linalg.norm(xy - s[CUBE_POS][:2]) >= 0.1 and np.linalg.norm(xy - eff[:2]) >= 0.08:
            break
    s[CUBE_POS] = (xy[0], xy[1], CUBE_HALF)
    # Upright, keeping its yaw: a cube tilted in the gripper would otherwise start in the table.
    s[CUBE_QUAT] = SO3.from_z_radians(yaw_of(s[CUBE_QUAT])).wxyz
    s[CUBE_VEL] = 0.0
    env.set_state(s)


def recolour(env: CubeEnv, rng: np.random.Generator) -> None:
    """Paint the cube blue in every later image (a visual violation for the surprise test)."""
    env.cube_rgba = RECOLOUR_RGBA.copy()
