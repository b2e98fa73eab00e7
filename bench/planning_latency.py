"""Planning latency with the paper's CEM settings (300 samples, 30 elites, 30 iterations,
horizon 5) for the tworoom-cpu and paper model sizes, and the speed-up from planning every
episode in one batched call versus one episode at a time.

    python bench/planning_latency.py [--episodes 50] [--paper-iterations 3]

The paper-size model is slow on a CPU: its CEM is timed for `--paper-iterations` iterations
and scaled to 30 (each iteration does the same work); the result file says so.
"""

import argparse
import time

import torch
from common import save

from lewm.model import LeWM
from lewm.planning.cem import CEMConfig, cem
from lewm.planning.mpc import latent_cost
from lewm.presets import get_preset

p = argparse.ArgumentParser()
p.add_argument("--episodes", type=int, default=50)
p.add_argument("--paper-episodes", type=int, default=8)
p.add_argument("--paper-iterations", type=int, default=3)
args = p.parse_args()
device = torch.device("cuda" if torch.cuda.is_available() else "cpu")


def plan_seconds(model, episodes: int, iterations: int) -> float:
    D, blk = model.cfg.embed_dim, model.cfg.frameskip * model.cfg.action_dim
    ctx = torch.randn(episodes, 1, D, device=device)
    goal = torch.randn(episodes, D, device=device)
    cfg = CEMConfig(iterations=iterations)
    with torch.inference_mode():
        start = time.perf_counter()
        cem(latent_cost(model, ctx, None, goal), episodes, blk, cfg,
            torch.Generator().manual_seed(0), device)
        if device.type == "cuda":
            torch.cuda.synchronize()
    return (time.perf_counter() - start) * 30 / iterations


results = {}
for name in ("tworoom-cpu", "paper"):
    torch.manual_seed(0)
    model = LeWM(get_preset(name).model).to(device).eval()
    big = name == "paper" and device.type == "cpu"
    iterations = args.paper_iterations if big else 30
    episodes = args.paper_episodes if big else args.episodes
    plan_seconds(model, 2, 1)  # warm-up
    one = plan_seconds(model, 1, iterations)
    batched = plan_seconds(model, episodes, iterations)
    results[name] = {
        "cem_iterations_timed": iterations,
        "one_episode_ms_per_plan": round(1000 * one),
        "batched_episodes": episodes,
        "batched_call_ms": round(1000 * batched),
        "batched_ms_per_episode_plan": round(1000 * batched / episodes),
        "speedup_batched_vs_one_at_a_time": round(one * episodes / batched, 2),
    }
    print(name, results[name])
tag = "gpu" if device.type == "cuda" else "cpu"
save(f"planning_latency_{tag}", {"device": str(device), "cem": "300 samples, 30 elites, "
                                 "30 iterations, horizon 5", "models": results})
