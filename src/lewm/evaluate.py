"""The evaluation protocol behind every number in the paper (docs/design.md §1.4).

50 episodes; start states drawn with seed 42 from rows of the dataset; the goal is the state
`offset` = 25 env steps later in the same episode; a budget of 50 env steps; success = the
environment reports success at any step. The same episodes are run with a uniform random
policy, and the fraction already solved before acting is reported beside the success rate.
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import torch

from lewm import __version__
from lewm.data.hdf5 import open_episodes
from lewm.envs import make_env
from lewm.errors import LewmError
from lewm.io import write_gif, write_json
from lewm.planning.cem import CEMConfig
from lewm.planning.graph import GraphConfig
from lewm.planning.mpc import run_mpc, run_random
from lewm.rundir import open_run
from lewm.worlds import WORLDS, get_world


@dataclass(frozen=True)
class EvalConfig:
    episodes: int = 50
    """episodes evaluated"""
    offset: int = 25
    """env steps between a start row and its goal row (dataset goals)"""
    budget: int = 0
    """env steps allowed per episode (0: the goal set's: 50 for the paper's, the
    world's far_budget (lewm.worlds) for far goals, or a goal file's "budget")"""
    seed: int = 42
    """seed of the start-state draw (paper: 42), the planner and the random policy"""
    goals: str = "dataset"
    """dataset: the paper's, starts and goals `offset` steps apart in dataset rows; env:
    drawn by the environment; far: the world's long-horizon set (Two-Room: other room);
    or a .json file of (start, goal) state pairs"""
    planner: str = "cem"
    """cem: the paper's, CEM towards the goal; graph: CEM towards subgoals on a route
    through the training frames (lewm.planning.graph)"""
    replan: int = 0
    """action blocks executed before re-planning (0: the whole horizon)"""
    gifs: int = 4
    """episodes written as GIFs (observation beside goal)"""
    batch: int = 0
    """episodes planned together in one CEM call (0: all); each episode draws its own noise,
    so results do not depend on it (memory does)"""

    def __post_init__(self):
        for name in ("episodes", "offset"):
            if getattr(self, name) < 1:
                raise LewmError(f"--{name} must be >= 1, got {getattr(self, name)}")
        if self.budget < 0:
            raise LewmError(f"--budget must be >= 0, got {self.budget}")
        if self.goals not in ("dataset", "env", "far") and not self.goals.endswith(".json"):
            raise LewmError(f"--goals must be dataset, env, far or a .json file, got "
                            f"{self.goals!r}")
        if self.planner not in ("cem", "graph"):
            raise LewmError(f"--planner must be cem or graph, got {self.planner!r}")
        if self.replan < 0 or self.gifs < 0 or self.batch < 0:
            raise LewmError("--replan, --gifs and --batch must be >= 0")


def recipe_planning(plan=()) -> tuple[EvalConfig, CEMConfig]:
    """The evaluation and CEM settings a run is planned with by default: its recipe's `plan`
    (TrainConfig.plan, key=value settings of EvalConfig or CEMConfig fields) over their
    defaults. `lewm eval`'s own flags then apply on top."""
    from lewm.planning.cem import CEMConfig  # looked up now: tests swap in other defaults
    from lewm.presets import override

    groups: dict[type, list[str]] = {EvalConfig: [], CEMConfig: []}
    for item in plan:
        key = item.split("=", 1)[0].strip()
        owner = next((c for c in groups if key in {f.name for f in fields(c)}), None)
        if owner is None:
            raise LewmError(f"plan setting {item!r}: {key!r} is not an evaluation or planner "
                            "setting (see `lewm eval --help`)")
        groups[owner].append(item)
    return override(EvalConfig(), groups[EvalConfig]), override(CEMConfig(), groups[CEMConfig])


def read_states(f, path, world: str) -> np.ndarray:
    """(N, S) environment states of every row of an open episode file."""
    if "state" in f:
        return f["state"][()]
    # Where the authors' files keep what lewm's env takes as its state (lewm.worlds).
    columns = get_world(world).authors_state if world in WORLDS else ()
    if columns and all(c in f for c in columns):
        return np.concatenate([f[c][()].reshape(len(f[c]), -1) for c in columns], axis=1)
    where = f"'state' or {' + '.join(map(repr, columns))}" if columns else "'state'"
    raise LewmError(f"{path}: has no {where} column to draw start and goal states from "
                    "(use --goals env)")


def dataset_rows(f, path, n: int, offset: int, seed: int) -> np.ndarray:
    """`n` rows of an open episode file drawn without replacement (seed) among the rows whose
    episode continues for `offset` more steps: the protocol's start rows."""
    ep_len, ep_offset = f["ep_len"][()], f["ep_offset"][()]
    rows = np.concatenate([o + np.arange(max(0, n_ - offset)) for o, n_ in zip(ep_offset, ep_len)])
    if len(rows) == 0:
        raise LewmError(f"{path}: every episode is shorter than offset + 1 = {offset + 1} steps")
    return np.random.default_rng(seed).choice(rows, size=min(n, len(rows)), replace=False)


def dataset_pairs(path, n: int, offset: int, seed: int, world: str = "") -> list[tuple]:
    """(start state, goal state) of the protocol's `n` start rows (`dataset_rows`); the goal
    is the state `offset` steps later in the same episode."""
    with open_episodes(path) as f:
        state = read_states(f, path, world)
        pick = dataset_rows(f, path, n, offset, seed)
    return [(state[r], state[r + offset]) for r in pick]


def env_pairs(world: str, n: int, seed: int) -> list[tuple]:
    env = make_env(world, 16)
    pairs = []
    for i in range(n):
        _, info = env.reset(seed=seed * 100_003 + i)
        pairs.append((info["state"], info["goal_state"]))
    env.close()
    return pairs


def far_pairs(world: str, n: int, seed: int) -> list[tuple]:
    """The world's far goal set (its env module's `far_pairs`), else its env's own draws."""
    import importlib

    module = importlib.import_module(get_world(world).module)
    if hasattr(module, "far_pairs"):
        return module.far_pairs(np.random.default_rng(seed), n)
    return env_pairs(world, n, seed)


def file_pairs(path, world: str) -> tuple[list[tuple], int]:
    """(start, goal) state pairs from a JSON file, and its budget (0: none given):
    {"pairs": [{"start": [...], "goal": [...]}, ...], "budget": 200} or a bare list of pairs.
    Each state is checked by the world's env; a bad file is a one-line error naming it."""
    import json

    try:
        doc = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise LewmError(f"{path}: no such goal file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise LewmError(f"{path}: not a JSON goal file ({e})") from None
    items = doc.get("pairs") if isinstance(doc, dict) else doc
    budget = doc.get("budget", 0) if isinstance(doc, dict) else 0
    if not isinstance(items, list) or not items:
        raise LewmError(f'{path}: expected {{"pairs": [{{"start": [...], "goal": [...]}}, ...]}} '
                        "with at least one pair")
    if not isinstance(budget, int) or isinstance(budget, bool) or budget < 0:
        raise LewmError(f"{path}: budget must be a non-negative integer, got {budget!r}")
    env = make_env(world, 16)
    pairs = []
    try:
        for i, item in enumerate(items):
            if not isinstance(item, dict) or not {"start", "goal"} <= set(item):
                raise LewmError(f'{path}: pair {i} must be an object with "start" and "goal"')
            try:
                pairs.append((env.check_state(item["start"], "start"),
                              env.check_state(item["goal"], "goal")))
            except (LewmError, TypeError, ValueError) as e:
                raise LewmError(f"{path}: pair {i}: {e}") from None
    finally:
        env.close()
    return pairs, budget


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95 % Wilson score interval of a success rate k / n."""
    if n == 0:
        return (0.0, 1.0)
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (max(0.0, centre - half), min(1.0, centre + half))


def make_envs(world: str, size: int, pairs) -> tuple[list, list]:
    envs = [make_env(world, size) for _ in pairs]
    return envs, reset_envs(envs, pairs)


def reset_envs(envs, pairs) -> list:
    """Put each env at its (start, goal) pair; returns the first observations."""
    return [env.reset(seed=0, options={"state": start, "goal_state": goal})[0]
            for env, (start, goal) in zip(envs, pairs)]


def _graph(model, data_path, data_info, graph_cfg, seed):
    """The graph planner's graph over the run's training episodes (lewm.planning.graph)."""
    from lewm.data.clips import EpisodeData
    from lewm.planning.graph import build_graph

    data = EpisodeData(data_path)
    val = set(data_info.get("val_episodes") or [])
    train_eps = [e for e in range(data.num_episodes) if e not in val] or list(range(
        data.num_episodes))
    t0 = time.perf_counter()
    graph = build_graph(model, data, train_eps, graph_cfg or GraphConfig(), seed)
    graph.build_seconds = time.perf_counter() - t0
    data.close()
    return graph


def _decoder(run_dir, size: int, device):
    """The run's pixel decoder as embeddings -> images (see `lewm decode`), or None. One that
    belongs to another model (e.g. training went on after it was made) is skipped with a
    warning: the GIFs are then drawn without it."""
    from lewm.decode import load_decoder, to_images

    try:
        dec = load_decoder(run_dir, device)
    except LewmError as e:
        print(f"warning: {e}; eval GIFs without decoded plans", file=sys.stderr)
        return None
    return None if dec is None else to_images(dec, size)


def evaluate(run_dir, cfg: EvalConfig, cem_cfg: CEMConfig, data_path=None, force=False,
             device: str = "auto", out_name="eval.json",
             graph_cfg: GraphConfig | None = None, ensemble=()) -> dict:
    """Run the protocol on a trained run; writes eval.json, GIFs and a summary PNG.

    ensemble: other runs trained on the same data (e.g. other seeds), planned together with
    this one (lewm.planning.ensemble): a plan's cost is the sum of every model's own."""
    run_dir = Path(run_dir)
    if cfg.replan > cem_cfg.horizon:
        raise LewmError(f"--replan {cfg.replan} exceeds the plan's --horizon {cem_cfg.horizon} "
                        "blocks")
    if cem_cfg.disagreement and not ensemble:
        raise LewmError("--disagreement weighs the spread of an ensemble's costs: it needs "
                        "--ensemble")
    out = run_dir / out_name
    model = open_run(run_dir, (out_name,), force, device)
    if ensemble:
        from lewm.checkpoint import load_model
        from lewm.planning.ensemble import Ensemble

        model = Ensemble([model] + [load_model(r, model.device) for r in ensemble],
                         [str(run_dir)] + [str(r) for r in ensemble])
    card = model.card
    world, size = card.world, card.image_size
    env = make_env(world, size)
    action_dim = env.action_space.shape[0]
    env.close()
    if action_dim != model.cfg.action_dim:
        raise LewmError(f"world {world} has {action_dim}-D actions but the model "
                        f"expects {model.cfg.action_dim}-D")
    budget = 50
    if cfg.goals == "dataset":
        data_path = data_path or card.data["path"]
        pairs = dataset_pairs(data_path, cfg.episodes, cfg.offset, cfg.seed, world)
    elif cfg.goals == "env":
        pairs = env_pairs(world, cfg.episodes, cfg.seed)
    elif cfg.goals == "far":
        pairs, budget = far_pairs(world, cfg.episodes, cfg.seed), get_world(world).far_budget
    else:
        pairs, file_budget = file_pairs(cfg.goals, world)
        budget = file_budget or budget
    budget = cfg.budget or budget
    graph = None
    if cfg.planner == "graph":
        graph = _graph(model, data_path or card.data["path"], card.data, graph_cfg, cfg.seed)
    t0 = time.perf_counter()
    envs, obs = make_envs(world, size, pairs)
    solved_at_start = [env.success() for env in envs]
    goal_pixels = np.stack([env.goal_pixels() for env in envs])
    record = set(range(min(cfg.gifs, len(envs))))
    decoder = _decoder(run_dir, size, model.device) if record else None
    if decoder is not None and ensemble:
        run_decoder = decoder

        def decoder(emb):  # the run's decoder reads its own model's part of the embedding
            return run_decoder(model.lead_part(emb))
    logs, timings = [], []
    step = cfg.batch or len(envs)
    for lo in range(0, len(envs), step):
        ids = range(lo, min(lo + step, len(envs)))
        part_logs, part_timings = run_mpc(
            model, envs[lo : ids.stop], obs[lo : ids.stop], goal_pixels[lo : ids.stop], cem_cfg,
            budget, cfg.replan or None, cfg.seed, {i - lo for i in record if i in ids}, ids,
            decoder, graph)
        logs += part_logs
        timings += part_timings
    reset_envs(envs, pairs)  # the random floor replays the same episodes in the same envs
    random_success = run_random(envs, budget, cfg.seed)
    wall = time.perf_counter() - t0
    for e in envs:
        e.close()

    n, k = len(logs), sum(log.success for log in logs)
    per_plan_ms = [1000 * s / b for s, b in timings]  # amortised over the episodes planned
    episodes = [
        {"start_state": np.asarray(s).tolist(), "goal_state": np.asarray(g).tolist(),
         "success": log.success, "success_step": log.success_step, "steps": log.steps,
         "random_success": r, "solved_at_start": s0}
        for (s, g), log, r, s0 in zip(pairs, logs, random_success, solved_at_start)
    ]
    # The episodes where something had to happen: for Cube, whose success depends on the
    # cube alone, exactly those where the cube had to move to its goal.
    todo = [i for i in range(n) if not solved_at_start[i]]
    todo_k = sum(logs[i].success for i in todo)
    result = {
        "success_rate": k / n,
        "success_ci95": list(wilson(k, n)),
        "random_success_rate": float(np.mean(random_success)),
        "solved_at_start": float(np.mean(solved_at_start)),
        "episodes_evaluated": n,
        "unsolved_at_start": {
            "episodes": len(todo),
            "success_rate": todo_k / len(todo) if todo else None,
            "success_ci95": list(wilson(todo_k, len(todo))),
            "random_success_rate": (float(np.mean([random_success[i] for i in todo]))
                                    if todo else None),
        },
        "plan_ms_mean": float(np.mean(per_plan_ms)) if per_plan_ms else 0.0,
        "plan_ms_p95": float(np.percentile(per_plan_ms, 95)) if per_plan_ms else 0.0,
        "plan_call_ms_mean": float(np.mean([1000 * s for s, _ in timings])) if timings else 0.0,
        "plan_calls": len(timings),
        "wall_s": wall,
        "world": world,
        "goals": cfg.goals,
        "budget": budget,
        "planner": cfg.planner,
        "ensemble": model.names if ensemble else None,
        "plan_s_per_episode": float(sum(s for s, _ in timings) / n),
        "data": str(data_path) if cfg.goals == "dataset" else None,
        "config": {"eval": asdict(cfg), "cem": asdict(cem_cfg), "train": card.train},
        "checkpoint_step": card.step,
        "version": __version__,
        "torch_threads": torch.get_num_threads(),
        "episodes": episodes,
    }
    if graph is not None:
        result["graph"] = {"nodes": len(graph.adj), "edges": sum(map(len, graph.adj)) // 2,
                           "join_tolerance": graph.tolerance, "build_s": graph.build_seconds,
                           "config": asdict(graph.cfg)}
    write_json(out, result)
    stem = out.stem
    for i in sorted(record):
        goal, log = goal_pixels[i], logs[i]
        sep = np.full_like(goal[:, :2], 255)
        frames = []
        for k, f in enumerate(log.frames):
            # observation | the decoded end of the plan being executed | the subgoal it
            # aims at | goal (the middle panels when there is a decoder, a graph planner)
            extra = [x[max(0, k - 1)] for x in (log.imagined, log.subgoals) if x]
            panels = [f, *extra]
            frames.append(np.concatenate([x for p in panels for x in (p, sep)] + [goal], axis=1))
        write_gif(frames, run_dir / f"{stem}_episode{i:02d}.gif", fps=8,
                  scale=max(1, 192 // size))
    from lewm.plots import plot_eval

    plot_eval(result, run_dir / f"{stem}.png")
    return result
