"""Planning latency with the paper's CEM settings (300 samples, 30 elites, 30 iterations,
horizon 5) for the tworoom-cpu and paper model sizes: one episode planned alone, and every
episode planned in one batched call, for each way of running the rollouts (fp32 or bf16,
eager or `--compile`d: torch.compile, CUDA graphs on GPUs).

    python bench/planning_latency.py [--episodes 50] [--variants fp32 bf16 fp32+compile]
        [--paper-episodes 8] [--paper-iterations 3] [--reps 3]

The paper-size model is slow on a CPU: there its CEM is timed for `--paper-iterations`
iterations and scaled to 30 (each iteration does the same work); the result file says so.
Each figure is the median (and min) of `--reps` plans, after a warm-up plan of the same
shape (which, for compiled variants, pays the compilation: reported as `first_plan_s`).
Writes bench/results/planning_latency_{cpu,cuda}.json; with `--recipe`, each preset plans
with its own CEM settings (its recipe's PlanConfig, e.g. fewer iterations) and the results go to
planning_latency_{cpu,cuda}_recipe.json.
"""

import argparse
import dataclasses
import statistics
import time

import torch
from common import save

from lewm.model import LeWM
from lewm.planning.cem import cem, episode_generators
from lewm.planning.config import PlanConfig, RuntimeConfig
from lewm.planning.cost import latent_cost
from lewm.recipes import get_recipe

p = argparse.ArgumentParser()
p.add_argument("--models", nargs="+", default=["tworoom-cpu", "paper"])
p.add_argument("--variants", nargs="+", default=["fp32"],
               help="precision, +compile for torch.compile: fp32 bf16 fp32+compile ...")
p.add_argument("--episodes", type=int, default=50)
p.add_argument("--paper-episodes", type=int, default=8, help="batched episodes, paper on CPU")
p.add_argument("--paper-iterations", type=int, default=3, help="timed iterations, paper on CPU")
p.add_argument("--reps", type=int, default=3)
p.add_argument("--recipe", action="store_true",
               help="plan with each preset's own CEM settings (its recipe's plan: e.g. "
               "fewer iterations) instead of the paper's; writes planning_latency_*_recipe.json")
args = p.parse_args()
for v in args.variants:
    if v.split("+")[0] not in ("fp32", "bf16") or v.split("+")[1:] not in ([], ["compile"]):
        p.error(f"--variants {v!r}: expected fp32 or bf16, optionally +compile")
device = torch.device("cuda" if torch.cuda.is_available() else "cpu")


def plan_seconds(model, ctx, goal, base: PlanConfig, iterations: int, precision: str,
                 compiled: bool) -> float:
    """Seconds of one plan of `base.solver.iterations`, timed over `iterations` of them and
    scaled."""
    E, blk = ctx.shape[0], model.cfg.frameskip * model.cfg.action_dim
    cfg = dataclasses.replace(base.solver, iterations=iterations)
    cost = latent_cost(model, ctx, None, goal, base.cost, RuntimeConfig(precision, compiled))
    with torch.inference_mode():
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        cem(cost, E, blk, cfg, episode_generators(0, range(E)), device,
            horizon=base.mpc.horizon)
        if device.type == "cuda":
            torch.cuda.synchronize()
    return (time.perf_counter() - start) * base.solver.iterations / iterations


def measure(model, episodes: int, base: PlanConfig, iterations: int, variant: str) -> dict:
    precision, compiled = variant.split("+")[0], variant.endswith("+compile")
    g = torch.Generator().manual_seed(1)
    D = model.cfg.embed_dim
    ctx = torch.randn(episodes, 1, D, generator=g).to(device)
    goal = torch.randn(episodes, D, generator=g).to(device)
    first = plan_seconds(model, ctx, goal, base, iterations, precision, compiled)  # warm-up
    ms = [1000 * plan_seconds(model, ctx, goal, base, iterations, precision, compiled) / episodes
          for _ in range(args.reps)]
    return {"ms_per_episode_plan": round(statistics.median(ms), 1),
            "min_ms_per_episode_plan": round(min(ms), 1), "reps": len(ms),
            "first_plan_s": round(first * iterations / base.solver.iterations, 1)}


results = {}
for name in args.models:
    torch.manual_seed(0)
    model = LeWM(get_recipe(name).train.model).to(device).eval()
    base = get_recipe(name).plan if args.recipe else PlanConfig()
    big = name == "paper" and device.type == "cpu"
    solver = base.solver
    iterations = min(args.paper_iterations, solver.iterations) if big else solver.iterations
    batched = args.paper_episodes if big else args.episodes
    row = {"cem": f"{solver.samples} samples, {solver.elites} elites, {solver.iterations} "
           f"iterations, horizon {base.mpc.horizon}, cost {base.cost.cost}",
           "cem_iterations_timed": iterations, "batched_episodes": batched}
    for variant in args.variants:
        for episodes in (1, batched):
            key = f"{variant}, {episodes} episode{'s' if episodes > 1 else ''}"
            try:
                row[key] = measure(model, episodes, base, iterations, variant)
            except Exception as e:  # noqa: BLE001  (a variant this machine cannot run)
                row[key] = {"error": f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"}
            print(name, key, row[key], flush=True)
    results[name] = row
    tag = "cuda" if device.type == "cuda" else "cpu"
    cem_note = ("each preset's own (its plan setting)" if args.recipe else
                "300 samples, 30 elites, 30 iterations, horizon 5, 1 context frame")
    # saved after each model: a run cut short by a time limit keeps what it measured
    save(f"planning_latency_{tag}{'_recipe' if args.recipe else ''}",
         {"device": str(device), "cem": cem_note, "models": results})
