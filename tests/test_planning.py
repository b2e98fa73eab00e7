import dataclasses
import json
import shutil
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from conftest import run_cli

from lewm.envs import tworoom
from lewm.errors import LewmError
from lewm.evalrun import eval_run
from lewm.evaluate import make_envs, wilson
from lewm.goals import dataset_pairs
from lewm.model.normalize import ZScore
from lewm.planning.cem import cem, colour_filter
from lewm.planning.config import CEMConfig, CostConfig, MPCConfig, PlanConfig, RuntimeConfig
from lewm.planning.cost import latent_cost
from lewm.planning.mpc import EpisodeLog, Recorder, plan_setup, run_mpc, run_random
from lewm.planning.registry import make_planner
from lewm.protocol import EvalConfig


def mpc(model, envs, obs, goals, plan=None, budget=50, seed=0, record=(), episode_ids=None):
    """`run_mpc` with the planner `plan` names, built for `model`, recording `record`."""
    plan = plan or PlanConfig()
    planner = make_planner(plan, model, plan_setup(model, envs[0].action_space, seed))
    recorder = Recorder(model, [EpisodeLog() for _ in envs], record, goals)
    return run_mpc(model, planner, envs, obs, goals, plan.mpc, budget, episode_ids, recorder)


def small(mpc=None, runtime=None, **solver) -> PlanConfig:
    """A small CEM's PlanConfig, with these re-plan and runtime settings."""
    return PlanConfig(solver=CEMConfig(**solver), mpc=mpc or MPCConfig(),
                      runtime=runtime or RuntimeConfig())


def test_cem_finds_the_optimum_of_a_quadratic():
    target = torch.tensor([[0.5, -1.2], [2.0, 0.3], [-0.7, 0.0]])  # one optimum per problem

    def cost(cand):  # (batch, S, H, a)
        return ((cand - target[:, None, None, :]) ** 2).sum((-1, -2))

    plan, best = cem(cost, batch=3, action_dim=2, cfg=CEMConfig(), horizon=4,
                     generator=torch.Generator().manual_seed(0))
    assert plan.shape == (3, 4, 2)
    torch.testing.assert_close(plan, target[:, None, :].expand(3, 4, 2), atol=1e-2, rtol=0)
    assert (best < 1e-3).all()


def test_cem_respects_bounds_and_seed():
    cost = lambda c: -c.sum((-1, -2))  # wants ever larger actions
    low, high = torch.tensor([-1.0, -2.0]), torch.tensor([1.0, 0.5])
    cfg = CEMConfig(samples=50, elites=5, iterations=10, clip=True)
    a, _ = cem(cost, 1, 2, cfg, torch.Generator().manual_seed(1), low=low, high=high, horizon=2)
    b, _ = cem(cost, 1, 2, cfg, torch.Generator().manual_seed(1), low=low, high=high, horizon=2)
    assert torch.equal(a, b)
    torch.testing.assert_close(a[0], high.expand(2, 2), atol=1e-3, rtol=0)


def test_cem_std_refit_is_the_authors_by_default():
    # Every candidate an elite: the second iteration samples with the first's std, which the
    # authors compute with Bessel's correction (n - 1).
    seen = []

    def cost(c):  # (1, S, 1, 1)
        seen.append(c.clone())
        return torch.zeros(c.shape[:2])

    for unbiased in (True, False):
        seen.clear()
        cfg = CEMConfig(samples=8, elites=8, iterations=2, unbiased_std=unbiased)
        g = torch.Generator().manual_seed(2)
        cem(cost, 1, 1, cfg, g, horizon=1)
        g = torch.Generator().manual_seed(2)
        torch.randn((1, 8, 1, 1), generator=g)
        noise = torch.randn((1, 8, 1, 1), generator=g)[:, 1:]  # the second draw, less the mean
        first = seen[0]
        std = first.std(1, unbiased=unbiased)  # (1, 1, 1)
        torch.testing.assert_close(seen[1][:, 1:], first.mean(1, keepdim=True) + std * noise)
    assert CEMConfig().unbiased_std and not CEMConfig().clip and MPCConfig().context == 1


def test_carried_blocks_start_at_carry_std_and_new_blocks_at_init_std():
    seen = []

    def cost(c):  # (1, S, H, a)
        seen.append(c.clone())
        return torch.zeros(c.shape[:2])

    init = torch.full((1, 5, 2), 0.5)
    for tail_std, tail in ((0.1, 3), (None, 3), (0.1, 0)):
        seen.clear()
        cfg = CEMConfig(samples=4000, elites=10, iterations=1)
        cem(cost, 1, 2, cfg, torch.Generator().manual_seed(0), init_mean=init, carried=tail,
            carried_std=tail_std)
        spread = seen[0][0, 1:].std(0).mean(-1)  # (H,): per block, over the candidates
        expected = torch.tensor([tail_std or 1.0] * tail + [1.0] * (5 - tail))
        torch.testing.assert_close(spread, expected, rtol=0.05, atol=0)
        torch.testing.assert_close(seen[0][0, 1:].mean(0), init[0], atol=0.05, rtol=0)


@pytest.mark.parametrize("option", ["shrink", "warm"])
def test_mpc_marks_the_blocks_a_replan_takes_over(tworoom_file, monkeypatch, option):
    """Each re-plan tells CEM how many of its starting blocks are the executed plan's tail:
    all of them with a shrinking horizon, those left of the last plan with a warm start."""
    import lewm.planning.cem as cem_module

    tails, real_cem = [], cem_module.cem

    def spy(*args, horizon, carried, **kwargs):
        tails.append((horizon, carried))
        return real_cem(*args, horizon=horizon, carried=carried, **kwargs)

    monkeypatch.setattr(cem_module, "cem", spy)
    pairs = dataset_pairs(tworoom_file, 2, offset=25, seed=42)
    envs, obs = make_envs("tworoom", 32, pairs)
    plan = small(samples=16, elites=4, iterations=1,
                 mpc=MPCConfig(replan=1, carry=option, carry_std=0.5))
    mpc(OracleTwoRoom(), envs, obs, np.stack(obs), plan, budget=25)
    if option == "shrink":
        assert tails == [(5, 0), (4, 4), (3, 3), (2, 2), (1, 1)]
    else:
        assert tails == [(5, 0)] + [(5, 4)] * 4


def test_coloured_noise_keeps_unit_variance_and_correlates_neighbouring_steps():
    x = torch.randn(20000, 25, generator=torch.Generator().manual_seed(0))
    lag1 = {}
    for beta in (0.0, 1.0, 2.0):
        y = x @ colour_filter(25, beta)
        torch.testing.assert_close(y.var(0), torch.ones(25), atol=0.05, rtol=0)
        lag1[beta] = (y[:, 1:] * y[:, :-1]).mean().item()
    assert abs(lag1[0.0]) < 0.02 and 0.4 < lag1[1.0] < lag1[2.0] < 0.95
    assert torch.equal(colour_filter(1, 2.0), torch.eye(1))


def test_coloured_cem_noise_runs_along_env_steps_inside_and_across_blocks():
    # Two blocks of 3 env steps of 2-D actions: with brown noise a step's first action
    # dimension follows the previous step's, inside a block and across the block boundary,
    # and the two dimensions stay independent.
    seen = []

    def cost(c):  # (1, S, H, 6)
        seen.append(c.clone())
        return torch.zeros(c.shape[:2])

    cfg = CEMConfig(samples=4000, elites=10, iterations=1, noise_beta=2.0)
    cem(cost, 1, 6, cfg, torch.Generator().manual_seed(3), substeps=3, horizon=2)
    steps = seen[0][0, 1:].reshape(-1, 6, 2)  # (S, env steps, action dims)
    M = colour_filter(6, 2.0)
    for d in (0, 1):  # each dimension's time line has the filter's covariance
        torch.testing.assert_close(steps[..., d].T.cov(), M.T @ M, atol=0.06, rtol=0)
    assert (M.T @ M)[2, 3] > 0.3  # steps 2 and 3 straddle the block boundary
    cross = torch.corrcoef(torch.stack([steps[:, 2, 0], steps[:, 2, 1]]))[0, 1]
    assert abs(cross) < 0.05


def test_kept_elites_make_the_best_cost_fall_monotonically():
    target = torch.tensor([0.7, -0.4, 1.5])
    bests = []

    def cost(cand):  # (1, S, H, 3); a rugged cost CEM's mean does not always improve on
        c = ((cand - target) ** 2).sum((-1, -2)) + 0.3 * torch.sin(9 * cand).sum((-1, -2))
        bests.append(c.min().item())
        return c

    cfg = CEMConfig(samples=40, elites=8, iterations=12, keep_elites=0.5)
    _, best = cem(cost, 1, 3, cfg, torch.Generator().manual_seed(4), horizon=2)
    assert all(b <= a + 1e-6 for a, b in zip(bests, bests[1:]))
    assert best.item() == pytest.approx(bests[-1])


def test_default_cem_is_the_papers_white_noise_cem():
    # noise_beta = 0 and keep_elites = 0 are the paper's CEM: the defaults plan as the options
    # explicitly off, and the frameskip (substeps) then changes nothing; that those draws are
    # mean + std * white noise is test_cem_std_refit_is_the_authors_by_default's check.
    cost = lambda c: ((c - 0.3) ** 2).sum((-1, -2))
    a, _ = cem(cost, 2, 4, CEMConfig(iterations=3), torch.Generator().manual_seed(5),
               substeps=2)
    b, _ = cem(cost, 2, 4, CEMConfig(iterations=3, noise_beta=0.0, keep_elites=0.0),
               torch.Generator().manual_seed(5))
    assert torch.equal(a, b)


@pytest.mark.parametrize("cls,kwargs,match", [
    (CEMConfig, {"noise_beta": -1.0}, "noise_beta must be >= 0"),
    (CEMConfig, {"keep_elites": 1.5}, r"keep_elites must be a fraction in \[0, 1\]"),
    (CEMConfig, {"elites": 400}, "cannot exceed samples"),
    (CEMConfig, {"samples": 0}, "samples must be >= 1"),
    (MPCConfig, {"horizon": 0}, "horizon must be >= 1"),
    (MPCConfig, {"context": 0}, "context must be >= 1"),
    (MPCConfig, {"carry_std": 0.0}, r"carry-std must be > 0 \(or unset\)"),
    (MPCConfig, {"carry": "all"}, "carry must be one of none, warm, shrink"),
    (CostConfig, {"cost": "sum"}, "cost must be one of final, path, ramp"),
    (RuntimeConfig, {"precision": "fp16"}, "precision must be fp32 or bf16"),
    (PlanConfig, {"planner": "nope"}, "planner must be one of"),
])
def test_planner_settings_out_of_range(cls, kwargs, match):
    with pytest.raises(LewmError, match=match):
        cls(**kwargs)


class OracleTwoRoom:
    """A perfect latent model of Two-Room: the latent is the agent position read off the
    image (the centroid of red), and rollouts apply the true dynamics."""

    cfg = SimpleNamespace(frameskip=5, action_dim=2, history=3, embed_dim=2)
    trained_card = SimpleNamespace(action=ZScore(np.zeros(2, np.float32), np.ones(2, np.float32)))
    device = torch.device("cpu")

    def encode(self, pixels):  # (B, T, H, W, 3) uint8 -> (B, T, 2)
        img = pixels.float()
        red = (img[..., 0] - img[..., 1]).clamp_min(0)  # (B, T, H, W)
        S = pixels.shape[-2]
        coords = (torch.arange(S) + 0.5) * tworoom.CANVAS / S
        mass = red.sum((-1, -2))
        x = (red.sum(-2) * coords).sum(-1) / mass
        y = (red.sum(-1) * coords).sum(-1) / mass
        return torch.stack([x, y], -1)

    def rollout(self, context_emb, context_actions, future_actions):
        pos = context_emb[:, -1].double().numpy()  # (B, 2)
        acts = future_actions.view(len(pos), future_actions.shape[1], 5, 2).double().numpy()
        out = []
        for k in range(acts.shape[1]):
            for s in range(5):
                pos = tworoom.move(pos, acts[:, k, s])
            out.append(torch.from_numpy(pos.copy()).float())
        return torch.stack(out, 1)


def test_mpc_with_an_oracle_model_solves_two_room(tworoom_file):
    pairs = dataset_pairs(tworoom_file, 20, offset=25, seed=42)
    envs, obs = make_envs("tworoom", 64, pairs)
    goals = np.stack([e.goal_pixels() for e in envs])
    logs, timings = mpc(OracleTwoRoom(), envs, obs, goals, budget=50, seed=0)
    assert all(log.success and log.strict_success for log in logs), [log.steps for log in logs]
    at_start = [e.success() for e in make_envs("tworoom", 16, pairs)[0]]
    assert any(at_start) and [log.success_step == 0 for log in logs] == at_start
    # solved at the start is not yet held: those episodes are planned too, to decide it
    assert timings[0][1] == len(pairs)


class PlanSpy(OracleTwoRoom):
    """The oracle, recording the horizon of each CEM iteration's rollouts."""

    def __init__(self):
        self.horizons = []

    def rollout(self, context_emb, context_actions, future_actions):
        self.horizons.append(future_actions.shape[1])
        return super().rollout(context_emb, context_actions, future_actions)


@pytest.mark.parametrize("replan,cycle", [(1, [5, 4, 3, 2, 1]), (2, [5, 3, 1])])
def test_a_shrinking_horizon_keeps_each_plans_end(tworoom_file, replan, cycle):
    """With `shrink`, each re-plan searches the blocks left until the first plan's end, then a
    new full plan starts; the goal is the start frame, so no episode ends early."""
    pairs = dataset_pairs(tworoom_file, 3, offset=25, seed=42)
    envs, obs = make_envs("tworoom", 64, pairs)
    plan = small(samples=16, elites=4, iterations=1, mpc=MPCConfig(replan=replan, carry="shrink"))
    spy = PlanSpy()
    logs, timings = mpc(spy, envs, obs, np.stack(obs), plan, budget=50)
    per_plan = spy.horizons  # one rollout per CEM iteration (a single chunk)
    assert per_plan == (cycle * 10)[: len(per_plan)] and len(per_plan) == len(timings)
    if not any(log.success for log in logs):
        assert len(per_plan) == 2 * len(cycle)  # two cycles of 25 env steps


def test_without_replanning_shrink_changes_nothing(tworoom_file):
    pairs = dataset_pairs(tworoom_file, 4, offset=25, seed=42)

    def frames(shrink):
        envs, obs = make_envs("tworoom", 32, pairs)
        goals = np.stack([e.goal_pixels() for e in envs])
        plan = small(samples=16, elites=4, iterations=2,
                     mpc=MPCConfig(carry="shrink" if shrink else "none"))
        logs, _ = mpc(OracleTwoRoom(), envs, obs, goals, plan, budget=50, record=range(4))
        return [np.stack(log.frames) for log in logs]

    for a, b in zip(frames(False), frames(True)):
        np.testing.assert_array_equal(a, b)


def test_random_policy_baseline_is_seeded(tworoom_file):
    pairs = dataset_pairs(tworoom_file, 10, offset=25, seed=42)
    a = run_random(make_envs("tworoom", 16, pairs)[0], 50, seed=0)
    b = run_random(make_envs("tworoom", 16, pairs)[0], 50, seed=0)
    assert a == b


def test_dataset_pairs(tworoom_file, tmp_path):
    pairs = dataset_pairs(tworoom_file, 8, offset=25, seed=42)
    assert len(pairs) == 8
    np.testing.assert_array_equal(pairs, dataset_pairs(tworoom_file, 8, offset=25, seed=42))
    with pytest.raises(LewmError, match="shorter than offset"):
        dataset_pairs(tworoom_file, 8, offset=41, seed=42)
    assert wilson(45, 50)[0] < 0.9 < wilson(45, 50)[1]


def test_evaluation_is_deterministic(tiny_run):
    cfg = EvalConfig(episodes=4, gifs=1)
    plan = small(samples=20, elites=4, iterations=2)
    a = eval_run(tiny_run, cfg, plan, out_name="a.json")
    b = eval_run(tiny_run, cfg, plan, out_name="b.json")
    for key in ("success_rate", "random_success_rate", "solved_at_start", "episodes"):
        assert a[key] == b[key]
    # in batches of 3 environments at a time (the planner's noise is per episode, the random
    # policy's streams carry over): the same episodes, outcome for outcome
    c = eval_run(tiny_run, dataclasses.replace(cfg, batch=3), plan, out_name="c.json")
    assert c["episodes"] == a["episodes"] and c["strict"] == a["strict"]
    for key in ("success_rate", "success_ci95", "random_success_rate", "solved_at_start",
                "episodes", "plan_ms_mean", "plan_ms_p95", "wall_s", "config", "version"):
        assert key in a
    assert (tiny_run / "a.png").exists() and (tiny_run / "a_episode00.gif").exists()
    strict = a["strict"]  # the strict criterion, with the same fields as the authors'
    for key in ("success_rate", "success_ci95", "random_success_rate", "random_success_ci95",
                "solved_at_start", "unsolved_at_start"):
        assert key in strict and key in a
    assert set(a["criteria"]) == {"authors", "strict"} and a["manifest"]["start"] == "recorded"
    for e in a["episodes"]:
        assert {"success", "random_success", "strict_success", "random_strict_success",
                "strict_step", "strict_at_start"} <= set(e)
        assert (e["strict_step"] is not None) == e["strict_success"]
    assert strict["success_rate"] == np.mean([e["strict_success"] for e in a["episodes"]])
    assert strict["random_success_rate"] == np.mean([e["random_strict_success"]
                                                     for e in a["episodes"]])
    todo = [e for e in a["episodes"] if not e["solved_at_start"]]
    u = a["unsolved_at_start"]
    assert u["episodes"] == len(todo)
    if todo:
        assert u["success_rate"] == np.mean([e["success"] for e in todo])
        assert u["random_success_rate"] == np.mean([e["random_success"] for e in todo])


def test_an_episode_is_planned_the_same_alone_or_in_a_batch(tiny_run):
    """Each episode's CEM noise has its own generator: planning 6 episodes one at a time or
    all together gives the same observations at every step (the authors' batched solver
    shares one generator, so an episode's outcome depends on its batch). In fp32 only: bf16
    matmul kernels round differently for different batch sizes."""
    from lewm.checkpoint import load_model

    model = load_model(tiny_run)
    data = json.loads((tiny_run / "config.json").read_text())["data"]["path"]
    pairs = dataset_pairs(data, 6, offset=25, seed=42)
    plan = small(samples=24, elites=4, iterations=3)

    def frames(envs_obs, ids):
        envs, obs = envs_obs
        goals = np.stack([e.goal_pixels() for e in envs])
        logs, _ = mpc(model, envs, obs, goals, plan, budget=20, seed=3,
                      record=range(len(envs)), episode_ids=ids)
        return [np.stack(log.frames) for log in logs]

    together = frames(make_envs("tworoom", 32, pairs), range(6))
    for i in range(6):
        alone = frames(make_envs("tworoom", 32, pairs[i : i + 1]), [i])[0]
        np.testing.assert_array_equal(alone, together[i])
    other_seed = frames(make_envs("tworoom", 32, pairs[:1]), [1])[0]  # another episode's noise
    assert not np.array_equal(other_seed, together[0])


def test_a_model_fresh_from_training_plans_as_the_same_model_loaded(tworoom_file, tmp_path):
    """train() leaves its card (world, statistics, configs) on the model it returns: the
    in-memory model plans exactly as the checkpoint loaded from disk."""
    import lewm
    from lewm.recipes import get_recipe
    from lewm.train import train

    fresh = train(get_recipe("tiny").train, tworoom_file, tmp_path / "run", progress=False)["model"]
    loaded = lewm.load(tmp_path / "run")
    for field in ("world", "image_size", "train", "data", "step"):
        assert getattr(fresh.card, field) == getattr(loaded.card, field), field
    assert set(fresh.card.stats) == set(loaded.card.stats)
    np.testing.assert_allclose(fresh.card.action.std, loaded.card.action.std)
    pairs = dataset_pairs(tworoom_file, 2, offset=25, seed=1)
    runs = []
    for model in (fresh, loaded):
        envs, obs = make_envs("tworoom", 32, pairs)
        goals = np.stack([e.goal_pixels() for e in envs])
        logs, _ = mpc(model, envs, obs, goals, small(samples=16, elites=4, iterations=2),
                      budget=10, seed=0, record=range(2))
        runs.append([np.stack(log.frames) for log in logs])
    for a, b in zip(*runs):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(LewmError, match="no card"):
        from lewm.model import LeWM

        mpc(LeWM(fresh.cfg), envs, obs, goals, budget=5)


def test_eval_cli_and_its_errors(tiny_run, tmp_path):
    proc = run_cli("eval", tiny_run, "--episodes", 3, "--samples", 10, "--elites", 2,
                   "--iterations", 1, "--gifs", 0)
    assert "success" in proc.stdout
    result = json.loads((tiny_run / "eval.json").read_text())
    assert result["episodes_evaluated"] == 3
    again = run_cli("eval", tiny_run, "--episodes", 3, check=False)
    assert again.returncode == 2 and "already exists" in again.stderr
    bad = run_cli("eval", tiny_run, "--elites", 500, "--force", check=False)
    assert bad.returncode == 2 and "cannot exceed samples" in bad.stderr
    empty = run_cli("eval", tmp_path, check=False)
    assert empty.returncode == 2 and "no checkpoint" in empty.stderr
    assert "Traceback" not in bad.stderr + empty.stderr


def test_replan_beyond_the_horizon_is_refused(tiny_run):
    r = run_cli("eval", tiny_run, "--replan", 6, "--horizon", 5, "--force", check=False)
    assert r.returncode == 2 and "exceeds the plan's --horizon" in r.stderr
    assert "Traceback" not in r.stderr


def test_the_path_cost_scores_every_predicted_block():
    """cost="path" averages the latent distance to the goal over the plan's predicted blocks;
    "ramp" weights block k of H by k; "final" (the paper's) scores the last one alone."""
    model, g = OracleTwoRoom(), torch.Generator().manual_seed(0)
    ctx, goal = torch.full((2, 1, 2), 100.0), torch.tensor([[120.0, 100.0], [60.0, 150.0]])
    cand = torch.randn(2, 8, 4, 10, generator=g)
    pred = model.rollout(ctx.repeat_interleave(8, 0), None, cand.flatten(0, 1)).view(2, 8, 4, 2)
    dist = ((pred - goal[:, None, None]) ** 2).sum(-1)  # (2, 8, 4)
    torch.testing.assert_close(latent_cost(model, ctx, None, goal)(cand), dist[..., -1])
    torch.testing.assert_close(latent_cost(model, ctx, None, goal, CostConfig("path"))(cand),
                               dist.mean(-1))
    ramp = (dist * torch.tensor([1.0, 2.0, 3.0, 4.0])).sum(-1) / 10
    torch.testing.assert_close(latent_cost(model, ctx, None, goal, CostConfig("ramp"))(cand), ramp)


@pytest.mark.slow
@pytest.mark.skipif(not any(shutil.which(c) for c in ("g++", "c++", "clang++")),
                    reason="torch.compile on a CPU needs a C++ compiler")
def test_compiled_rollouts_cost_and_plan_as_the_eager_ones(tiny_run):
    """`CEMConfig.compile` (torch.compile of the rollouts, CUDA graphs on GPUs) changes speed,
    not answers: costs equal the eager ones to float rounding, with 1 and 3 context frames,
    and an episode planned through it sees the same frames."""
    from lewm.checkpoint import load_model

    COMPILED = RuntimeConfig(compile=True)
    model = load_model(tiny_run)
    D, blk = model.cfg.embed_dim, model.cfg.frameskip * model.cfg.action_dim
    g = torch.Generator().manual_seed(0)
    for h in (1, 3):
        ctx, goal = torch.randn(2, h, D, generator=g), torch.randn(2, D, generator=g)
        acts = torch.randn(2, h - 1, blk, generator=g) if h > 1 else None
        cand = torch.randn(2, 16, 5, blk, generator=g)
        with torch.no_grad():
            eager = latent_cost(model, ctx, acts, goal)(cand)
            compiled = latent_cost(model, ctx, acts, goal, runtime=COMPILED)(cand)
        torch.testing.assert_close(compiled, eager, rtol=1e-5, atol=1e-6)
    assert "_compiled_rollout" in model.__dict__  # compiled once, kept on the model

    # On a CPU the weights are frozen into the compiled code: changed weights must rebuild it.
    weight = model.pred_proj[0].weight
    kept = weight.detach().clone()
    with torch.no_grad():
        weight.mul_(1.5)
        eager = latent_cost(model, ctx, acts, goal)(cand)
        compiled = latent_cost(model, ctx, acts, goal, runtime=COMPILED)(cand)
        weight.copy_(kept)
    torch.testing.assert_close(compiled, eager, rtol=1e-5, atol=1e-6)

    data = json.loads((tiny_run / "config.json").read_text())["data"]["path"]
    pairs = dataset_pairs(data, 1, offset=25, seed=42)

    def frames(compile_):
        envs, obs = make_envs("tworoom", 32, pairs)
        goals = np.stack([e.goal_pixels() for e in envs])
        plan = small(samples=24, elites=4, iterations=3, runtime=RuntimeConfig(compile=compile_))
        logs, _ = mpc(model, envs, obs, goals, plan, budget=10, seed=3, record=[0])
        return np.stack(logs[0].frames)

    del model.__dict__["_compiled_rollout"]  # run_mpc must compile it again
    np.testing.assert_array_equal(frames(True), frames(False))
    assert "_compiled_rollout" in model.__dict__


def test_an_ensemble_sums_its_members_costs_each_in_its_own_latent_space(tiny_run):
    """`lewm eval --ensemble`: the ensemble's embedding is its members' side by side, so the
    planner's distance is the sum of each member's own; actions z-scored with the lead's
    statistics reach each member as the same raw actions, z-scored with its own."""
    import copy
    import dataclasses

    from lewm.checkpoint import load_model
    from lewm.planning.ensemble import Ensemble
    a, b = load_model(tiny_run), load_model(tiny_run)
    torch.manual_seed(1)
    for p in b.parameters():  # another "seed": other weights, other latent space
        p.data += 0.05 * torch.randn_like(p)
    card = b.card
    act = card.action
    b.card = dataclasses.replace(card, stats={**card.stats, "action": ZScore(
        act.mean + 0.3, act.std * 1.5)})
    ens = Ensemble([a, b])
    D, fs = a.cfg.embed_dim, a.cfg.frameskip
    blk = fs * a.cfg.action_dim
    frames = torch.randint(0, 256, (2, 3, 32, 32, 3), dtype=torch.uint8)
    with torch.no_grad():
        emb = ens.encode(frames)
        torch.testing.assert_close(emb, torch.cat([a.encode(frames), b.encode(frames)], -1))
        g = torch.Generator().manual_seed(0)
        z = torch.randn(4, blk, generator=g)
        lead, other = a.card.action.blocks(fs), b.card.action.blocks(fs)
        torch.testing.assert_close(other.from_z(ens._actions(1, z)), lead.from_z(z))
        ctx_act, cand = torch.randn(2, 2, blk, generator=g), torch.randn(2, 6, 5, blk, generator=g)
        goal = torch.randn(2, 2 * D, generator=g)
        each = torch.stack([latent_cost(m, emb[..., i * D:(i + 1) * D], ens._actions(i, ctx_act),
                                        goal[:, i * D:(i + 1) * D], CostConfig("path"))(
                                            ens._actions(i, cand)) for i, m in enumerate((a, b))])
        got = latent_cost(ens, emb, ctx_act, goal, CostConfig("path"))(cand)
        torch.testing.assert_close(got, each.sum(0))
        # --disagreement: the members' spread (population std) times weight and members
        wary = latent_cost(ens, emb, ctx_act, goal, CostConfig("path", disagreement=0.5))(cand)
        torch.testing.assert_close(wary, each.sum(0) + 0.5 * 2 * each.std(0, correction=0))
    wrong = copy.deepcopy(a)
    wrong.cfg = dataclasses.replace(a.cfg, frameskip=a.cfg.frameskip + 1)
    with pytest.raises(LewmError, match="frameskip"):
        Ensemble([a, wrong], ["a", "wrong"])


def test_eval_cli_plans_with_an_ensemble(tiny_run, tmp_path):
    seed1 = tmp_path / "seed1"
    shutil.copytree(tiny_run, seed1)
    out = tiny_run / "eval.json"
    proc = run_cli("eval", tiny_run, "--ensemble", seed1, "--episodes", 3, "--samples", 10,
                   "--elites", 2, "--iterations", 1, "--gifs", 1, "--force")
    assert "success" in proc.stdout
    assert json.loads(out.read_text())["ensemble"] == [str(tiny_run), str(seed1)]
    bad = run_cli("eval", tiny_run, "--ensemble", tmp_path / "nope", "--force", check=False)
    assert bad.returncode == 2 and "nope" in bad.stderr and "Traceback" not in bad.stderr
    alone = run_cli("eval", tiny_run, "--disagreement", 1, "--force", check=False)
    assert alone.returncode == 2 and "needs --ensemble" in alone.stderr
