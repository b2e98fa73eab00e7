"""Goals beyond the paper's protocol: far goal sets, goal files and the graph planner."""

import json
from types import SimpleNamespace

import numpy as np
import pytest
from conftest import run_cli
from test_planning import OracleTwoRoom, mpc

from lewm.envs import tworoom
from lewm.errors import LewmError
from lewm.evaluate import make_envs
from lewm.goals import far_pairs, file_pairs
from lewm.planning.config import CEMConfig, PlanConfig
from lewm.protocol import EvalConfig
from lewm.worlds import get_world


def test_two_room_far_pairs_are_in_different_rooms_far_from_the_wall():
    pairs = far_pairs("tworoom", 200, seed=0)
    assert len(pairs) == 200 and get_world("tworoom").far_budget == 200
    for start, goal in pairs:
        assert tworoom.is_free(start) and tworoom.is_free(goal)
        for p in (start, goal):
            assert min(abs(p[0] - tworoom.WALL_X[0]), abs(p[0] - tworoom.WALL_X[1])) >= 40
        assert (start[0] < tworoom.WALL_X[0]) != (goal[0] < tworoom.WALL_X[0])
    again = far_pairs("tworoom", 200, seed=0)
    np.testing.assert_array_equal(np.array(pairs), np.array(again))
    assert not np.array_equal(np.array(pairs), np.array(far_pairs("tworoom", 200, seed=1)))


@pytest.mark.parametrize("content, match", [
    ("not json", "not a JSON goal file"),
    ("[]", "at least one pair"),
    ('{"pairs": [{"start": [30, 30]}]}', "pair 0 must be an object"),
    ('{"pairs": [{"start": [30, 30], "goal": [112, 150]}]}', "pair 0: Two-Room goal"),
    ('{"pairs": [{"start": [30], "goal": [40, 40]}]}', "pair 0: Two-Room start"),
    ('{"pairs": [{"start": [30, 30], "goal": [40, 40]}], "budget": -3}', "budget"),
])
def test_bad_goal_files_are_one_line_errors(tmp_path, content, match):
    path = tmp_path / "goals.json"
    path.write_text(content)
    with pytest.raises(LewmError, match=match) as e:
        file_pairs(path, "tworoom")
    assert str(path) in str(e.value) and "\n" not in str(e.value)


def test_a_goal_file_and_its_budget(tmp_path):
    path = tmp_path / "goals.json"
    path.write_text(json.dumps({"pairs": [{"start": [30, 30], "goal": [190, 190]},
                                          {"start": [50, 180], "goal": [60, 170]}],
                                "budget": 120}))
    pairs, budget = file_pairs(path, "tworoom")
    assert budget == 120 and len(pairs) == 2
    np.testing.assert_array_equal(pairs[0][1], [190, 190])
    with pytest.raises(LewmError, match="no such goal file"):
        file_pairs(tmp_path / "none.json", "tworoom")
    with pytest.raises(LewmError, match="--goals must be"):
        EvalConfig(goals="nowhere")
    with pytest.raises(LewmError, match="--planner must be"):
        PlanConfig(planner="magic")


@pytest.fixture(scope="module")
def wide_file(tmp_path_factory):
    """Enough Two-Room expert episodes that some pass through the door."""
    from lewm.data.collect import CollectConfig, collect

    path = tmp_path_factory.mktemp("far") / "tworoom.h5"
    collect(CollectConfig(episodes=60, steps=100, size=32, seed=5), path, progress=False)
    return path


def test_graph_planner_goes_through_the_door_where_flat_cem_stays_at_the_wall(wide_file):
    """With a perfect model (the latent is the agent position) flat CEM still fails behind
    the wall: it is greedy in latent distance. The route through recorded frames does not."""
    model = OracleTwoRoom()
    model.card = SimpleNamespace(data={"path": str(wide_file), "val_episodes": []})
    pairs = [(np.array([40.0, 180.0]), np.array([185.0, 180.0])),
             (np.array([190.0, 170.0]), np.array([50.0, 190.0]))]
    flat = PlanConfig(solver=CEMConfig(samples=64, elites=8, iterations=5))
    results = {}
    for name, plan in (("flat", flat), ("graph", flat.replace(planner="graph",
                                                              graph={"nodes": 1500}))):
        envs, obs = make_envs("tworoom", 32, pairs)
        goals = np.stack([e.goal_pixels() for e in envs])
        logs, _ = mpc(model, envs, obs, goals, plan, budget=200, seed=0, record={0})
        results[name] = [log.success for log in logs]
        if name == "graph":
            assert len(logs[0].subgoals) == len(logs[0].frames) - 1
    assert results == {"flat": [False, False], "graph": [True, True]}


def test_eval_cli_far_goals_with_the_graph_planner(tiny_run):
    run = tiny_run
    r = run_cli("eval", run, "--goals", "far", "--planner", "graph", "--episodes", 2,
                "--samples", 8, "--elites", 2, "--iterations", 1, "--gifs", 1, "--nodes", 100)
    assert "budget 200 steps" in r.stdout
    result = json.loads((run / "eval.json").read_text())
    assert result["goals"] == "far" and result["planner"] == "graph" and result["budget"] == 200
    assert 0 < result["graph"]["nodes"] <= 100 and result["plan_s_per_episode"] > 0
