"""`lewm train-actor RUN`: train the actor on RUN's frozen model from RUN's own episodes.

Outputs in RUN/actor/: actor.safetensors + actor.json (its config, sizes, the world model's
SHA-256 and its own), metrics.jsonl (train and held-out loss), curves.png, and the cached
embeddings (embeddings.npy + .json). The held-out episodes are the run's validation episodes.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from lewm import __version__
from lewm.actor.config import ActorConfig
from lewm.actor.hindsight import HindsightPairs, action_blocks, cached_embeddings
from lewm.actor.net import Actor, actor_dir
from lewm.errors import LewmError
from lewm.io import atomic_path, check_output, write_json
from lewm.rundir import load_run_model, writing

VAL_PAIRS = 4096  # held-out pairs scored at each check
CHECKS = 20  # held-out checks per training (the best one's weights are kept)


def train_actor(run_dir, cfg: ActorConfig, data_path=None, force: bool = False,
                device: str = "auto", progress: bool = True) -> dict:
    """Train RUN's actor (see the module docstring); returns actor.json's content."""
    with writing(run_dir, "actor.json", "given an actor"):
        return _train_actor(Path(run_dir), cfg, data_path, force, device, progress)


def fit(net: Actor, emb: torch.Tensor, actions: np.ndarray, pairs: HindsightPairs, val_rows,
        blocks_z, cfg: ActorConfig, rng: np.random.Generator, progress: bool = False,
        model=None) -> list:
    """Train `net` on hindsight `pairs` of rows with embeddings `emb` (N, D) and raw
    `actions` (N, A), the targets z-scored by `blocks_z` (the model's block statistics);
    `val_rows` (t, prev, goal) are scored CHECKS times, evenly, by the squared error of the
    block (whatever the loss), and the net is left with the weights of the best check, in
    eval mode. `model`: the frozen world model, for `cfg.consistency`. Returns the
    metrics."""
    from tqdm.auto import tqdm

    dev = next(net.parameters()).device
    fs = pairs.fs
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, cfg.lr, total_steps=cfg.steps,
                                                pct_start=min(0.5, max(0.05, 2 / cfg.steps)))

    def batch(rows, drop: float):
        t, prev, goal = rows
        if drop:
            prev = np.where(rng.random(len(t)) < drop, t, prev)
        target = torch.from_numpy(blocks_z.to_z(action_blocks(actions, t, fs))).float()
        inputs = (emb[t].to(dev), emb[prev].to(dev), emb[goal].to(dev))
        return inputs, target.to(dev), emb[t + fs].to(dev)  # t + fs: inside the episode

    def objective(inputs, target, reached):
        mean, log_std = net.distribution(*inputs)
        if log_std is None:
            loss = F.mse_loss(mean, target)
        else:  # the diagonal Gaussian's negative log-likelihood, up to a constant
            loss = (0.5 * ((target - mean) / log_std.exp()) ** 2 + log_std).mean()
        if cfg.consistency:
            # Where the frozen predictor expects the actor's block to lead, against where the
            # data's block led: gradients reach the actor through the model, not the model.
            expected = model.rollout(inputs[0][:, None], None, mean[:, None])[:, 0]
            loss = loss + cfg.consistency * F.mse_loss(expected, reached)
        return loss

    net.train()
    metrics, best = [], (float("inf"), None)
    every = max(1, cfg.steps // CHECKS)
    bar = tqdm(range(cfg.steps), desc="actor", unit="step", disable=not progress,
               dynamic_ncols=True, mininterval=1.0)
    for step in bar:
        loss = objective(*batch(pairs.draw(cfg.batch_size, rng), cfg.drop_motion))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if (step + 1) % every == 0 or step + 1 == cfg.steps:
            with torch.no_grad():
                v_in, v_target, _ = batch(val_rows, 0.0)
                val_loss = float(F.mse_loss(net(*v_in), v_target))
            metrics.append({"step": step + 1, "train_loss": loss.item(), "val_mse": val_loss})
            bar.set_postfix(mse=f"{loss.item():.3f}", val=f"{val_loss:.3f}")
            if val_loss < best[0]:
                best = (val_loss, {k: v.detach().clone() for k, v in net.state_dict().items()})
    bar.close()
    # Small datasets overfit (a held-out loss that rises while the training loss falls): the
    # weights kept are those of the best held-out check.
    net.load_state_dict(best[1])
    net.eval()
    return metrics


def _train_actor(run_dir: Path, cfg, data_path, force, device, progress) -> dict:
    from lewm.data.clips import EpisodeData, held_out_split
    from lewm.data.hdf5 import check_world
    from lewm.decode import model_digest

    model = load_run_model(run_dir, (), force, device)
    out = actor_dir(run_dir)
    if (out / "actor.json").exists() or (out / "actor.safetensors").exists():
        check_output(out / "actor.json", force)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    for p in model.parameters():
        p.requires_grad_(False)
    card = model.trained_card
    data_path = data_path or card.data["path"]
    data = EpisodeData(data_path, camera=card.data.get("camera"))
    check_world(data_path, data.attrs, card.world, card.image_size, data.image_size[0])
    digest = model_digest(run_dir)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    emb = cached_embeddings(model, data, out / "embeddings.npy", digest, progress)
    embed_s = time.perf_counter() - t0

    fs, dev = model.cfg.frameskip, model.device
    blocks_z = card.action.blocks(fs)
    train_eps, val_eps = held_out_split(card.data, data.num_episodes, cfg.seed)
    try:
        pairs = HindsightPairs(data.ep_offset, data.ep_len, train_eps, fs, cfg.max_offset)
        val = HindsightPairs(data.ep_offset, data.ep_len, val_eps if len(val_eps) else
                             train_eps, fs, cfg.max_offset)
    except ValueError as e:
        raise LewmError(f"{data_path}: {e}: no actor training pairs") from None
    rng = np.random.default_rng(cfg.seed)
    torch.manual_seed(cfg.seed)
    net = Actor(emb.shape[1], fs * data.action_dim, cfg.hidden, cfg.depth,
                cfg.loss == "gaussian").to(dev)
    t1 = time.perf_counter()
    metrics = fit(net, emb, data.action, pairs, val.draw(VAL_PAIRS, rng), blocks_z, cfg, rng,
                  progress, model)
    train_s = time.perf_counter() - t1

    from safetensors.torch import save

    blob = save({k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()})
    with atomic_path(out / "actor.safetensors") as tmp:
        tmp.write_bytes(blob)
    with atomic_path(out / "metrics.jsonl") as tmp:
        tmp.write_text("".join(json.dumps(m) + "\n" for m in metrics))
    meta = {
        "version": __version__, "config": asdict(cfg), "embed_dim": int(emb.shape[1]),
        "block_dim": fs * data.action_dim, "frameskip": fs, "world": card.world,
        "model_sha256": digest, "sha256": hashlib.sha256(blob).hexdigest(),
        "data": str(data_path), "train_episodes": len(train_eps),
        "heldout_episodes": len(val_eps), "pairs": len(pairs),
        "final": metrics[-1], "kept": min(metrics, key=lambda m: m["val_mse"]),
        "embed_seconds": embed_s, "train_seconds": train_s,
        "parameters": sum(p.numel() for p in net.parameters()),
    }
    write_json(out / "actor.json", meta)
    from lewm.plots import plot_actor

    plot_actor(metrics, out / "curves.png")
    return meta
