"""The two success criteria (lewm.criteria): each world's strict predicate rejects what the
authors' accepts where they differ and accepts a correct case; the hold; rest starts; the
random floor's authors' draws; summaries over training seeds."""

import json

import numpy as np
import pytest
from test_worlds import world_param

from lewm.cli import main
from lewm.criteria import Outcome
from lewm.envs.rotations import CUBE_GROUP, cube_angle, multiply, yaw_quaternion
from lewm.errors import LewmError
from lewm.evaluate import make_envs
from lewm.goals import dataset_pairs, make_goals
from lewm.planning.mpc import run_random
from lewm.protocol import EvalConfig
from lewm.summary import summarise_seeds, table


def judge(env, states, goal) -> Outcome:
    """The outcome of an episode that passes through `states` (the first before acting)."""
    o = Outcome()
    env.goal = np.asarray(goal, dtype=env.goal.dtype)
    for step, s in enumerate(states):
        env.set_state(s)
        o.see(env, step)
    return o


def test_the_cube_group_is_the_24_rotations_and_yaw_is_modulo_90_degrees():
    assert CUBE_GROUP.shape == (48, 4)
    np.testing.assert_allclose(np.linalg.norm(CUBE_GROUP, axis=1), 1.0)
    for q in CUBE_GROUP[::5]:  # closed under products: a group
        prods = CUBE_GROUP @ multiply(q, CUBE_GROUP[7])
        assert np.isclose(np.max(np.abs(prods)), 1.0)
    g = yaw_quaternion(0.4)
    for deg, want in ((0, 0), (20, 20), (45, 45), (70, 20), (90, 0), (180, 0), (-100, 10)):
        q = multiply(yaw_quaternion(np.radians(deg)), g)
        assert np.degrees(cube_angle(q, g)) == pytest.approx(want, abs=1e-4)
    tipped = multiply(g, [np.cos(np.pi / 4), np.sin(np.pi / 4), 0, 0])  # on another face
    assert cube_angle(tipped, g) == pytest.approx(0.0, abs=1e-4)


@pytest.mark.parametrize("world", [world_param("cube")])
def test_cube_strict_needs_the_yaw_and_a_hold(envs, world):
    from lewm.envs.cube import CUBE_QUAT

    env = envs(world)
    _, info = env.reset(seed=3)
    goal = info["state"].astype(np.float64)

    def turned(deg):
        s = goal.copy()
        s[CUBE_QUAT] = multiply(yaw_quaternion(np.radians(deg)), goal[CUBE_QUAT])
        return s

    assert env.success(turned(45), goal) and not env.strict_success(turned(45), goal)
    assert env.strict_success(turned(90), goal) and env.strict_success(turned(20), goal)
    wrong_yaw = judge(env, [turned(45)] * 5, goal)
    assert wrong_yaw.success and wrong_yaw.success_step == 0 and not wrong_yaw.strict_success
    held = judge(env, [turned(45), turned(10), turned(-10), turned(80)], goal)
    assert held.strict_success and held.strict_step == 3 and held.success_step == 0


@pytest.mark.parametrize("world", [world_param("pusht")])
def test_pusht_strict_is_the_block_pose_held_three_steps(envs, world):
    env = envs(world)
    goal = np.array([256.0, 400.0, 256.0, 256.0, np.pi / 4, 0.0, 0.0])
    away = goal + np.array([0, 0, 60.0, 0, 0, 0, 0])
    touched = judge(env, [away, goal, away, away, away], goal)  # pushed through the pose
    assert touched.success and touched.success_step == 1
    assert not touched.strict_success
    held = judge(env, [away, goal, goal, goal, away], goal)
    assert held.strict_success and held.strict_step == 3
    agent_elsewhere = goal + np.array([-150.0, -300.0, 0, 0, 0, 0, 0])  # the block in place
    assert not env.success(agent_elsewhere, goal) and env.strict_success(agent_elsewhere, goal)
    turned = goal + np.array([0, 0, 0, 0, np.pi / 6, 0, 0])
    assert not env.strict_success(turned, goal)


def test_tworoom_strict_is_the_authors_predicate_held_three_steps(envs):
    env = envs("tworoom")
    goal = np.array([60.0, 60.0])
    near, far = np.array([70.0, 60.0]), np.array([90.0, 60.0])
    o = judge(env, [far, near, far, near, near, near], goal)
    assert o.success_step == 1 and o.strict_step == 5
    assert not judge(env, [far, near, near, far], goal).strict_success


@pytest.mark.parametrize("world", [world_param("reacher")])
def test_reacher_strict_is_a_first_hit_of_the_wrapped_angles(envs, world):
    env = envs(world)
    goal = np.array([np.pi - 0.01, 0.5, 0.0, 0.0])
    across = np.array([-np.pi + 0.01, 0.5, 0.0, 0.0])  # 0.02 rad away, across +-pi
    o = judge(env, [np.zeros(4), across, np.zeros(4)], goal)
    assert o.success_step == 1 and o.strict_step == 1 and env.strict_hold == 1


def test_an_episode_runs_on_after_the_authors_success_to_decide_the_strict_one(envs):
    env = envs("tworoom")
    o = Outcome()
    env.goal = np.array([60.0, 60.0])
    env.set_state([60.0, 60.0])
    o.see(env, 0)
    assert o.success and not o.decided  # solved at the start, but not yet held
    o.see(env, 1), o.see(env, 2)
    assert o.decided and o.strict_step == 2


def test_the_random_floor_keeps_its_authors_draws(tworoom_file):
    """Under the authors' criterion the random policy takes exactly the actions it always
    did (one stream, each episode stopping at its success); the steps run on to decide the
    strict criterion draw from a stream of their own."""
    pairs = dataset_pairs(tworoom_file, 12, offset=25, seed=42)
    envs_, _ = make_envs("tworoom", 16, pairs)
    rng, old = np.random.default_rng(3), []
    for env in envs_:  # the algorithm before the strict criterion
        ok = env.success()
        for _ in range(50):
            if ok:
                break
            _, _, ok, _, _ = env.step(rng.uniform(env.action_space.low, env.action_space.high))
        old.append(bool(ok))
    envs_, _ = make_envs("tworoom", 16, pairs)
    new = run_random(envs_, 50, seed=3)
    assert [o.success for o in new] == old
    assert run_random(make_envs("tworoom", 16, pairs)[0], 50, seed=3) == new


@pytest.mark.parametrize("world,velocity", [
    pytest.param("pusht", slice(5, 7), marks=world_param("pusht").marks),
    pytest.param("reacher", slice(2, 4), marks=world_param("reacher").marks),
    pytest.param("cube", slice(21, 41), marks=world_param("cube").marks),
    ("tworoom", slice(0, 0)),
])
def test_rest_starts_zero_the_start_velocities_only(envs, world, velocity, tmp_path):
    env = envs(world)
    states = []
    for seed in range(3):
        env.reset(seed=seed)
        for _ in range(4):
            info = env.step(np.full(env.action_space.shape, 0.8, np.float32))[-1]  # moving
        states.append(info["state"])
    pairs = {"pairs": [{"start": np.asarray(s).tolist(), "goal": np.asarray(s).tolist()}
                       for s in states]}
    path = tmp_path / "pairs.json"
    path.write_text(json.dumps(pairs))
    recorded = make_goals(str(path), world, 3, 0)
    rest = make_goals(str(path), world, 3, 0, start="rest")
    assert rest.start == "rest" and recorded.start == "recorded"
    for (s0, g0), (s1, g1) in zip(recorded.pairs, rest.pairs):
        np.testing.assert_array_equal(g0, g1)
        assert np.all(np.asarray(s1)[velocity] == 0)
        keep = np.ones(len(s0), bool)
        keep[velocity] = False
        np.testing.assert_array_equal(np.asarray(s0)[keep], np.asarray(s1)[keep])
    if velocity.stop:  # something was moving: the manifest is another one
        assert any(np.any(np.asarray(s)[velocity] != 0) for s, _ in recorded.pairs)
        assert rest.sha256 != recorded.sha256
    with pytest.raises(LewmError, match="--start"):
        EvalConfig(start="still")


def fake_eval(path, checkpoint, manifest, success, strict, random=None, world="tworoom",
              planner="cem"):
    random = random or [False] * len(success)
    doc = {"world": world, "planner": planner, "checkpoint_sha256": checkpoint,
           "manifest": {"sha256": manifest},
           "strict": {}, "criteria": {"authors": "a", "strict": "s"},
           "episodes": [{"success": a, "strict_success": b, "random_success": r,
                         "random_strict_success": r} for a, b, r in zip(success, strict, random)]}
    path.write_text(json.dumps(doc))
    return str(path)


def test_a_summary_over_seeds_gives_mean_std_and_the_pooled_interval(tmp_path):
    from lewm.summary import read_eval

    a = fake_eval(tmp_path / "a.json", "s0", "m1", [1, 1, 1, 0], [1, 0, 1, 0], [1, 0, 0, 0])
    b = fake_eval(tmp_path / "b.json", "s1", "m1", [1, 0, 0, 0], [0, 0, 0, 0])
    s = summarise_seeds([read_eval(a), read_eval(b)])
    assert s["authors"]["mean"] == pytest.approx(0.5)
    assert s["authors"]["std"] == pytest.approx(np.std([0.75, 0.25], ddof=1))
    assert s["authors"]["pooled_rate"] == pytest.approx(4 / 8)
    assert s["strict"]["pooled_rate"] == pytest.approx(2 / 8)
    assert s["authors"]["random_pooled_rate"] == pytest.approx(1 / 8)
    lo, hi = s["authors"]["pooled_ci95"]
    assert lo < 0.5 < hi
    assert "| pooled (95 % CI) | 8 |" in table(s)
    # one model on two episode sets pools them; the other must have the same two
    c = fake_eval(tmp_path / "c.json", "s0", "m2", [1, 1], [1, 1])
    with pytest.raises(LewmError, match="other episodes"):
        summarise_seeds([read_eval(a), read_eval(b), read_eval(c)])
    d = fake_eval(tmp_path / "d.json", "s1", "m2", [0, 1], [0, 1])
    s = summarise_seeds([read_eval(p) for p in (a, b, c, d)])
    assert s["episodes"] == 12 and s["models"][0]["episodes"] == 6


def test_the_summary_verb_refuses_in_one_line(tmp_path, capsys):
    a = fake_eval(tmp_path / "a.json", "s0", "m1", [1], [1])
    b = fake_eval(tmp_path / "b.json", "s1", "m2", [1], [1])
    old = tmp_path / "old.json"
    old.write_text(json.dumps({"world": "tworoom", "episodes": [{"success": True}]}))
    other = fake_eval(tmp_path / "o.json", "s2", "m1", [1], [1], world="pusht")
    actor = fake_eval(tmp_path / "actor.json", "s1", "m1", [1], [1], planner="actor")
    for args, says in (([a, b], "other episodes"), ([a, str(old)], "strict criterion"),
                       ([a, other], "several worlds"), ([a, a], "twice"),
                       ([a, actor], "several planners"),
                       ([str(tmp_path / "none.json")], "no such evaluation")):
        assert main(["summary", *args]) == 2
        err = capsys.readouterr().err
        assert says in err and len(err.strip().splitlines()) == 1
    out = tmp_path / "sum.json"
    assert main(["summary", a, "--out", str(out)]) == 0
    assert json.loads(out.read_text())["episodes"] == 1 and out.with_suffix(".md").exists()
    assert main(["summary", a, "--out", str(out)]) == 2  # exists: needs --force
    assert main(["summary", a, "--out", a, "--force"]) == 2  # never over an input
    assert json.loads((tmp_path / "a.json").read_text())["checkpoint_sha256"] == "s0"
