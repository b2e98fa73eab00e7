"""Time per decision of each planner on a trained run with an actor: its recipe's CEM,
`--planner actor` and `--planner guarded`, on the same episodes (the protocol's pairs of
`--seed`), each with one episode at a time (what a robot sees: `--batch 1`) and with
`--episodes` planned together. A decision is one planner call for one episode, its current
frame's encoding included (eval.json's `decision_ms_mean`).

    python bench/decision_latency.py RUN [RUN ...] [--episodes 20] [--batches 1 20]
        [--planners cem actor guarded] [--threads 2] [--tag NAME]

Each planner starts from the run's own plan for it (lewm.planning.config.run_plan), as
`lewm eval --planner NAME` does. The evaluations are written into each run as
eval-latency-PLANNER-bB.json (replacing earlier ones of that name); the figures go to
bench/results/decision_latency_cpu[_NAME].json, saved after every measurement.
"""

import argparse

import torch
from common import save

from lewm.checkpoint import read_meta
from lewm.evalrun import eval_run
from lewm.planning.config import changed, run_plan
from lewm.protocol import EvalConfig

p = argparse.ArgumentParser()
p.add_argument("runs", nargs="+")
p.add_argument("--episodes", type=int, default=20)
p.add_argument("--batches", type=int, nargs="+", default=[1, 20])
p.add_argument("--planners", nargs="+", default=["cem", "actor", "guarded"])
p.add_argument("--seed", type=int, default=42, help="the protocol's seed: which pairs")
p.add_argument("--threads", type=int, default=2)
p.add_argument("--tag", default="", help="suffix of the result file")
args = p.parse_args()
torch.set_num_threads(args.threads)
device = "cuda" if torch.cuda.is_available() else "cpu"

results = {}
for run in args.runs:
    meta = read_meta(run)
    row = results.setdefault(run, {"world": meta["data"]["world"],
                                   "recipe": meta.get("recipe")})
    for planner in args.planners:
        plan = run_plan(meta, planner)
        for batch in args.batches:
            protocol = EvalConfig(episodes=args.episodes, seed=args.seed, gifs=0, batch=batch)
            r = eval_run(run, protocol, plan, force=True,
                         out_name=f"eval-latency-{planner}-b{batch}.json")
            row[f"{planner}, batch {batch}"] = {
                "plan": " ".join(changed(plan)) or "the paper's CEM",
                "episodes": r["episodes_evaluated"],
                "decision_ms_mean": round(r["decision_ms_mean"], 2),
                "plan_ms_mean": round(r["plan_ms_mean"], 2),
                "plan_s_per_episode": round(r["plan_s_per_episode"], 3),
                "success_rate": r["success_rate"],
                "strict_success_rate": r["strict"]["success_rate"],
                "wall_s": round(r["wall_s"], 1),
            }
            print(run, planner, batch, row[f"{planner}, batch {batch}"], flush=True)
            tag = f"_{args.tag}" if args.tag else ""
            save(f"decision_latency_{device}{tag}",
                 {"device": device, "threads": args.threads, "episodes": args.episodes,
                  "seed": args.seed, "runs": results})
