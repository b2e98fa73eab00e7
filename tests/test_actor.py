"""The learned actor (lewm.actor, --planner actor): hindsight pairs stay inside episodes, its
targets are the run's z-scored action blocks, it learns a toy world with oracle latents, and
a run without one is a one-line error naming `lewm train-actor`."""

import json

import numpy as np
import pytest
import torch
from conftest import run_cli
from gymnasium.spaces import Box
from test_planning import OracleTwoRoom

from lewm.actor.config import ActorConfig
from lewm.actor.hindsight import HindsightPairs, action_blocks
from lewm.actor.net import Actor
from lewm.actor.train import fit
from lewm.data.clips import EpisodeData
from lewm.errors import LewmError
from lewm.evaluate import make_envs
from lewm.goals import dataset_pairs
from lewm.model.normalize import ZScore
from lewm.planning.actor import ActorPlanner
from lewm.planning.config import MPCConfig, PlanConfig
from lewm.planning.mpc import plan_setup, run_mpc


def test_hindsight_pairs_never_cross_an_episode_boundary():
    ep_len, ep_offset = np.array([12, 3, 30, 7]), np.array([0, 12, 15, 45])
    pairs = HindsightPairs(ep_offset, ep_len, [0, 1, 2, 3], frameskip=5, max_offset=20)
    t, prev, goal = pairs.draw(20_000, np.random.default_rng(0))
    episode = np.searchsorted(ep_offset, t, side="right") - 1
    first, last = ep_offset[episode], ep_offset[episode] + ep_len[episode] - 1
    assert not np.isin(episode, [1]).any()  # 3 rows: no block of 5 actions
    assert np.all((goal <= last) & (goal - t >= 5) & (goal - t <= 20))
    assert np.all(t + 5 - 1 <= last - 1)  # the block's actions exist (the last row has none)
    assert np.all((prev == t - 5) | ((prev == t) & (t - 5 < first)))
    assert np.all(prev >= first)
    with pytest.raises(ValueError):
        HindsightPairs(ep_offset, ep_len, [1], frameskip=5, max_offset=20)


def test_the_targets_are_the_runs_z_scored_action_blocks():
    actions = np.arange(40, dtype=np.float32).reshape(20, 2)
    z = ZScore(np.array([1.0, 2.0], np.float32), np.array([2.0, 4.0], np.float32)).blocks(3)
    raw = action_blocks(actions, np.array([4]), 3)
    np.testing.assert_array_equal(raw[0], actions[4:7].reshape(-1))  # in time order
    np.testing.assert_allclose(z.from_z(z.to_z(raw)), raw)
    np.testing.assert_allclose(z.to_z(raw)[0, :2], (actions[4] - [1.0, 2.0]) / [2.0, 4.0])


@pytest.mark.parametrize("loss", ["mse", "gaussian"])
def test_the_actor_learns_a_toy_world_with_oracle_latents(tmp_path, loss):
    """On Two-Room's noisy-expert data with the agent's position as the latent, the actor
    reaches the protocol's goals in closed loop, trained on either likelihood."""
    from lewm.data.collect import CollectConfig, collect

    path = tmp_path / "tworoom.h5"
    collect(CollectConfig(episodes=120, steps=60, size=16, seed=5), path, progress=False)
    data = EpisodeData(path)
    emb = torch.from_numpy(data.lowdim["state"][:, :2].copy())  # oracle latents: x, y
    model = OracleTwoRoom()
    blocks_z = model.trained_card.action.blocks(5)
    rng = np.random.default_rng(0)
    pairs = HindsightPairs(data.ep_offset, data.ep_len, range(data.num_episodes), 5, 40)
    cfg = ActorConfig(hidden=128, depth=2, steps=1500, batch_size=256, lr=3e-3, loss=loss)
    torch.manual_seed(0)
    net = Actor(2, 10, cfg.hidden, cfg.depth, gaussian=loss == "gaussian")
    metrics = fit(net, emb, data.action, pairs, pairs.draw(1024, rng), blocks_z, cfg, rng)
    assert metrics[-1]["val_mse"] < metrics[0]["val_mse"] or len(metrics) == 1

    goal_pairs = dataset_pairs(path, 30, offset=25, seed=42)
    envs, obs = make_envs("tworoom", 16, goal_pairs)
    goals = np.stack([e.goal_pixels() for e in envs])
    plan = PlanConfig(planner="actor", mpc=MPCConfig(horizon=1, replan=1, context=2))
    planner = ActorPlanner.with_net(plan, model, plan_setup(model, envs[0].action_space), net)
    logs, _ = run_mpc(model, planner, envs, obs, goals, plan.mpc, budget=50)
    success = np.mean([log.success for log in logs])
    assert success >= 0.9, success


def test_a_run_without_an_actor_is_one_line_naming_train_actor(tiny_run):
    r = run_cli("eval", tiny_run, "--planner", "actor", "--episodes", 2, "--gifs", 0,
                "--force", check=False)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "lewm train-actor" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_train_actor_writes_an_actor_the_planner_acts_with(tiny_run):
    run_cli("train-actor", tiny_run, "--steps", 40, "--hidden", 32, "--depth", 1, "--quiet")
    meta = json.loads((tiny_run / "actor" / "actor.json").read_text())
    assert meta["block_dim"] == 10 and meta["final"]["step"] == 40
    assert (tiny_run / "actor" / "curves.png").exists()
    r = run_cli("train-actor", tiny_run, "--steps", 40, check=False)
    assert r.returncode == 2 and "--force" in r.stderr  # an actor is never silently replaced
    run_cli("eval", tiny_run, "--planner", "actor", "--replan", 1, "--episodes", 3, "--gifs", 0,
            "--name", "eval-actor.json")
    result = json.loads((tiny_run / "eval-actor.json").read_text())
    assert result["planner"] == "actor" and result["episodes_evaluated"] == 3
    # cached embeddings are reused: a second training embeds nothing new
    again = run_cli("train-actor", tiny_run, "--steps", 40, "--hidden", 32, "--depth", 1,
                    "--force", "--quiet")
    assert "embed 0 s" in again.stdout
    (tiny_run / "actor" / "actor.safetensors").write_bytes(b"broken")
    r = run_cli("eval", tiny_run, "--planner", "actor", "--episodes", 2, "--gifs", 0,
                "--name", "eval-broken.json", check=False)
    assert r.returncode == 2 and "damaged" in r.stderr and "Traceback" not in r.stderr


def test_actor_settings_out_of_range():
    with pytest.raises(LewmError, match="drop_motion"):
        ActorConfig(drop_motion=2.0)
    with pytest.raises(LewmError, match="steps must be >= 1"):
        ActorConfig(steps=0)


def test_the_guard_never_executes_a_plan_the_model_scores_worse_than_the_actors():
    """An untrained actor's proposals, searched around by a small CEM on a perfect model of
    Two-Room: the plan kept costs no more than the proposal, and beats it somewhere."""
    from lewm.planning.actor import GuardedPlanner
    from lewm.planning.base import PlanRequest
    from lewm.planning.config import CEMConfig
    from lewm.planning.cost import latent_cost

    model = OracleTwoRoom()
    torch.manual_seed(0)
    net = Actor(2, 10, 16, 1)
    plan = PlanConfig(planner="guarded", solver=CEMConfig(samples=32, elites=4, iterations=2),
                      mpc=MPCConfig(horizon=2, replan=1, carry_std=0.5))
    space = Box(-1.0, 1.0, (2,))
    guarded = GuardedPlanner.with_net(plan, model, plan_setup(model, space), net)
    actor = ActorPlanner.with_net(plan, model, plan_setup(model, space), net)
    ctx = torch.tensor([[[40.0, 40.0]], [[150.0, 60.0]], [[60.0, 180.0]]])
    goal = torch.tensor([[80.0, 50.0], [180.0, 180.0], [40.0, 150.0]])
    request = PlanRequest([0, 1, 2], ctx, None, goal, 2)
    cost = latent_cost(model, ctx, None, goal)
    kept = cost(guarded.plan(request).blocks[:, None])[:, 0]
    proposed = cost(actor.plan(request).blocks[:, None])[:, 0]
    assert torch.all(kept <= proposed + 1e-4) and torch.any(kept < proposed - 1e-3)


def test_a_recipes_actor_settings_and_plans_travel_with_its_runs(tworoom_file, tmp_path):
    """`lewm train --preset` records the recipe's name, its actor settings and its other
    planners' plans in config.json (kept across a resume); `lewm train-actor` then needs no
    flags, and `lewm eval --planner actor` starts from the recipe's plan for the actor; a
    planner the recipe names no plan for gets lewm's defaults for it."""
    import dataclasses

    from lewm.checkpoint import read_meta
    from lewm.planning.config import run_plan
    from lewm.recipes import get_recipe
    from lewm.train import train

    tiny = get_recipe("tiny")
    recipe = dataclasses.replace(
        tiny, actor=ActorConfig(hidden=24, depth=1, steps=30, max_offset=8),
        acting=(PlanConfig(planner="actor", mpc=MPCConfig(horizon=2, replan=1)),))
    out = tmp_path / "run"
    train(recipe.train, tworoom_file, out, progress=False, recipe=recipe, stop_after=10)
    train(None, None, out, resume=True, progress=False)
    meta = read_meta(out)
    assert meta["recipe"] == "tiny" and meta["actor"]["max_offset"] == 8
    assert run_plan(meta, "actor") == recipe.acting[0]
    assert run_plan(meta) == recipe.plan and run_plan(meta, "cem") == recipe.plan
    guarded = run_plan(meta, "guarded")  # not in the recipe: closed loop, a small search
    assert guarded.planner == "guarded" and guarded.mpc.replan == 1
    assert guarded.solver.samples < recipe.plan.solver.samples
    run_cli("train-actor", out, "--quiet")
    written = json.loads((out / "actor" / "actor.json").read_text())["config"]
    assert written == dataclasses.asdict(recipe.actor)
    r = run_cli("eval", out, "--planner", "actor", "--episodes", 2, "--gifs", 0,
                "--name", "eval-actor.json")
    assert "mpc.horizon=2" in r.stdout
    result = json.loads((out / "eval-actor.json").read_text())
    assert result["config"]["plan"]["mpc"]["horizon"] == 2


def test_runs_without_recipe_sections_act_with_the_defaults(tiny_run):
    from lewm.actor.config import run_actor_config
    from lewm.checkpoint import read_meta
    from lewm.planning.config import run_plan

    meta = read_meta(tiny_run)
    assert "actor" not in meta and run_actor_config(meta) == ActorConfig()
    actor = run_plan(meta, "actor")
    assert (actor.planner, actor.mpc.horizon, actor.mpc.replan) == ("actor", 1, 1)
    with pytest.raises(LewmError, match="unknown to this version"):
        run_actor_config({"actor": {"hidden": 8, "width": 3}})


def test_the_actor_acts_with_an_ensemble_and_towards_the_graphs_subgoals(tiny_run):
    run_cli("train-actor", tiny_run, "--steps", 30, "--hidden", 16, "--depth", 1, "--force",
            "--quiet")
    run_cli("eval", tiny_run, "--planner", "guarded", "--ensemble", tiny_run, "--samples", 16,
            "--elites", 4, "--iterations", 1, "--episodes", 2, "--gifs", 0,
            "--name", "eval-guarded-ensemble.json")
    result = json.loads((tiny_run / "eval-guarded-ensemble.json").read_text())
    assert result["planner"] == "guarded" and len(result["ensemble"]) == 2
    run_cli("eval", tiny_run, "--planner", "graph", "--towards", "actor", "--goals", "far",
            "--nodes", 100, "--probes", 8, "--episodes", 2, "--gifs", 0,
            "--name", "eval-graph-actor.json")
    result = json.loads((tiny_run / "eval-graph-actor.json").read_text())
    assert result["config"]["plan"]["graph"]["towards"] == "actor"
    assert result["graph"]["nodes"] > 0 and result["episodes_evaluated"] == 2
    r = run_cli("eval", tiny_run, "--planner", "graph", "--towards", "graph", "--episodes", 2,
                check=False)
    assert r.returncode == 2 and "--towards" in r.stderr and "Traceback" not in r.stderr


def test_the_consistency_term_trains_the_actor_through_a_frozen_model(tiny_run):
    """`consistency` > 0 adds the predictor's view of the actor's block to the loss: the actor
    learns, and the world model's weights are untouched."""
    from lewm.checkpoint import load_model
    from lewm.data.clips import EpisodeData

    model = load_model(tiny_run).requires_grad_(False)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    data = EpisodeData(model.card.data["path"])
    from lewm.model.embed import embed_frames

    emb = embed_frames(model, np.asarray(data.pixels[:])).float()
    pairs = HindsightPairs(data.ep_offset, data.ep_len, range(data.num_episodes), 5, 20)
    rng = np.random.default_rng(0)
    cfg = ActorConfig(hidden=32, depth=1, steps=60, batch_size=64, consistency=1.0)
    net = Actor(emb.shape[1], 10, cfg.hidden, cfg.depth)
    metrics = fit(net, emb, data.action, pairs, pairs.draw(256, rng),
                  model.card.action.blocks(5), cfg, rng, model=model)
    assert len(metrics) > 1 and all(np.isfinite(m["train_loss"]) for m in metrics)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    with pytest.raises(LewmError, match="actor loss"):
        ActorConfig(loss="laplace")
