"""The evaluation protocol behind every number in the paper (docs/design.md §1.4).

Episodes run from each start state of a goal set (lewm.goals) towards its goal image, with
a planner (lewm.planning) re-planning as its MPCConfig says, within the set's step budget.
Success is judged under two criteria (lewm.criteria): the authors' (the environment reports
success at any step; the headline) and a strict one (held for several steps, and blind to
nothing the goal shows). The same episodes are run with a uniform random policy, and the
fraction already solved before acting is reported beside each success rate. The caller
builds the model, goals, planner and decoder (lewm.evalrun).
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from lewm import __version__
from lewm.envs import make_env
from lewm.errors import LewmError
from lewm.goals import GoalSet
from lewm.io import write_gif, write_json
from lewm.planning.ensemble import Ensemble
from lewm.planning.mpc import EpisodeLog, Recorder, random_streams, run_mpc, run_random
from lewm.protocol import EvalConfig
from lewm.worlds import WORLDS


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95 % Wilson score interval of a success rate k / n."""
    if n == 0:
        return (0.0, 1.0)
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    # the interval holds p itself, also where rounding would put an end a hair past it
    return (max(0.0, min(p, centre - half)), min(1.0, max(p, centre + half)))


PERTURB_STREAM = 0x70657274
"""mixed into each episode's perturbation seed, so its scene draws nothing any other
stream of the evaluation draws"""


def make_envs(world: str, size: int, pairs, perturb: str = "", seed: int = 0,
              first: int = 0) -> tuple[list, list]:
    """Envs at their (start, goal) pairs and their first observations; with `perturb`,
    each seen through its episode's scene (episode `first + i` of the evaluation)."""
    envs = [make_env(world, size) for _ in pairs]
    if perturb:
        from lewm.perturb import PerturbedEnv, parse

        p = parse(perturb)
        try:
            envs = [PerturbedEnv(env, p, [seed, first + i, PERTURB_STREAM])
                    for i, env in enumerate(envs)]
        except LewmError:
            for env in envs:
                env.close()
            raise
    return envs, reset_envs(envs, pairs)


def reset_envs(envs, pairs) -> list:
    """Put each env at its (start, goal) pair; returns the first observations."""
    return [env.reset(seed=0, options={"state": start, "goal_state": goal})[0]
            for env, (start, goal) in zip(envs, pairs)]


def evaluate(model, goals: GoalSet, planner, protocol: EvalConfig, decoder=None, *,
             out) -> dict:
    """Run `protocol` over `goals` with `planner` (built for `model`); writes `out` (the
    result JSON), GIFs of the first `protocol.gifs` episodes beside it and a summary PNG.

    decoder: embeddings (n, D) -> images (n, H, W, 3) uint8, to show in the GIFs what the
    model expects each plan to reach."""
    out = Path(out)
    world, size = model.card.world, model.card.image_size
    t0 = time.perf_counter()
    n = len(goals.pairs)
    record = set(range(min(protocol.gifs, n)))
    logs, timings, random, solved_at_start, strict_at_start = [], [], [], [], []
    shown_goals, rules = {}, {}
    streams = random_streams(protocol.seed)
    step = protocol.batch or min(n, WORLDS[world].eval_batch)
    # One batch of environments at a time: a MuJoCo env holds a renderer and its GL context,
    # so hundreds of them at once would not fit in memory.
    for lo in range(0, n, step):
        part = slice(lo, min(lo + step, n))
        envs, obs = make_envs(world, size, goals.pairs[part], protocol.perturb,
                              protocol.seed, lo)
        try:
            solved_at_start += [env.success() for env in envs]
            strict_at_start += [env.strict_success() for env in envs]  # before the hold
            rules = {"authors": envs[0].success_rule, "strict": envs[0].strict_rule}
            goal_pixels = np.stack([env.goal_pixels() for env in envs])
            shown = {i - lo for i in record if part.start <= i < part.stop}
            shown_goals.update({lo + i: goal_pixels[i] for i in shown})
            recorder = Recorder(model, [EpisodeLog() for _ in envs], shown, goal_pixels,
                                decoder)
            part_logs, part_timings = run_mpc(model, planner, envs, obs, goal_pixels,
                                              planner.cfg.mpc, goals.budget,
                                              range(part.start, part.stop), recorder)
            logs += part_logs
            timings += part_timings
            # the random floor replays the same episodes in the same envs, its streams
            # continuing from one batch to the next (so the batch size changes nothing)
            reset_envs(envs, goals.pairs[part])
            random += run_random(envs, goals.budget, streams)
        finally:
            for e in envs:
                e.close()
    wall = time.perf_counter() - t0

    result = summarise([log.success for log in logs], [r.success for r in random],
                       solved_at_start)
    result["strict"] = summarise([log.strict_success for log in logs],
                                 [r.strict_success for r in random], strict_at_start)
    result["criteria"] = rules
    result.update(plan_times(timings, len(logs)))
    result.update({
        "wall_s": wall, "world": world, "goals": goals.kind, "budget": goals.budget,
        "planner": planner.cfg.planner,
        "perturb": perturb_record(protocol.perturb),
        "ensemble": model.names if isinstance(model, Ensemble) else None,
        "data": goals.data,
        "config": {"eval": asdict(protocol), "plan": asdict(planner.cfg),
                   "train": model.card.train},
        "manifest": {"sha256": goals.sha256, "episodes": len(goals.pairs),
                     "source": goals.kind, "start": goals.start},
        "checkpoint_step": model.card.step,
        "checkpoint_sha256": (model.card.meta or {}).get("model_sha256"),
        "version": __version__,
        "torch_threads": torch.get_num_threads(),
        **(planner.report() if hasattr(planner, "report") else {}),
        "episodes": [
            {"start_state": np.asarray(s).tolist(), "goal_state": np.asarray(g).tolist(),
             "success": log.success, "success_step": log.success_step, "steps": log.steps,
             "random_success": r.success, "solved_at_start": s0,
             "strict_success": log.strict_success, "strict_step": log.strict_step,
             "random_strict_success": r.strict_success, "strict_at_start": st}
            for (s, g), log, r, s0, st in zip(goals.pairs, logs, random, solved_at_start,
                                              strict_at_start)
        ],
    })
    write_json(out, result)
    for i in sorted(record):
        write_episode_gif(logs[i], shown_goals[i], out.parent / f"{out.stem}_episode{i:02d}.gif")
    from lewm.plots import plot_eval

    plot_eval(result, out.parent / f"{out.stem}.png")
    return result


def perturb_record(spec: str) -> dict | None:
    """What eval.json says of the scene: None when clean."""
    if not spec:
        return None
    from lewm.perturb import FAMILIES, parse

    p = parse(spec)
    return {"name": p.family, "level": p.level, "spec": p.spec, "what": FAMILIES[p.family].doc}


def summarise(success, random_success, solved_at_start) -> dict:
    """Under one criterion, from per-episode booleans: the success rate with its 95 %
    interval and the paired random policy's, overall and over the episodes not solved at
    the start (for Cube under the authors' criterion, which reads the cube alone, exactly
    those where the cube had to move)."""
    n, k = len(success), sum(success)
    todo = [i for i in range(n) if not solved_at_start[i]]
    todo_k = sum(success[i] for i in todo)
    return {
        "success_rate": k / n,
        "success_ci95": list(wilson(k, n)),
        "random_success_rate": float(np.mean(random_success)),
        "random_success_ci95": list(wilson(sum(random_success), n)),
        "solved_at_start": float(np.mean(solved_at_start)),
        "episodes_evaluated": n,
        "unsolved_at_start": {
            "episodes": len(todo),
            "success_rate": todo_k / len(todo) if todo else None,
            "success_ci95": list(wilson(todo_k, len(todo))),
            "random_success_rate": (float(np.mean([random_success[i] for i in todo]))
                                    if todo else None),
        },
    }


def plan_times(timings, episodes: int) -> dict:
    """The planner's time: per episode-plan (all its time over all the episode-plans, so a
    last call with a few episodes left does not weigh like a full one; the 95th percentile
    over calls, each amortised over its episodes), per call and per episode; and per
    decision, the encoding of the frame it acts on included (what acting costs, planner or
    learned actor)."""
    plan_s = [plan for plan, _, _ in timings]
    per_plan_ms = [1000 * plan / b for plan, b, _ in timings]
    planned = sum(b for _, b, _ in timings)
    decide_s = sum(plan + encode for plan, _, encode in timings)
    return {
        "plan_ms_mean": 1000 * sum(plan_s) / planned if planned else 0.0,
        "plan_ms_p95": float(np.percentile(per_plan_ms, 95)) if per_plan_ms else 0.0,
        "plan_call_ms_mean": float(np.mean(plan_s)) * 1000 if timings else 0.0,
        "plan_calls": len(timings),
        "plan_s_per_episode": float(sum(plan_s) / episodes),
        "decision_ms_mean": 1000 * decide_s / planned if planned else 0.0,
    }


def write_episode_gif(log: EpisodeLog, goal: np.ndarray, path: Path) -> None:
    """Observation | the decoded end of the plan being executed | the target it aims at |
    goal, frame by frame (the middle panels when recorded)."""
    sep = np.full_like(goal[:, :2], 255)
    frames = []
    for k, f in enumerate(log.frames):
        extra = [x[max(0, k - 1)] for x in (log.imagined, log.subgoals) if x]
        panels = [f, *extra]
        frames.append(np.concatenate([x for p in panels for x in (p, sep)] + [goal], axis=1))
    write_gif(frames, path, fps=8, scale=max(1, 192 // goal.shape[0]))
