"""`lewm robustness RUN`: a run's success under each perturbation of its scene beside its
clean success, on the same episodes (docs/robustness.md).

The clean evaluation draws the episodes (or replays a manifest); each perturbation replays
them with its scene (lewm.perturb), so every row differs from the clean one in pixels only.
The random policy's floor is the same in every row: it never looks at the frames.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import torch

from lewm import __version__
from lewm.errors import LewmError
from lewm.io import check_output, write_json
from lewm.perturb import FAMILIES, parse
from lewm.protocol import EvalConfig

DEFAULT_SUITE = tuple(FAMILIES)
"""every family at its default level"""


def eval_name(spec: str) -> str:
    """The evaluation file of one row in the run directory."""
    return "eval-robustness-" + (spec.replace(":", "-") if spec else "clean") + ".json"


def training_families(meta: dict) -> set[str]:
    """The perturbation families the run saw in training: those its data was rendered with
    (`lewm collect --distractors`, recorded with the data) and those its training drew
    (`augment`)."""
    from lewm.train import training_families as families

    seen = set((meta.get("data") or {}).get("perturb_families") or ())
    return seen | set(families((meta.get("train") or {}).get("augment", "")))


def robustness(run_dir, perturbations=DEFAULT_SUITE, *, protocol: EvalConfig | None = None,
               planner: str | None = None, force: bool = False, device: str = "auto",
               probes: bool = True,
               progress=lambda line: print(line, flush=True)) -> dict:
    """Evaluate `run_dir` clean and under each of `perturbations` (specs NAME[:LEVEL]) on
    one set of episodes; writes robustness.json and robustness.png in the run directory and
    one eval-robustness-*.json per row. probes: also the linear probe of the task state in
    each scene and of the distractors' own position (`probe_scene`), and the surprise where
    each scene switches on (`onset_surprise`)."""
    from lewm.checkpoint import read_meta
    from lewm.evalrun import eval_run
    from lewm.planning.config import run_plan

    run_dir = Path(run_dir)
    specs = [parse(p).spec for p in perturbations]
    if len(set(specs)) < len(specs):
        raise LewmError(f"a perturbation is listed twice: {', '.join(specs)}")
    outputs = ["robustness.json", eval_name("")] + [eval_name(s) for s in specs]
    for name in outputs:
        check_output(run_dir / name, force)
    meta = read_meta(run_dir)
    plan = run_plan(meta, planner)
    protocol = dataclasses.replace(protocol or EvalConfig(episodes=200), perturb="", gifs=0)
    seen_in_training = training_families(meta)

    progress(f"clean: {protocol.episodes} episodes" if not protocol.manifest
             else f"clean: the episodes of {protocol.manifest}")
    clean = eval_run(run_dir, protocol, plan, force=force, device=device,
                     out_name=eval_name(""))
    progress(f"  clean {_line(clean)}")
    replay = dataclasses.replace(protocol, manifest=str(run_dir / eval_name("")))
    rows = []
    for spec in specs:
        r = eval_run(run_dir, dataclasses.replace(replay, perturb=spec), plan, force=force,
                     device=device, out_name=eval_name(spec))
        progress(f"  {spec:<16} {_line(r)}")
        family = parse(spec).family
        rows.append({
            "name": family, "level": parse(spec).level, "spec": spec,
            "held_out": family not in seen_in_training,
            "evaluation": eval_name(spec),
            **_criterion(r), "clean_success_rate": clean["success_rate"],
            "drop": clean["success_rate"] - r["success_rate"],
            "strict": {**_criterion(r["strict"]),
                       "clean_success_rate": clean["strict"]["success_rate"],
                       "drop": clean["strict"]["success_rate"] - r["strict"]["success_rate"]},
            "wall_s": r["wall_s"],
        })
    result = {
        "run": str(run_dir), "world": clean["world"], "planner": clean["planner"],
        "version": __version__, "checkpoint_sha256": clean.get("checkpoint_sha256"),
        "manifest": clean["manifest"], "criteria": clean["criteria"],
        "training_families": sorted(seen_in_training),
        "clean": {**_criterion(clean), "strict": _criterion(clean["strict"]),
                  "evaluation": eval_name(""), "wall_s": clean["wall_s"]},
        "perturbations": rows,
    }
    if probes:
        from lewm.checkpoint import load_model

        model = load_model(run_dir)
        result["probe"] = {"clean": probe_scene(model, "")}
        result["probe"].update({spec: probe_scene(model, spec) for spec in specs})
        for row in rows:
            row["probe_r"] = result["probe"][row["spec"]]
            row["surprise"] = onset_surprise(model, row["spec"])
        progress("  probes (Pearson r, held-out episodes): " + "; ".join(
            f"{k}: " + ", ".join(f"{q} {v:.2f}" for q, v in r.items())
            for k, r in result["probe"].items()))
        progress("  surprise at the onset / after it, x clean: " + "; ".join(
            f"{row['spec']} {row['surprise']['ratio_at_onset']:.1f} / "
            f"{row['surprise']['ratio_after_onset']:.1f}" for row in rows))
    write_json(run_dir / "robustness.json", result)
    from lewm.plots import plot_robustness

    plot_robustness(result, run_dir / "robustness.png")
    return result


PROBE_STREAM = 0x70726f62
"""mixed into the probe episodes' seeds: their scenes are not the evaluation's"""


@torch.no_grad()
def probe_scene(model, spec: str = "", episodes: int = 64, steps: int = 15,
                seed: int = 0) -> dict:
    """Does the latent hold the task state in this scene, and does it spend capacity on the
    distractors? Random-action episodes in the scene `spec` ("" for clean); a ridge probe
    (lewm.probe) from single-frame embeddings, fitted on the first half of the episodes and
    scored (Pearson r, mean over components) on the other half: of each task quantity the
    world declares, and with distractors, of the first shape's position."""
    from lewm.envs import make_env
    from lewm.model.embed import embed_frames
    from lewm.perturb import PerturbedEnv
    from lewm.probe import pearson, ridge, targets

    world, size = model.card.world, model.card.image_size
    env = make_env(world, size)
    tracks_shapes = bool(spec) and parse(spec).family == "distractors"
    frames, low, shapes = [], {"state": [], "proprio": []}, []
    try:
        for e in range(episodes):
            shown = PerturbedEnv(env, parse(spec), [seed, e, PROBE_STREAM]) if spec else env
            rng = np.random.default_rng([seed, e, PROBE_STREAM])
            obs, info = shown.reset(seed=int(rng.integers(2**31)))
            for t in range(steps + 1):
                frames.append(obs)
                low["state"].append(info["state"])
                low["proprio"].append(info["proprio"])
                if tracks_shapes:
                    shapes.append(shown.scene.centres(t)[0] / size)
                if t < steps:
                    obs, _, _, _, info = shown.step(rng.uniform(env.action_space.low,
                                                                env.action_space.high))
    finally:
        env.close()
    low = {k: np.asarray(v, np.float64) for k, v in low.items()}
    ys = targets(world, low, np.arange(len(frames)), world)
    if shapes:
        ys["distractor_position"] = np.asarray(shapes, np.float32)
    x = embed_frames(model, frames).cpu()
    half = (episodes // 2) * (steps + 1)
    out = {}
    for name, y in ys.items():
        y = torch.as_tensor(y, dtype=torch.float32)
        w, b = ridge(x[:half], y[:half])
        pred = (x[half:] @ w + b).numpy()
        out[name] = float(np.mean([pearson(pred[:, k], y[half:, k].numpy())
                                   for k in range(y.shape[1])]))
    return out


@torch.no_grad()
def onset_surprise(model, spec: str, trajectories: int = 32, blocks: int = 8,
                   seed: int = 0) -> dict:
    """Surprise (lewm.surprise: the squared error of the predicted next embedding) where a
    scene switches on mid-trajectory: the same random-action trajectories clean throughout,
    and clean up to block `blocks // 2`, then seen through the scene. Returns the mean error
    at the onset and after it (does the model settle?), each beside the clean one, and
    their ratios."""
    from lewm.envs import make_env
    from lewm.perturb import PerturbedEnv
    from lewm.surprise import surprise_curve

    world, size, fs = model.card.world, model.card.image_size, model.cfg.frameskip
    onset = blocks // 2
    env = make_env(world, size)
    clean, switched, actions = [], [], []
    try:
        for i in range(trajectories):
            rng = np.random.default_rng([seed, i, PROBE_STREAM, 1])
            shown = PerturbedEnv(env, parse(spec), [seed, i, PROBE_STREAM, 1])
            obs, _ = env.reset(seed=int(rng.integers(2**31)))
            ep, seen = [obs], [obs]
            acts = rng.uniform(env.action_space.low, env.action_space.high,
                               (blocks, fs, env.action_space.shape[0]))
            for k, block in enumerate(acts):
                for a in block:
                    obs = env.step(a)[0]
                ep.append(obs)
                t = (k + 1) * fs
                seen.append(shown.show(obs, t) if k + 1 >= onset else obs)
            clean.append(np.stack(ep))
            switched.append(np.stack(seen))
            actions.append(acts)
    finally:
        env.close()
    acts = model.card.action.to_z(np.stack(actions)).reshape(trajectories, blocks, -1)
    base = surprise_curve(model, np.stack(clean), acts)
    curve = surprise_curve(model, np.stack(switched), acts)
    at, base_at = float(curve[:, onset].mean()), float(base[:, onset].mean())
    after, base_after = float(curve[:, onset + 1:].mean()), float(base[:, onset + 1:].mean())
    return {"onset_block": onset, "at_onset": at, "clean_at_onset": base_at,
            "ratio_at_onset": at / max(base_at, 1e-12), "after_onset": after,
            "clean_after_onset": base_after, "ratio_after_onset": after / max(base_after, 1e-12)}


def _criterion(r: dict) -> dict:
    return {k: r[k] for k in ("success_rate", "success_ci95", "random_success_rate",
                              "random_success_ci95")}


def _line(r: dict) -> str:
    lo, hi = r["success_ci95"]
    return (f"success {100 * r['success_rate']:.0f}% ({100 * lo:.0f}-{100 * hi:.0f}), strict "
            f"{100 * r['strict']['success_rate']:.0f}%, random "
            f"{100 * r['random_success_rate']:.0f}%; {r['wall_s']:.0f} s")
