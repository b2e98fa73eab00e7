"""Where do a Push-T run's failed episodes end? Plans the protocol's episodes as `lewm eval`
does (the run's own planning settings) and reads each episode's last state: its distance to
the goal in the success test's terms (the 4-vector of agent and block position, < 20; the
block angle, < pi / 9) and the agent's and block's parts of it, beside how far the block
started from its goal. Episodes whose goal leaves the block in place tell whether the plan
knocks it away.

    python bench/pusht_final_errors.py runs/pusht-s0 [--episodes 50] [--tag keypoints]
"""

import argparse
import math
import time

import numpy as np
import torch
from common import save

from lewm.checkpoint import load_model, read_meta
from lewm.envs.pusht import SUCCESS_ANGLE, SUCCESS_POS, wrap
from lewm.evaluate import make_envs
from lewm.goals import dataset_pairs
from lewm.planning.config import changed, run_plan
from lewm.planning.mpc import plan_setup, run_mpc
from lewm.planning.registry import make_planner
from lewm.protocol import EvalConfig

p = argparse.ArgumentParser()
p.add_argument("run")
p.add_argument("--episodes", type=int, default=50)
p.add_argument("--seed", type=int, default=42, help="the protocol's episode draw")
p.add_argument("--tag", default="", help="suffix of the result file")
args = p.parse_args()

t0 = time.perf_counter()
model = load_model(args.run, "cpu")
card = model.card
if card.world != "pusht":
    raise SystemExit(f"{args.run}: a {card.world} run; this reads Push-T states")
torch.set_num_threads(2)
plan = run_plan(read_meta(args.run))  # the run's recipe, as `lewm eval` reads it
pairs = dataset_pairs(card.data["path"], args.episodes, EvalConfig.offset, args.seed, "pusht")
envs, obs = make_envs("pusht", card.image_size, pairs)
goal_pixels = np.stack([e.goal_pixels() for e in envs])
planner = make_planner(plan, model, plan_setup(model, envs[0].action_space, args.seed))
logs, _ = run_mpc(model, planner, envs, obs, goal_pixels, plan.mpc, 50)


episodes = []
for (start, goal), log, env in zip(pairs, logs, envs):
    end, start, goal = env.sim.state(), np.asarray(start), np.asarray(goal)
    episodes.append({
        "success": bool(log.success),
        "end_distance": float(np.linalg.norm(end[:4] - goal[:4])),
        "end_agent": float(np.linalg.norm(end[:2] - goal[:2])),
        "end_block": float(np.linalg.norm(end[2:4] - goal[2:4])),
        "end_angle_deg": math.degrees(abs(wrap(end[4] - goal[4]))),
        "start_block": float(np.linalg.norm(start[2:4] - goal[2:4])),
        "start_angle_deg": math.degrees(abs(wrap(start[4] - goal[4]))),
    })
    env.close()
failed = [e for e in episodes if not e["success"]]
still = [e for e in episodes if e["start_block"] < 5 and e["start_angle_deg"] < 5]


def median(key, rows):
    return float(np.median([e[key] for e in rows])) if rows else None


result = {
    "run": args.run, "data": card.data["path"], "episodes": len(episodes),
    "plan": changed(plan), "success_rate": float(np.mean([e["success"] for e in episodes])),
    "failed": {
        "count": len(failed),
        **{f"median_{k}": median(k, failed)
           for k in ("end_distance", "end_agent", "end_block", "end_angle_deg")},
        "position_within_tolerance": sum(e["end_distance"] < SUCCESS_POS for e in failed),
        "angle_within_tolerance": sum(e["end_angle_deg"] < math.degrees(SUCCESS_ANGLE)
                                      for e in failed),
    },
    "block_in_place_at_start": {
        "count": len(still), "success": sum(e["success"] for e in still),
        "block_moved_away": [round(e["end_block"], 1) for e in still if not e["success"]],
    },
    "per_episode": episodes,
    "wall_s": time.perf_counter() - t0,
}
f = result["failed"]
print(f"success {result['success_rate']:.0%}; {f['count']} failed, ending a median "
      f"{f['median_end_distance']:.1f} from the goal (agent {f['median_end_agent']:.1f}, "
      f"block {f['median_end_block']:.1f}, angle {f['median_end_angle_deg']:.1f} deg); "
      f"positions within tolerance in {f['position_within_tolerance']}, angle in "
      f"{f['angle_within_tolerance']}")
s = result["block_in_place_at_start"]
print(f"goals with the block in place: {s['count']}, solved {s['success']}; the block ends "
      f"{s['block_moved_away']} away in the others")
save(f"pusht_final_errors_{args.tag}" if args.tag else "pusht_final_errors", result)
