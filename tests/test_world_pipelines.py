"""`lewm collect`, `train`, `eval`, `probe` and `surprise` run end to end on every world with
the same flags (tiny sizes: this checks the plumbing, not the figures)."""

import json

import pytest
from test_worlds import ACTION_DIM, world_param

from lewm.cli import main
from lewm.envs import GYM_IDS


def ok(*argv):
    assert main([str(a) for a in argv]) == 0


@pytest.mark.slow
@pytest.mark.parametrize("world", [world_param(w) for w in GYM_IDS])
def test_collect_train_eval_probe_surprise(world, tmp_path, capsys):
    data, run = tmp_path / "data.h5", tmp_path / "run"
    ok("collect", world, "--episodes", 4, "--steps", 30, "--size", 32, "--num-envs", 2,
       "--out", data, "--quiet")
    ok("train", "--preset", "tiny", "--data", data, "--out", run, "--set", f"world={world}",
       "--set", f"model.action_dim={ACTION_DIM[world]}", "--set", "steps=4", "--quiet")
    ok("eval", run, "--episodes", 2, "--offset", 10, "--budget", 10, "--samples", 8,
       "--elites", 2, "--iterations", 2, "--horizon", 2, "--gifs", 1)
    result = json.loads((run / "eval.json").read_text())
    assert result["episodes_evaluated"] == 2 and 0 <= result["success_rate"] <= 1
    ok("probe", run, "--rows", 40)
    probes = json.loads((run / "probe.json").read_text())["probes"]["linear"]
    assert probes and all(-1 <= q["r"] <= 1 for q in probes.values())
    ok("surprise", run, "--trajectories", 2, "--blocks", 4)
    variants = json.loads((run / "surprise.json").read_text())["variants"]
    assert set(variants) == {"teleport", "colour"}
    capsys.readouterr()
