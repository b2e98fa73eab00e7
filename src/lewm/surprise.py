"""Surprise: the model's prediction error along trajectories with and without physically
implausible events (DESIGN.md §1.5).

Three variants of the same trajectories (same start, same actions): unperturbed; a
mid-episode teleport of the agent or object (a physical violation); a mid-episode colour
change (a visual one). Each world defines its two events beside its env (`teleport`,
`recolour` in lewm.envs.<world>).
Surprise at frame t = ||predict(frames before t, actions) - encode(frame t)||^2.
"""

from __future__ import annotations

import importlib
import math
from pathlib import Path

import numpy as np
import torch

from lewm import __version__
from lewm.checkpoint import find_checkpoint, load_model
from lewm.devices import resolve_device
from lewm.envs import make_env
from lewm.envs.policies import make_policy
from lewm.errors import LewmError
from lewm.io import check_output, write_json


def events(world: str):
    """The world's (teleport, recolour) events: functions of (env, rng) defined beside the
    env; a one-line error for a world that has none."""
    module = importlib.import_module(f"lewm.envs.{world}")
    if not (hasattr(module, "teleport") and hasattr(module, "recolour")):
        raise LewmError(f"surprise has no teleport implemented for world {world!r}")
    return module.teleport, module.recolour


def rollout_variant(world, size, fs, seeds, actions, event_block, variant):
    """Frames (N, K + 1, S, S, 3) every `fs` steps; the event (if any) happens just before
    frame `event_block` is observed."""
    frames = []
    teleport, recolour = events(world)
    env = None
    for seed, acts in zip(seeds, actions):
        if env is None or variant == "colour":  # the new colour must not carry over
            if env is not None:
                env.close()
            env = make_env(world, size)
        obs, _ = env.reset(seed=int(seed))
        rng = np.random.default_rng(int(seed))
        ep = [obs]
        for k, block in enumerate(acts):
            for a in block:
                obs, *_ = env.step(a)
            if k + 1 == event_block and variant != "unperturbed":
                (teleport if variant == "teleport" else recolour)(env, rng)
                obs = env.render()
            ep.append(obs)
        frames.append(np.stack(ep))
    env.close()
    return np.stack(frames)


@torch.no_grad()
def surprise_curve(model, frames: np.ndarray, actions_z: np.ndarray) -> np.ndarray:
    """(N, K + 1) prediction errors; column 0 (nothing to predict from) is NaN."""
    z = model.encode(torch.from_numpy(frames).to(model.device)).float()  # (N, K + 1, D)
    a = torch.from_numpy(actions_z).float().to(model.device)  # (N, K, blk)
    h = model.cfg.history
    out = np.full(frames.shape[:2], np.nan)
    for t in range(1, frames.shape[1]):
        lo = max(0, t - h)
        pred = model.predict(z[:, lo:t], model.embed_actions(a[:, lo:t]))[:, -1]
        out[:, t] = ((pred - z[:, t]) ** 2).sum(-1).cpu().numpy()
    return out


def paired_t_test(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Two-sided paired t-test of mean(x - y) = 0: (t, p)."""
    d = x - y
    n = len(d)
    t = d.mean() / (d.std(ddof=1) / math.sqrt(n) + 1e-300)
    return float(t), float(student_t_sf2(abs(t), n - 1))


def student_t_sf2(t: float, dof: int) -> float:
    """P(|T| >= t) for Student's t with `dof` degrees of freedom: I_{dof/(dof+t^2)}(dof/2, 1/2)."""
    return _betainc(dof / 2, 0.5, dof / (dof + t * t))


def _betainc(a: float, b: float, x: float) -> float:
    """Regularised incomplete beta function by its continued fraction (Lentz's method)."""
    if x <= 0:
        return 0.0
    if x >= 1:
        return 1.0
    if x > (a + 1) / (a + b + 2):
        return 1.0 - _betainc(b, a, 1 - x)
    log_front = (math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b)
                 + a * math.log(x) + b * math.log(1 - x))
    tiny = 1e-300
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    f = d
    for m in range(1, 500):
        for num in (m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
                    -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))):
            d = 1.0 + num * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + num / c
            c = c if abs(c) > tiny else tiny
            f *= c * d
        if abs(c * d - 1) < 1e-14:
            break
    return math.exp(log_front) * f / a


def auroc(pos: np.ndarray, neg: np.ndarray) -> float:
    """Probability that a positive scores above a negative (ties count half)."""
    pos, neg = np.asarray(pos)[:, None], np.asarray(neg)[None, :]
    return float((pos > neg).mean() + 0.5 * (pos == neg).mean())


def surprise(run_dir, trajectories: int = 64, blocks: int = 12, seed: int = 0,
             force: bool = False, device: str = "auto") -> dict:
    """Run the three variants; writes surprise.json and surprise.png in the run directory."""
    run_dir = Path(run_dir)
    find_checkpoint(run_dir)
    out = run_dir / "surprise.json"
    check_output(out, force)
    if trajectories < 2 or blocks < 4:
        raise LewmError(f"need at least 2 trajectories and 4 blocks, got {trajectories}, {blocks}")
    model = load_model(run_dir, device=resolve_device(device))
    world = model.meta["data"].get("world", model.train_config.world)
    events(world)
    size, fs = int(model.meta["data"]["image_size"]), model.cfg.frameskip
    seeds = np.random.SeedSequence(seed).generate_state(trajectories)
    actions = []
    env = make_env(world, size)
    policy = make_policy(world, None, env)  # the world's data-collection policy
    for s in seeds:  # the unperturbed trajectories' actions, replayed by every variant
        obs, info = env.reset(seed=int(s))
        policy.reset(info, np.random.default_rng(int(s)))
        acts = []
        for _ in range(blocks * fs):
            a = policy(obs, info)
            obs, _, _, _, info = env.step(a)
            acts.append(a)
        actions.append(np.asarray(acts).reshape(blocks, fs, -1))
    env.close()
    actions = np.stack(actions)  # (N, K, fs, A)
    mean = np.asarray(model.stats["action"]["mean"], np.float32)
    std = np.asarray(model.stats["action"]["std"], np.float32)
    actions_z = ((actions - mean) / std).reshape(trajectories, blocks, -1)
    event = blocks // 2
    curves = {}
    for variant in ("unperturbed", "teleport", "colour"):
        frames = rollout_variant(world, size, fs, seeds, actions, event, variant)
        curves[variant] = surprise_curve(model, frames, actions_z)
    base = curves["unperturbed"]
    result = {"world": world, "trajectories": trajectories, "blocks": blocks,
              "event_block": event, "frameskip": fs, "variants": {}}
    for variant in ("teleport", "colour"):
        c = curves[variant]
        t, p = paired_t_test(c[:, event], base[:, event])
        result["variants"][variant] = {
            "spike_mean": float(c[:, event].mean()),
            "unperturbed_mean_at_event": float(base[:, event].mean()),
            "ratio": float(c[:, event].mean() / max(base[:, event].mean(), 1e-12)),
            "t": t, "p_value": p, "significant_p01": p < 0.01,
            "auroc_peak": auroc(np.nanmax(c, 1), np.nanmax(base, 1)),
        }
    result["mean_curves"] = {k: np.nanmean(v[:, 1:], 0).tolist() for k, v in curves.items()}
    result.update(checkpoint_step=model.meta.get("step"), version=__version__, seed=seed,
                  config=model.meta["train"])
    write_json(out, result)
    from lewm.plots import plot_surprise

    plot_surprise(curves, event, run_dir / "surprise.png")
    return result
