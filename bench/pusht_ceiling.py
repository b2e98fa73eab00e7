"""The information ceiling of a CPU preset's encoder on Push-T: the same encoder trained
*supervised* to regress the state (agent xy, block xy, block angle as sin/cos) from single
frames, scored by Pearson r on held-out episodes. If it reaches r >= 0.95 on the block, the
encoder and resolution can see the block, and a world model that ignores it is limited by
its objective or its data (issue: Push-T at the paper's level from a CPU).

    python bench/pusht_ceiling.py --data data/pusht-cpu.h5 [--preset pusht-cpu] [--steps 3000]
"""

import argparse
import time

import numpy as np
import torch
from common import save

from lewm.data.clips import EpisodeData, split_episodes
from lewm.model import LeWM
from lewm.recipes import get_recipe
from lewm.trainconfig import override

p = argparse.ArgumentParser()
p.add_argument("--data", required=True)
p.add_argument("--preset", default="pusht-cpu")
p.add_argument("--set", action="append", default=[], help="override a preset field")
p.add_argument("--steps", type=int, default=3000)
p.add_argument("--batch", type=int, default=128)
p.add_argument("--lr", type=float, default=1e-3)
p.add_argument("--tag", default="", help="suffix of the result file")
args = p.parse_args()

torch.manual_seed(0)
torch.set_num_threads(2)
cfg = override(get_recipe(args.preset).train, args.set)
data = EpisodeData(args.data, columns=("state",))
train_eps, test_eps = split_episodes(data.num_episodes, 0.1, seed=0)
state = data.lowdim["state"]
# agent xy, block xy, sin/cos of the block angle: standardised on the training rows
y = np.concatenate([state[:, 0:4], np.sin(state[:, 4:5]), np.cos(state[:, 4:5])], 1)
names = ["agent_x", "agent_y", "block_x", "block_y", "block_sin", "block_cos"]
tr, te = data.episode_rows(train_eps), data.episode_rows(test_eps)
mu, sd = y[tr].mean(0), y[tr].std(0) + 1e-6
y = torch.from_numpy((y - mu) / sd).float()
model = LeWM(cfg.model)
head = torch.nn.Linear(cfg.model.enc_dim, y.shape[1])
params = [*model.encoder.parameters(), *head.parameters()]
opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=1e-3)
sched = torch.optim.lr_scheduler.OneCycleLR(opt, args.lr, total_steps=args.steps)
rng = np.random.default_rng(0)
pixels = data.pixels


def features(rows):
    x = model.preprocess(torch.from_numpy(pixels[np.sort(rows)]))
    return model.encoder(x), np.sort(rows)


start = time.perf_counter()
model.train()
for step in range(args.steps):
    rows = rng.choice(tr, args.batch, replace=False)
    f, rows = features(rows)
    loss = torch.nn.functional.mse_loss(head(f), y[rows])
    opt.zero_grad()
    loss.backward()
    opt.step()
    sched.step()
    if step % 500 == 0:
        print(f"step {step} loss {loss.item():.4f} ({time.perf_counter() - start:.0f} s)",
              flush=True)
model.eval()
preds = []
with torch.no_grad():
    for i in range(0, len(te), 512):
        preds.append(head(features(te[i : i + 512])[0]))
pred, truth = torch.cat(preds).numpy(), y[np.sort(te)].numpy()
r = {n: float(np.corrcoef(pred[:, k], truth[:, k])[0, 1]) for k, n in enumerate(names)}
summary = {"agent_position": np.mean([r["agent_x"], r["agent_y"]]),
           "block_position": np.mean([r["block_x"], r["block_y"]]),
           "block_angle": np.mean([r["block_sin"], r["block_cos"]])}
print({k: round(v, 3) for k, v in summary.items()})
save(f"pusht_ceiling{args.tag}", {
    "data": args.data, "preset": args.preset, "overrides": args.set,
    "encoder": {k: getattr(cfg.model, k) for k in ("encoder", "image_size", "conv_channels",
                                                   "enc_dim")},
    "steps": args.steps, "batch": args.batch, "lr": args.lr,
    "seconds": round(time.perf_counter() - start), "test_rows": len(te),
    "pearson_r": {k: round(v, 4) for k, v in r.items()},
    "pearson_r_summary": {k: round(float(v), 4) for k, v in summary.items()}})
