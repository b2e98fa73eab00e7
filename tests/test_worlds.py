"""The environment contract, parametrised over every world: spaces, dtypes, determinism for a
seed, set-state round trip, the success rule on hand-made states, and bad input. Worlds whose
optional extra is not installed are skipped (CI installs them all)."""

import importlib.util

import numpy as np
import pytest

from lewm.envs import GYM_IDS, make_env, require
from lewm.envs.policies import make_policy
from lewm.errors import LewmError
from lewm.worlds import get_world


def installed(world: str) -> bool:
    return all(importlib.util.find_spec(p) for p in get_world(world).packages)


def world_param(world):
    return pytest.param(world, marks=pytest.mark.skipif(
        not installed(world), reason=f"lewm[{get_world(world).extra}] not installed"))


ALL = [world_param(w) for w in GYM_IDS]
ACTION_DIM = {"tworoom": 2, "pusht": 2, "reacher": 2, "cube": 5}


@pytest.mark.parametrize("world", ALL)
def test_spaces_and_dtypes(envs, world):
    env = envs(world)
    obs, info = env.reset(seed=0)
    assert obs.dtype == np.uint8 and obs.shape == (32, 32, 3)
    assert env.observation_space.contains(obs)
    assert env.action_space.shape == (ACTION_DIM[world],)
    assert env.action_space.dtype == np.float32
    np.testing.assert_array_equal(env.action_space.low, -1)
    np.testing.assert_array_equal(env.action_space.high, 1)
    assert info["state"].shape == env.state_space.shape
    assert info["goal_state"].shape == info["state"].shape
    for key in ("state", "proprio", "goal_state"):
        assert info[key].dtype == np.float32 and np.all(np.isfinite(info[key]))
    assert isinstance(info["success"], bool)
    obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
    assert obs.shape == (32, 32, 3) and isinstance(terminated, bool) and truncated is False
    assert terminated == info["success"]
    assert env.goal_pixels().shape == (32, 32, 3)


@pytest.mark.parametrize("world", ALL)
def test_same_seed_same_trajectory(world):
    def trajectory(seed):
        env = make_env(world, 32)
        obs, info = env.reset(seed=seed)
        rng = np.random.default_rng(0)
        frames, states = [obs], [info["state"]]
        for _ in range(6):
            obs, _, _, _, info = env.step(rng.uniform(-1, 1, ACTION_DIM[world]))
            frames.append(obs)
            states.append(info["state"])
        env.close()
        return np.stack(frames), np.stack(states)

    a, b, c = trajectory(5), trajectory(5), trajectory(6)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[1], c[1])


@pytest.mark.parametrize("world", ALL)
def test_set_state_round_trip(envs, world):
    env = envs(world)
    _, info = env.reset(seed=1)
    for _ in range(3):
        *_, info = env.step(env.action_space.sample())
    state, goal = info["state"], info["goal_state"]
    image = env.render()
    _, again = env.reset(seed=123, options={"state": state, "goal_state": goal})
    np.testing.assert_allclose(again["state"], state, atol=1e-5)
    np.testing.assert_allclose(again["goal_state"], goal, atol=1e-5)
    # float32 states restore MuJoCo worlds to float32 precision: a pixel may move a level.
    assert np.abs(env.render().astype(int) - image).mean() < 0.5
    # render_state shows another state without moving the simulation.
    env.render_state(goal)
    np.testing.assert_allclose(env._info()["state"], state, atol=1e-5)


@pytest.mark.parametrize("world", ALL)
def test_reset_with_goal_reports_success_at_the_goal(envs, world):
    env = envs(world)
    _, info = env.reset(seed=2)
    _, info = env.reset(seed=0, options={"state": info["state"], "goal_state": info["state"]})
    assert info["success"] and env.success()
    np.testing.assert_array_equal(env.goal_pixels(), env.render())


def _perturbed(world, state, amount):
    """`state` with the success-relevant quantity moved by `amount` (in its own units)."""
    s = np.array(state, dtype=np.float64)
    index = {"tworoom": 1, "pusht": 2, "reacher": 0, "cube": 14}[world]
    s[index] += amount
    return s


# (world, (amount inside the tolerance, amount outside it)) for the quantity `_perturbed` moves.
TOLERANCES = [("tworoom", (15.0, 17.0)), ("pusht", (19.0, 21.0)), ("reacher", (0.045, 0.055)),
              ("cube", (0.035, 0.045))]


@pytest.mark.parametrize("world,amounts", [pytest.param(w, a, marks=world_param(w).marks)
                                           for w, a in TOLERANCES])
def test_success_rule_on_hand_made_states(envs, world, amounts):
    env = envs(world)
    _, info = env.reset(seed=3)
    s = info["state"].astype(np.float64)
    inside, outside = amounts
    assert env.success(s, s)
    assert env.success(_perturbed(world, s, inside), s)
    assert not env.success(_perturbed(world, s, outside), s)


def test_pusht_success_rule_needs_the_angle_and_wraps_it():
    pytest.importorskip("pymunk")
    from lewm.envs.pusht import PushTEnv

    s = np.array([100, 100, 256, 256, 0.05, 0, 0])
    g = s.copy()
    g[4] = 2 * np.pi - 0.05  # 0.1 rad apart across the wrap
    assert PushTEnv.is_success(s, g)
    g[4] = 0.05 + np.pi / 9 + 0.01
    assert not PushTEnv.is_success(s, g)
    g = s.copy()
    g[0] += 15  # the agent counts too: sqrt(15^2 + 15^2) > 20
    g[2] += 15
    assert not PushTEnv.is_success(s, g)


def test_reacher_success_rule_wraps_the_shoulder():
    pytest.importorskip("dm_control")
    from lewm.envs.reacher import ReacherEnv

    env = make_env("reacher", 16)
    assert env.success([np.pi - 0.01, 0.3, 0, 0], [-np.pi + 0.01, 0.3, 0, 0])
    assert not env.success([0.0, 0.3, 0, 0], [0.0, 0.36, 0, 0])
    assert isinstance(env, ReacherEnv)
    env.close()


BAD_STATES = {
    "tworoom": [[0.0, 0.0], [np.nan, 50.0], [50.0]],
    "pusht": [[-10, 100, 256, 256, 0, 0, 0], [100, 100, 256, 600, 0, 0, 0],
              [100, 100, 256, 256, np.nan, 0, 0], [1, 2, 3]],
    "reacher": [[0.0, 4.0, 0.0, 0.0], [0.0, 0.0, 100.0, 0.0], [0.0, 0.0]],
    "cube": ["cube at x = 2", "nan", "short"],
}


@pytest.mark.parametrize("world", ALL)
def test_bad_states_are_one_line_errors(envs, world):
    env = envs(world)
    _, info = env.reset(seed=4)
    for bad in BAD_STATES[world]:
        if world == "cube":  # built from a valid state: the layout is long
            s = info["state"].astype(np.float64)
            bad = {"cube at x = 2": np.r_[s[:14], 2.0, s[15:]],
                   "nan": np.r_[np.nan, s[1:]], "short": s[:10]}[bad]
        for key in ("state", "goal_state"):
            with pytest.raises(LewmError) as e:
                env.reset(seed=0, options={key: bad})
            assert "\n" not in str(e.value)


@pytest.mark.parametrize("world", ALL)
def test_every_policy_acts_in_the_box(envs, world):
    env = envs(world)
    for name in get_world(world).policies:
        obs, info = env.reset(seed=5)
        policy = make_policy(world, name, env)
        policy.reset(info, np.random.default_rng(0))
        for _ in range(3):
            a = policy(obs, info)
            assert a.shape == (ACTION_DIM[world],) and a.dtype == np.float32
            assert np.all(np.abs(a) <= 1)
            obs, _, _, _, info = env.step(a)
    assert get_world(world).default_policy in get_world(world).policies


@pytest.mark.parametrize("world", ALL)
def test_unknown_policy_is_a_one_line_error(envs, world):
    with pytest.raises(LewmError, match=f"world '{world}' has no policy 'bogus'"):
        make_policy(world, "bogus", envs(world))


@pytest.mark.parametrize("noise", [-0.1, float("nan")])
def test_scripted_policy_noise_must_be_non_negative(noise):
    with pytest.raises(LewmError, match="noise std must be >= 0"):
        make_policy("tworoom", "noisy-expert", None, noise_std=noise)


def test_missing_extra_names_the_pip_install(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "pymunk" else real(name, *a))
    with pytest.raises(LewmError, match=r"pip install 'lewm\[pusht\]'"):
        require("pusht")


def test_no_gl_backend_names_the_debian_packages(monkeypatch):
    import sys

    from lewm.envs import gl

    monkeypatch.delenv("MUJOCO_GL", raising=False)
    monkeypatch.delitem(sys.modules, "mujoco", raising=False)  # as before its first import
    monkeypatch.setattr(gl, "_loads", lambda names: False)
    with pytest.raises(LewmError, match="libegl1.*libosmesa6"):
        gl.configure()


def test_pusht_expert_pushes_the_block_to_its_goal():
    """Without noise, the expert solves a nearby goal: a short push and a small turn."""
    pytest.importorskip("pymunk")
    env = make_env("pusht", 32)
    start = np.array([150, 300, 256, 256, 0.3, 0, 0])
    goal = np.array([200, 330, 296, 236, 0.6, 0, 0])
    obs, info = env.reset(seed=0, options={"state": start, "goal_state": goal})
    policy = make_policy("pusht", "expert", env, noise_std=0.0)
    policy.reset(info, np.random.default_rng(0))
    for _ in range(200):
        obs, _, terminated, _, info = env.step(policy(obs, info))
        if terminated:
            break
    assert terminated


def test_pusht_block_only_moves_when_pushed():
    """Quasi-static physics (space damping 0): the agent moving away leaves the block still."""
    pytest.importorskip("pymunk")
    env = make_env("pusht", 32)
    _, info = env.reset(seed=0, options={"state": [100, 100, 300, 300, 1.0, 0, 0]})
    for _ in range(10):
        *_, info = env.step(np.array([-0.5, -0.5]))
    np.testing.assert_allclose(info["state"][2:5], [300, 300, 1.0], atol=1e-6)


def test_mujoco_imported_before_lewm_is_a_clear_error(monkeypatch):
    import sys
    import types

    from lewm.envs import gl

    monkeypatch.delenv("MUJOCO_GL", raising=False)
    monkeypatch.setitem(sys.modules, "mujoco", types.ModuleType("mujoco"))
    with pytest.raises(LewmError, match="set MUJOCO_GL=egl"):
        gl.configure()


@pytest.mark.skipif(not installed("cube"), reason="lewm[cube] not installed")
def test_simplified_cube_meshes_leave_the_physics_alone():
    """Cube's coarser visual meshes change the images a little and the trajectory not at all."""
    from lewm.envs import cube
    from lewm.envs.meshes import cluster_faces

    verts = np.array([[0, 0, 0], [1e-4, 0, 0], [1, 0, 0], [0, 1, 0]], dtype=float)
    faces = np.array([[0, 2, 3], [1, 2, 3], [0, 1, 2]])
    kept, new = cluster_faces(verts, faces, cell=0.01)
    assert kept.tolist() == [0] and new.tolist() == [[0, 2, 3]]  # a copy and a sliver go

    def run(cell):
        cube.MESH_CELL = cell
        env = make_env("cube", 32)
        faces = int(env.model.mesh_facenum.sum())
        obs, info = env.reset(seed=7)
        rng = np.random.default_rng(0)
        frames, states = [obs], [info["state"]]
        for _ in range(5):
            obs, _, _, _, info = env.step(rng.uniform(-1, 1, 5))
            frames.append(obs)
            states.append(info["state"])
        env.close()
        return faces, np.stack(frames).astype(int), np.stack(states)

    default = cube.MESH_CELL
    try:
        fine, coarse = run(1e-9), run(default)
    finally:
        cube.MESH_CELL = default
    assert coarse[0] < fine[0] / 4
    np.testing.assert_array_equal(coarse[2], fine[2])
    assert np.abs(coarse[1] - fine[1]).mean() < 1.0


def test_pusht_frames_are_drawn_as_the_authors_draw_them():
    """Push-T at 224 px as the authors' renderer draws it (docs/parity.md): light-grey walls
    3-8 canvas px from the edge, the block light inside with a darker outline, the agent a
    RoyalBlue ring around a lighter disc."""
    pytest.importorskip("pymunk")
    from lewm.envs.pusht import AGENT_RGB, BLOCK_RGB, WALL_RGB, light

    env = make_env("pusht", 224)
    img = env.render_state(np.array([100.0, 100.0, 300.0, 300.0, 0.0, 0.0, 0.0]))
    px = lambda x, y: tuple(int(v) for v in img[round(y * 224 / 512), round(x * 224 / 512)])
    assert px(5, 256) == tuple(WALL_RGB.astype(int)) == px(256, 506)
    assert px(256, 256) == (255, 255, 255)
    assert px(300, 315) == tuple(light(BLOCK_RGB).astype(int))  # inside the bar
    edge = np.array(px(300, 300))  # on the bar's outer edge: the outline, blurred by shrinking
    assert (edge < light(BLOCK_RGB)).all() and (edge >= BLOCK_RGB).all()
    assert px(100, 100) == tuple(light(AGENT_RGB).astype(int))


def test_every_world_declares_every_part():
    """The checklist of docs/adding-a-world.md, for every registered world: its declaration
    in lewm.worlds is complete and points at code that exists, and it has its presets."""
    import importlib

    from lewm.recipes import RECIPES
    from lewm.worlds import WORLDS as DECLARED

    assert set(DECLARED) == set(GYM_IDS)
    for world, declared in DECLARED.items():
        assert declared.name == world and declared.gym_id.startswith("lewm/"), world
        assert declared.default_policy in declared.policies and declared.quantities, world
        assert declared.far_budget > 0, world
        assert (declared.extra is None) == (not declared.packages), world
        for preset in (f"{world}-cpu", f"{world}-paper"):
            recipe = RECIPES[preset]
            assert recipe.train.world == world and recipe.collect.world == world, preset
        for entry in [declared.env, *filter(None, declared.policies.values())]:
            module, name = entry.split(":")
            source = importlib.util.find_spec(module).origin
            assert f"class {name}" in open(source).read(), entry
        text = open(importlib.util.find_spec(declared.module).origin).read()
        assert "def teleport(" in text and "def recolour(" in text, world
