"""Golden numerics: files recorded from the planner and training as they stood before the
planning subsystem was restructured (issue 44), so that the move changes no number.

Regenerate only on purpose: the numbers a user sees are meant to stay. The training numbers
are those of one torch thread, as `make test` runs (OMP_NUM_THREADS=1): other thread counts
sum in another order."""

import json
from pathlib import Path

import numpy as np
import torch
from golden_world import PointWorld, fixed_model

from lewm.planning.cem import cem
from lewm.planning.config import CEMConfig
from lewm.planning.cost import latent_cost
from lewm.planning.mpc import plan_setup, run_mpc
from lewm.planning.registry import make_planner
from lewm.recipes import RECIPES

GOLDEN = Path(__file__).parent / "golden"


def test_every_cpu_recipe_plans_the_recorded_actions():
    """pusht-cpu (shrinking horizon, carry std, clipped pink iCEM), reacher-cpu and cube-cpu
    (path cost, 3 context frames) and tworoom-cpu, on a fixed model and a synthetic world."""
    recorded = json.loads((GOLDEN / "recipe_plans.json").read_text())
    for recipe, A in (("pusht-cpu", 2), ("reacher-cpu", 2), ("cube-cpu", 5), ("tworoom-cpu", 2)):
        plan = RECIPES[recipe].plan
        model = fixed_model(A, 1 if recipe == "tworoom-cpu" else 3)
        envs = [PointWorld(A, seed=s) for s in range(3)]
        obs = [e.first_obs() for e in envs]
        goals = np.stack([e.goal_pixels() for e in envs])
        planner = make_planner(plan, model, plan_setup(model, envs[0].action_space, seed=7))
        logs, _ = run_mpc(model, planner, envs, obs, goals, plan.mpc, budget=30,
                          episode_ids=[0, 1, 2])
        for env, want in zip(envs, recorded[recipe]["actions"]):
            np.testing.assert_allclose(np.asarray(env.taken), np.asarray(want), atol=1e-4,
                                       err_msg=recipe)
        assert [log.steps for log in logs] == recorded[recipe]["steps"], recipe


def test_tiny_training_embeddings_and_one_cem_plan_are_the_recorded_numbers(tiny_run):
    import lewm

    golden = json.loads((GOLDEN / "tiny.json").read_text())
    lines = [json.loads(line) for line in open(tiny_run / "metrics.jsonl")]
    last = [m for m in lines if m.get("split") == "train"][-1]
    assert last["step"] == golden["train_step"]
    for key in ("pred_loss", "sigreg", "loss"):
        np.testing.assert_allclose(last[key], golden["train_metrics"][key], rtol=1e-3)
    model = lewm.load(tiny_run)
    frames = np.stack([PointWorld(2, seed=s).first_obs() for s in range(4)])
    with torch.no_grad():
        emb = model.encode(torch.from_numpy(frames)[:, None])[:, 0]
        np.testing.assert_allclose(emb.numpy(), np.asarray(golden["embeddings"]), atol=1e-3)
        fm = fixed_model(2, 3)
        ctx = fm.encode(torch.from_numpy(frames[:2])[:, None])
        goal = fm.encode(torch.from_numpy(frames[2:])[:, None])[:, 0]
        plan, best = cem(latent_cost(fm, ctx, None, goal), 2, 10,
                         CEMConfig(samples=64, elites=8, iterations=5),
                         torch.Generator().manual_seed(0), substeps=5, horizon=5)
    np.testing.assert_allclose(plan.numpy(), np.asarray(golden["cem_plan"]), atol=1e-4)
    np.testing.assert_allclose(best.numpy(), np.asarray(golden["cem_best_cost"]), rtol=1e-4)
