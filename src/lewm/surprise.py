"""Surprise: the model's prediction error along trajectories with and without physically
implausible events (docs/design.md §1.5; arXiv 2603.19312 §5.2, App. F.3).

Three variants of the same trajectories (same start, same actions): unperturbed; a
mid-episode teleport of the agent or object (a physical violation); a mid-episode colour
change (a visual one). Each world defines its two events beside its env (`teleport`,
`recolour` in lewm.envs.<world>).
Surprise at frame t = ||predict(frames before t, actions) - encode(frame t)||^2.
"""

from __future__ import annotations

import importlib
from pathlib import Path

import numpy as np
import torch

from lewm import __version__
from lewm.envs import make_env
from lewm.envs.policies import make_policy
from lewm.errors import LewmError
from lewm.io import write_json
from lewm.rundir import load_run_model, writing
from lewm.worlds import get_world


def events(world: str):
    """The world's (teleport, recolour) events: functions of (env, rng) defined beside the
    env; a one-line error for a world that has none."""
    module = importlib.import_module(get_world(world).module)
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
def surprise_curve(model, frames: np.ndarray, actions_z: np.ndarray, keep: int | None = None):
    """(N, K + 1) prediction errors; column 0 (nothing to predict from) is NaN. With `keep`,
    also the predicted embedding (N, D) of frame `keep`: (errors, predictions)."""
    z = model.encode(torch.from_numpy(frames).to(model.device)).float()  # (N, K + 1, D)
    a = torch.from_numpy(actions_z).float().to(model.device)  # (N, K, blk)
    h = model.cfg.history
    out = np.full(frames.shape[:2], np.nan)
    kept = None
    for t in range(1, frames.shape[1]):
        lo = max(0, t - h)
        pred = model.predict(z[:, lo:t], model.embed_actions(a[:, lo:t]))[:, -1]
        out[:, t] = ((pred - z[:, t]) ** 2).sum(-1).cpu().numpy()
        if t == keep:
            kept = pred
    return out if keep is None else (out, kept)


def _stats():
    try:
        from scipy import stats
    except ImportError:
        raise LewmError("the surprise study's statistics need scipy: "
                        "pip install 'lewm[study]'") from None
    return stats


def paired_t_test(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Two-sided paired t-test of mean(x - y) = 0: (t, p)."""
    r = _stats().ttest_rel(x, y)
    return float(r.statistic), float(r.pvalue)


def auroc(pos: np.ndarray, neg: np.ndarray) -> float:
    """Probability that a positive scores above a negative (ties count half): the
    Mann-Whitney U statistic over the number of pairs."""
    pos, neg = np.asarray(pos, np.float64), np.asarray(neg, np.float64)
    u = _stats().mannwhitneyu(pos, neg, alternative="two-sided").statistic
    return float(u / (len(pos) * len(neg)))


def surprise(run_dir, trajectories: int = 64, blocks: int = 12, seed: int = 0,
             force: bool = False, device: str = "auto") -> dict:
    """Run the three variants; writes surprise.json and surprise.png in the run directory."""
    with writing(run_dir, "surprise.json", "measured"):
        return _surprise(run_dir, trajectories, blocks, seed, force, device)


def _surprise(run_dir, trajectories: int = 64, blocks: int = 12, seed: int = 0,
              force: bool = False, device: str = "auto") -> dict:
    run_dir = Path(run_dir)
    out = run_dir / "surprise.json"
    if trajectories < 2 or blocks < 4:
        raise LewmError(f"need at least 2 trajectories and 4 blocks, got {trajectories}, {blocks}")
    model = load_run_model(run_dir, (out.name,), force, device)
    world, size, fs = model.card.world, model.card.image_size, model.cfg.frameskip
    events(world)
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
    actions_z = model.card.action.to_z(actions).reshape(trajectories, blocks, -1)
    event = blocks // 2
    curves, pictures = {}, {}
    from lewm.decode import load_decoder, to_images

    decoder = load_decoder(run_dir, model.device)
    for variant in ("unperturbed", "teleport", "colour"):
        frames = rollout_variant(world, size, fs, seeds, actions, event, variant)
        curves[variant], pred = surprise_curve(model, frames, actions_z, keep=event)
        if decoder is not None:  # trajectory 0 at the event: what happened, what was expected
            pictures[variant] = (frames[0, event], to_images(decoder, size)(pred[:1])[0])
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
    result.update(checkpoint_step=model.card.step, version=__version__, seed=seed,
                  config=model.card.train)
    write_json(out, result)
    from lewm.plots import plot_surprise

    plot_surprise(curves, event, run_dir / "surprise.png", pictures)
    return result
