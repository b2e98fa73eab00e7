"""Is it the model or the search? On the protocol's episodes of a trained run (the dataset
goals `offset` steps ahead), the actions the collection policy actually took between start
and goal are a plan that reaches the goal. This compares them with CEM's first plan:

* replayed in the env from the start state: how often the dataset's actions and CEM's plan
  (each executed open loop, one plan of `horizon` blocks) reach the goal;
* under the model: the planning cost (final and path) of each. Where the dataset's actions
  cost less than CEM's plan, the model ranks the right plan first and the search missed it;
  where they cost more, the model (or the latent cost) prefers a plan that does not reach
  the goal, and no search can fix that;
* reached: the final-cost distance from the frame each plan actually reaches to the goal,
  beside what the model predicted for it. A plan the model scores far better than it turns
  out exploits the model's errors.

    python bench/plan_diagnosis.py runs/cube-cpu-s0 [--episodes 50] [--tag cube]
"""

import argparse
import dataclasses
import time

import numpy as np
import torch
from common import save

from lewm.data.hdf5 import open_episodes
from lewm.evaluate import make_envs, reset_envs
from lewm.goals import dataset_rows, read_states
from lewm.model.embed import embed_frames
from lewm.planning.cem import cem, episode_generators
from lewm.planning.config import CEMConfig, CostConfig
from lewm.planning.cost import latent_cost
from lewm.planning.mpc import ActionScaler
from lewm.rundir import load_run_model

p = argparse.ArgumentParser()
p.add_argument("run")
p.add_argument("--episodes", type=int, default=50)
p.add_argument("--offset", type=int, default=25, help="env steps from start to goal")
p.add_argument("--seed", type=int, default=42, help="the protocol's episode draw")
p.add_argument("--clip", action="store_true", help="CEM clips candidates to the action box")
p.add_argument("--tag", default="", help="suffix of the result file")
args = p.parse_args()

torch.set_num_threads(2)
model = load_run_model(args.run, (), force=True, device="cpu")
card, fs = model.card, model.cfg.frameskip
cem_cfg, horizon = CEMConfig(clip=args.clip), args.offset // fs
path = card.data["path"]
with open_episodes(path) as f:
    state = read_states(f, path, card.world)
    rows = dataset_rows(f, path, args.episodes, args.offset, args.seed)
    actions = np.stack([f["action"][r : r + horizon * fs] for r in rows])  # (B, T, A)
pairs = [(state[r], state[r + args.offset]) for r in rows]
envs, obs = make_envs(card.world, card.image_size, pairs)
goal_pixels = np.stack([e.goal_pixels() for e in envs])
scaler = ActionScaler(model.trained_card.action, fs, envs[0].action_space)
B, blk = len(envs), scaler.low_z.numel()


def replay(blocks_z) -> tuple[list[bool], list]:
    """Success at any step of one open-loop plan (B, H, blk), executed whole from the start
    states, and the frame each episode ends on."""
    out, last = [], []
    for e, plan, first in zip(envs, blocks_z, reset_envs(envs, pairs)):
        ok, frame = e.success(), first
        for block in plan:
            for a in scaler.to_env(block):
                frame, _, done, _, _ = e.step(a)
                ok = ok or done
        out.append(bool(ok))
        last.append(frame)
    return out, last


def reached_cost(frames) -> torch.Tensor:
    with torch.no_grad():
        return ((embed_frames(model, frames) - goal) ** 2).sum(-1)


t0 = time.perf_counter()
with torch.no_grad():
    context = embed_frames(model, obs)[:, None]
    goal = embed_frames(model, list(goal_pixels))
    dataset_z = torch.from_numpy(scaler.z.to_z(actions.reshape(B, horizon, blk)))
    result = {"run": args.run, "world": card.world, "episodes": B, "offset": args.offset,
              "data": str(path), "cem": dataclasses.asdict(cem_cfg), "horizon": horizon}
    plans = {}
    for reduce in ("final", "path"):
        cost = latent_cost(model, context, None, goal, CostConfig(reduce))
        gens = episode_generators(args.seed, range(B))
        plan, _ = cem(cost, B, blk, cem_cfg, gens, "cpu", None, scaler.low_z, scaler.high_z,
                      substeps=scaler.frameskip, horizon=horizon)
        plans[reduce] = plan
        c_data, c_plan = cost(dataset_z[:, None])[:, 0], cost(plan[:, None])[:, 0]
        result[reduce] = {
            "dataset_actions_cost_median": float(c_data.median()),
            "cem_plan_cost_median": float(c_plan.median()),
            "dataset_actions_cheaper": float((c_data < c_plan).float().mean()),
        }
solved_at_start = [e.success() for e in envs]
result["solved_at_start"] = float(np.mean(solved_at_start))
ok, frames = replay(dataset_z)
result["dataset_actions_success"] = float(np.mean(ok))
result["dataset_actions_reached_cost_median"] = float(reached_cost(frames).median())
for reduce, plan in plans.items():
    ok, frames = replay(plan)
    result[reduce]["cem_plan_success"] = float(np.mean(ok))
    result[reduce]["cem_plan_reached_cost_median"] = float(reached_cost(frames).median())
result["wall_s"] = time.perf_counter() - t0
for e in envs:
    e.close()
print(f"{card.world}: {B} episodes, solved at start {result['solved_at_start']:.0%}; the "
      f"dataset's actions replayed reach the goal in {result['dataset_actions_success']:.0%} "
      f"(reached cost {result['dataset_actions_reached_cost_median']:.3g})")
for reduce in plans:
    r = result[reduce]
    print(f"  {reduce} cost: CEM's first plan reaches it in {r['cem_plan_success']:.0%}; the "
          f"dataset's actions cost less than CEM's plan in {r['dataset_actions_cheaper']:.0%} "
          f"(median cost {r['dataset_actions_cost_median']:.3g} vs "
          f"{r['cem_plan_cost_median']:.3g}; CEM's plan reached "
          f"{r['cem_plan_reached_cost_median']:.3g})")
save(f"plan_diagnosis_{args.tag or card.world}" + ("_clip" if args.clip else ""), result)
