"""The `lewm` command: one sub-command per verb. User errors print one line and exit 2."""

from __future__ import annotations

import argparse
import errno
import os
import sys
from pathlib import Path

from lewm import __version__
from lewm.cliconfig import add_flags, add_plan_flags, describe_fields, from_flags, plan_from_flags
from lewm.errors import STORAGE_ERRNOS, LewmError


def cmd_collect(args) -> None:
    from lewm.data.collect import collect
    from lewm.data.config import CollectConfig

    if args.preset:
        from lewm.recipes import get_recipe

        base = get_recipe(args.preset).collect
        if args.world and args.world != base.world:
            raise LewmError(f"preset {args.preset!r} collects in world {base.world!r}, "
                            f"not {args.world!r}")
    elif args.world:
        base = CollectConfig(world=args.world)
    else:
        raise LewmError("name a world (tworoom, pusht, reacher, cube) or a --preset")
    cfg = from_flags(args, CollectConfig, base)
    out = collect(cfg, args.out, force=args.force, progress=not args.quiet)
    print(f"wrote {out['path']}: {out['episodes']} episodes, {out['rows']} rows in "
          f"{out['seconds']:.1f} s ({out['steps_per_s']:.0f} steps/s); the {out['policy']} "
          f"policy reached its episode's goal in {100 * out['episodes_solved']:.0f}%")


def cmd_info(args) -> None:
    from lewm.data.hdf5 import describe

    print(describe(args.path))


def cmd_convert(args) -> None:
    from lewm.data.lerobot import is_lerobot, read_lerobot, write_lerobot

    if is_lerobot(args.src) or Path(args.src).is_dir():
        if args.codec or args.crf is not None or args.fps or args.task:
            raise LewmError(f"{args.src}: a LeRobot dataset becomes an HDF5 file; --codec, "
                            "--crf, --fps and --task apply to the other direction")
        r = read_lerobot(args.src, args.out, camera=args.camera, size=args.size,
                         force=args.force, progress=not args.quiet)
        h, w = r["image"]
        image = f"{h} px" if h == w else f"{h} x {w} px"
        print(f"wrote {r['path']}: {r['episodes']} episodes, {r['frames']} frames of camera "
              f"{r['camera']} at {r['fps']:g} fps, {image}")
        return
    if args.size is not None:
        raise LewmError(f"{args.src}: --size resizes a LeRobot dataset's frames on the way to "
                        "HDF5; an episode file keeps its size (collect with --size instead)")
    r = write_lerobot(args.src, args.out, codec=args.codec or "av1", crf=args.crf,
                      fps=args.fps, camera=args.camera or "observation.image", task=args.task,
                      force=args.force, progress=not args.quiet)
    print(f"wrote {r['path']}: a LeRobot v3 dataset of {r['episodes']} episodes, "
          f"{r['frames']} frames at {r['fps']} fps ({r['codec']}, CRF {r['crf']})")


def cmd_merge(args) -> None:
    from lewm.data.merge import merge

    out = merge(args.paths, args.out, force=args.force)
    print(f"wrote {out['path']}: {out['episodes']} episodes, {out['rows']} rows from "
          f"{out['sources']} files")


def cmd_show(args) -> None:
    from lewm.data.hdf5 import open_episodes
    from lewm.io import check_output, write_gif

    if args.fps < 1:
        raise LewmError(f"--fps must be >= 1, got {args.fps}")
    with open_episodes(args.path) as f:
        n = len(f["ep_len"])
        if not 0 <= args.episode < n:
            raise LewmError(f"{args.path}: episode {args.episode} out of range (0..{n - 1})")
        o, length = int(f["ep_offset"][args.episode]), int(f["ep_len"][args.episode])
        frames = f["pixels"][o : o + length]
        world = f.attrs.get("world")
        states = f["state"][o : o + length] if "state" in f else None
    if args.perturb:
        frames = perturbed_beside_clean(args.path, world, frames, states, args.perturb,
                                        args.seed, args.episode)
    out = Path(args.out or Path(args.path).with_suffix(f".ep{args.episode}.gif"))
    if out.exists() and out.resolve() == Path(args.path).resolve():
        raise LewmError(f"{out}: is the episode file being shown; choose another --out")
    check_output(out, args.force)
    write_gif(frames, out, fps=args.fps, scale=max(1, 256 // frames.shape[1]))
    print(f"wrote {out} ({length} frames)")


def perturbed_beside_clean(path, world, frames, states, spec: str, seed: int, episode: int):
    """An episode's frames, clean | seen through its perturbed scene (as `lewm eval
    --perturb SPEC --seed SEED` would draw it for the episode with that index)."""
    import numpy as np

    from lewm.envs import make_env
    from lewm.evaluate import PERTURB_STREAM
    from lewm.perturb import PerturbedEnv, parse

    if not world:
        raise LewmError(f"{path}: does not say which world it holds, which --perturb needs")
    env = make_env(str(world), frames.shape[1])
    try:
        shown = PerturbedEnv(env, parse(spec), [seed, episode, PERTURB_STREAM])
        out = [shown.show(f, t, None if states is None else states[t])
               for t, f in enumerate(frames)]
    finally:
        env.close()
    sep = np.full_like(frames[0][:, :2], 255)
    return np.stack([np.concatenate([a, sep, b], axis=1) for a, b in zip(frames, out)])


def cmd_robustness(args) -> None:
    from lewm.protocol import EvalConfig
    from lewm.robustness import DEFAULT_SUITE, robustness

    protocol = from_flags(args, EvalConfig, EvalConfig(episodes=200))
    r = robustness(args.run_dir, args.perturb or DEFAULT_SUITE, protocol=protocol,
                   planner=args.planner, force=args.force, device=args.device)
    print(f"wrote {Path(args.run_dir) / 'robustness.json'} and robustness.png "
          f"({len(r['perturbations'])} perturbations on manifest "
          f"{r['manifest']['sha256'][:12]})")


def cmd_train(args) -> None:
    from lewm.recipes import get_recipe
    from lewm.train import train
    from lewm.trainconfig import override

    if args.stop_after is not None and args.stop_after < 1:
        raise LewmError(f"--stop-after must be >= 1 step, got {args.stop_after}")
    if args.resume:
        if args.set or args.camera:
            raise LewmError("--resume continues a run with its own config; drop --set and "
                            "--camera")
        summary = train(None, args.data, args.resume, resume=True, progress=not args.quiet,
                        stop_after=args.stop_after, force_data=args.force_data,
                        threads=args.threads, loggers=args.log)
    else:
        if not args.data or not args.out:
            raise LewmError("--data and --out are required (or --resume RUN_DIR)")
        recipe = get_recipe(args.preset)
        sets = [*args.set, *([f"camera={args.camera}"] if args.camera else [])]
        summary = train(override(recipe.train, sets), args.data, args.out, force=args.force,
                        progress=not args.quiet, stop_after=args.stop_after,
                        threads=args.threads, recipe=recipe, loggers=args.log)
    if os.environ.get("RANK", "0") != "0":
        return  # under torchrun, rank 0 reports
    val = summary["val"]
    print(f"{summary['run_dir']}: step {summary['step']}/{summary['steps']} in "
          f"{summary['seconds']:.0f} s, {summary['parameters']:,} parameters")
    if not summary["finished"]:
        print(f"  stopped early; continue with `lewm train --resume {summary['run_dir']}`")
    if val:
        print(f"  validation: prediction loss {val['pred_loss']:.4f}, SIGReg {val['sigreg']:.3f}, "
              f"effective rank {val['effective_rank']:.1f}, min per-dim std {val['std_min']:.3f}")


def cmd_eval(args) -> None:
    from lewm.checkpoint import read_meta
    from lewm.evalrun import eval_run
    from lewm.planning.config import changed, run_plan
    from lewm.protocol import EvalConfig

    base = run_plan(read_meta(args.run_dir), vars(args).get("PlanConfig.planner"))
    if changed(base):
        print(f"planning as the run's recipe says for {base.planner} "
              f"({' '.join(changed(base))}), with this command's flags on top")
    name = args.name
    if Path(name).name != name or not (name.startswith("eval") and name.endswith(".json")):
        raise LewmError(f"--name must be a file name eval*.json (e.g. eval-rest.json), got "
                        f"{name!r}")
    r = eval_run(args.run_dir, from_flags(args, EvalConfig), plan_from_flags(args, base),
                 data_path=args.data, force=args.force, device=args.device,
                 ensemble=args.ensemble or (), out_name=name)
    if r.get("perturb"):
        print(f"perturbed scene {r['perturb']['spec']}: {r['perturb']['what']}")
    print(f"success {rate_ci(r)} over {r['episodes_evaluated']} episodes; random policy "
          f"{100 * r['random_success_rate']:.0f}%, solved at start "
          f"{100 * r['solved_at_start']:.0f}%; plan {r['plan_ms_mean']:.0f} ms/episode-plan "
          f"({r['decision_ms_mean']:.1f} ms/decision with its frame's encoding), "
          f"{r['plan_s_per_episode']:.1f} s/episode (budget {r['budget']} steps); "
          f"{r['wall_s']:.0f} s")
    st = r["strict"]
    print(f"  strict ({r['criteria']['strict']}): success {rate_ci(st)}, random policy "
          f"{100 * st['random_success_rate']:.0f}%")
    u = r["unsolved_at_start"]
    if u["episodes"] and u["episodes"] < r["episodes_evaluated"]:
        print(f"  of the {u['episodes']} episodes not solved at the start: success "
              f"{100 * u['success_rate']:.0f}%, random policy "
              f"{100 * u['random_success_rate']:.0f}%")
    print(f"wrote {Path(args.run_dir) / name} (manifest {r['manifest']['sha256'][:12]}: "
          f"replay its episodes with --manifest)")


def rate_ci(r: dict) -> str:
    """A success rate and its 95 % interval, as the verbs print them."""
    lo, hi = r["success_ci95"]
    return f"{100 * r['success_rate']:.0f}% (95% CI {100 * lo:.0f}-{100 * hi:.0f})"


def cmd_demo(args) -> None:
    import dataclasses
    import time

    from lewm.data.collect import collect
    from lewm.data.config import CollectConfig
    from lewm.evalrun import eval_run
    from lewm.protocol import EvalConfig
    from lewm.recipes import get_recipe
    from lewm.rundir import prepare_run_dir
    from lewm.train import train
    from lewm.trainconfig import override

    start = time.perf_counter()
    recipe = get_recipe("tworoom-cpu")
    cfg = override(dataclasses.replace(recipe.train, seed=args.seed, device=args.device),
                   args.set)
    plan = recipe.plan
    out = prepare_run_dir(args.out, args.force, resume=False, resumable=False)
    collect_cfg = from_flags(args, CollectConfig, dataclasses.replace(
        recipe.collect, size=cfg.model.image_size, seed=args.seed))
    print(f"[1/3] collecting {collect_cfg.episodes} Two-Room episodes x {collect_cfg.steps} "
          "steps")
    data = collect(collect_cfg, out / "tworoom.h5", force=args.force, progress=not args.quiet)
    print("[2/3] training the tworoom-cpu preset")
    trained = train(cfg, out / "tworoom.h5", out, progress=not args.quiet, prepared=True,
                    recipe=recipe)
    print("[3/3] planning with CEM on the 50-episode protocol")
    r = eval_run(out, EvalConfig(), plan, device=args.device)
    total = time.perf_counter() - start
    lo, hi = r["success_ci95"]
    st = r["strict"]
    val = trained["val"]
    rows = [
        ("data", f"{collect_cfg.episodes} episodes x {collect_cfg.steps} steps, "
                 f"{collect_cfg.size} px, noisy expert", f"{data['seconds']:.0f} s"),
        ("training", f"{trained['steps']} steps, {trained['parameters']:,} parameters, "
                     f"val pred loss {val.get('pred_loss', float('nan')):.4f}, eff. rank "
                     f"{val.get('effective_rank', float('nan')):.1f}/{cfg.model.embed_dim}",
         f"{trained['seconds']:.0f} s"),
        ("planning", f"CEM {plan.solver.samples} samples x {plan.solver.iterations} "
                     f"iterations, horizon {plan.mpc.horizon}", f"{r['plan_ms_mean']:.0f} ms/plan"),
        ("success", f"{100 * r['success_rate']:.0f}% (95% CI {100 * lo:.0f}-{100 * hi:.0f}%) "
                    f"over {r['episodes_evaluated']} episodes (paper LeWM: 87%)", ""),
        ("random policy", f"{100 * r['random_success_rate']:.0f}%", ""),
        ("solved at start", f"{100 * r['solved_at_start']:.0f}%", ""),
        ("strict success", f"{rate_ci(st)}, held 3 steps; random policy "
                           f"{100 * st['random_success_rate']:.0f}%", ""),
        ("total", "", f"{total / 60:.1f} min"),
    ]
    print()
    for name, what, when in rows:
        print(f"  {name:<16} {what:<72} {when:>12}")
    print(f"\nrun directory: {out}  (eval.json, eval.png, curves.png, eval_episode*.gif)")


def cmd_train_actor(args) -> None:
    from lewm.actor.config import ActorConfig, run_actor_config
    from lewm.actor.train import train_actor
    from lewm.checkpoint import read_meta

    base = run_actor_config(read_meta(args.run_dir))
    meta = train_actor(args.run_dir, from_flags(args, ActorConfig, base), data_path=args.data,
                       force=args.force, device=args.device, progress=not args.quiet)
    f = meta["kept"]
    print(f"actor: {meta['parameters']:,} parameters, {meta['pairs']:,} hindsight starts in "
          f"{meta['train_episodes']} episodes; held-out MSE {f['val_mse']:.3f} at step "
          f"{f['step']}, the weights kept (z-scored action blocks: 1 is the mean's); embed "
          f"{meta['embed_seconds']:.0f} s, train "
          f"{meta['train_seconds']:.0f} s")
    print(f"wrote {Path(args.run_dir) / 'actor'}; act with `lewm eval {args.run_dir} "
          "--planner actor` (or guarded: the actor checked by a small CEM)")


def cmd_summary(args) -> None:
    from lewm.io import atomic_path, check_output, refuse_overlap, write_json
    from lewm.locks import exclusive
    from lewm.summary import read_eval, summarise_seeds, table

    evals = [read_eval(p) for p in args.evals]
    summary = summarise_seeds(evals)
    text = table(summary)
    print(text, end="")
    if args.out:
        out = Path(args.out)
        md = out.with_suffix(".md")
        refuse_overlap(out, [e["path"] for e in evals], holding=False)
        with exclusive(out):
            check_output(out, args.force)
            check_output(md, args.force)
            write_json(out, summary)
            with atomic_path(md) as tmp:
                tmp.write_text(text)
        print(f"wrote {out} and {md}")


def cmd_probe(args) -> None:
    from lewm.probe import probe
    from lewm.studyconfig import ProbeConfig

    cfg = from_flags(args, ProbeConfig)
    r = probe(args.run_dir, data_path=args.data, max_rows=cfg.rows, seed=cfg.seed,
              force=args.force, device=args.device)
    print(f"{'probe':<8} {'quantity':<20} {'MSE (std.)':>10} {'Pearson r':>10}")
    for kind, per in r["probes"].items():
        for q, m in per.items():
            print(f"{kind:<8} {q:<20} {m['mse']:>10.4f} {m['r']:>10.4f}")
    print(f"wrote {Path(args.run_dir) / 'probe.json'} and probe.png "
          f"({r['test_rows']} frames of {r['test_episodes']} held-out episodes)")


def cmd_decode(args) -> None:
    from lewm.decode import decode
    from lewm.studyconfig import DecodeConfig

    r = decode(args.run_dir, from_flags(args, DecodeConfig), data_path=args.data,
               force=args.force, device=args.device, progress=not args.quiet)
    line = (f"held-out reconstruction: MSE {r['heldout_mse']:.5f}, PSNR "
            f"{r['heldout_psnr_db']:.1f} dB ({r['test_frames']} frames)")
    if "agent_position" in r:
        a = r["agent_position"]
        line += (f"; decoded agent within 8 units in {100 * a['decoded_within_8_units']:.0f} % "
                 f"(median error {a['decoded_error_median']:.1f})")
    print(line)
    print(f"wrote {Path(args.run_dir) / 'decode.json'}, decode.png, decode_rollout.gif and the "
          "decoder (decoder.safetensors, decoder.json)")


def cmd_surprise(args) -> None:
    from lewm.studyconfig import SurpriseConfig
    from lewm.surprise import surprise

    cfg = from_flags(args, SurpriseConfig)
    r = surprise(args.run_dir, trajectories=cfg.trajectories, blocks=cfg.blocks,
                 seed=cfg.seed, force=args.force, device=args.device)
    print(f"event at frame {r['event_block']} of {r['blocks']}, {r['trajectories']} trajectories")
    for name, v in r["variants"].items():
        print(f"  {name:<9} spike {v['spike_mean']:.3f} vs {v['unperturbed_mean_at_event']:.3f} "
              f"unperturbed (x{v['ratio']:.1f}), paired t = {v['t']:.2f}, p = {v['p_value']:.2g}, "
              f"AUROC {v['auroc_peak']:.2f}")
    print(f"wrote {Path(args.run_dir) / 'surprise.json'} and surprise.png")


def cmd_ablate(args) -> None:
    from lewm.ablate import ablate, table
    from lewm.recipes import get_recipe
    from lewm.trainconfig import override

    recipe = get_recipe(args.preset)
    result = ablate(override(recipe.train, args.set), args.data, args.out, plan=recipe.plan,
                    regularizers=args.regularizers.split(","),
                    force=args.force, progress=not args.quiet, eval_episodes=args.episodes,
                    device=args.device,
                    perturbations=[s for s in (args.perturb or "").split(",") if s])
    print(table(result))
    print(f"wrote {Path(args.out) / 'ablation.md'}, ablation.json and ablation.png")


def add_device(parser, what: str = "") -> None:
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda", "mps"),
                        help=what or "where the model runs (auto: cuda, then mps, then cpu, "
                        "as in training)")


def cmd_import(args) -> None:
    from lewm.interop import import_checkpoint

    r = import_checkpoint(args.src, args.out, args.data, world=args.world, force=args.force)
    m = r["config"]
    print(f"imported {r['tensors']} tensors (transformers {r['layout']}.x names) into "
          f"{r['run_dir']}: ViT {m.enc_dim}x{m.enc_depth} at {m.image_size} px, D = "
          f"{m.embed_dim}, history {m.history}, {m.frameskip} x {m.action_dim}-D action blocks, "
          f"world {r['world']}")


def cmd_export(args) -> None:
    if args.format == "onnx":
        from lewm.export_onnx import export_onnx, verify

        r = export_onnx(args.run_dir, args.out, force=args.force)
        worst = verify(args.out, args.run_dir)
        print(f"wrote {r['out']}: {', '.join(g + '.onnx' for g in r['graphs'])} and "
              f"manifest.json; onnxruntime against torch, largest difference: "
              + ", ".join(f"{k} {v:.1e}" for k, v in worst.items()))
        return
    from lewm.interop import export_checkpoint

    r = export_checkpoint(args.run_dir, args.out, layout=args.transformers, force=args.force)
    print(f"wrote {r['out']}/weights.pt ({r['tensors']} tensors, transformers "
          f"{r['layout']}.x names) and config.json")


def build_parser() -> argparse.ArgumentParser:
    import dataclasses

    from lewm.actor.config import ActorConfig
    from lewm.data.config import CollectConfig
    from lewm.protocol import EvalConfig
    from lewm.recipes import get_recipe
    from lewm.studyconfig import DecodeConfig, ProbeConfig, SurpriseConfig
    from lewm.trainconfig import TrainConfig

    p = argparse.ArgumentParser(prog="lewm", description=__doc__)
    p.add_argument("--version", action="version", version=f"lewm {__version__}")
    sub = p.add_subparsers(dest="verb", required=True, metavar="VERB")

    c = sub.add_parser("collect", help="collect episodes with a scripted policy into HDF5")
    c.add_argument("world", nargs="?", help="tworoom, pusht, reacher or cube")
    c.add_argument("--preset", help="start from a preset's collection settings (e.g. pusht-cpu)")
    add_flags(c, CollectConfig, skip=("world",), title="collection (a --preset's values when "
              "given, else these defaults)")
    c.add_argument("--out", required=True, help="output .h5 file")
    c.add_argument("--force", action="store_true", help="replace an existing output")
    c.add_argument("--quiet", action="store_true", help="no progress bar")
    c.set_defaults(func=cmd_collect)

    i = sub.add_parser("info", help="summarise an episode file")
    i.add_argument("path")
    i.set_defaults(func=cmd_info)

    cv = sub.add_parser("convert", help="an HDF5 episode file to a LeRobot v3 dataset "
                        "directory, or back (the direction follows from SRC)")
    cv.add_argument("src", help="an episode file (.h5) or a LeRobot dataset directory")
    cv.add_argument("--out", required=True, help="the LeRobot directory, or the .h5 file")
    cv.add_argument("--codec", choices=("av1", "h264", "lossless"), default=None,
                    help="video codec (default av1, as lerobot writes; lossless: H.264 in RGB "
                    "at CRF 0, every pixel kept)")
    cv.add_argument("--crf", type=int, default=None,
                    help="quality, lower is better (default: av1 30, h264 23, lossless 0)")
    cv.add_argument("--fps", type=int, default=None,
                    help="frame rate to record (default: the world's control rate)")
    cv.add_argument("--camera", default=None, metavar="KEY",
                    help="the video feature: its name when writing (default "
                    "observation.image), the one to read when a dataset has several")
    cv.add_argument("--task", default=None, help="the task string every episode gets")
    cv.add_argument("--size", type=int, default=None, metavar="PX",
                    help="LeRobot to HDF5: centre-crop each frame to a square and resize it to "
                    "PX x PX, the model's image size (a robot camera's 480 x 640 -> 64)")
    cv.add_argument("--force", action="store_true", help="replace an existing output")
    cv.add_argument("--quiet", action="store_true", help="no progress")
    cv.set_defaults(func=cmd_convert)

    mg = sub.add_parser("merge", help="join episode files (e.g. collections with different "
                        "seeds) into one")
    mg.add_argument("paths", nargs="+", metavar="FILE", help="episode files, in order")
    mg.add_argument("--out", required=True, help="output .h5 file")
    mg.add_argument("--force", action="store_true", help="replace an existing output")
    mg.set_defaults(func=cmd_merge)

    s = sub.add_parser("show", help="write a GIF of one episode")
    s.add_argument("path")
    s.add_argument("--episode", type=int, default=0)
    s.add_argument("--out", default=None, help="output GIF (default: beside the file)")
    s.add_argument("--fps", type=int, default=10)
    s.add_argument("--perturb", metavar="NAME[:LEVEL]",
                   help="show the episode beside itself through a perturbed scene (the "
                   "perturbations of lewm eval --perturb)")
    s.add_argument("--seed", type=int, default=42,
                   help="the evaluation seed whose scene --perturb draws")
    s.add_argument("--force", action="store_true")
    s.set_defaults(func=cmd_show)
    t = sub.add_parser("train", help="train LeWM from pixels on an episode file",
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       epilog="--set keys (the preset's value replaces the default shown):\n"
                       + "\n".join(describe_fields(TrainConfig)))
    t.add_argument("--preset", default="tworoom-cpu", help="named configuration")
    t.add_argument("--data", help="training episode file (.h5) or LeRobot dataset directory")
    t.add_argument("--camera", metavar="KEY", default=None,
                   help="a LeRobot dataset's camera to train on (--set camera=KEY)")
    t.add_argument("--out", help="run directory to create")
    t.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config field, e.g. --set lr=1e-3 --set model.embed_dim=32")
    t.add_argument("--resume", metavar="RUN_DIR", help="continue a stopped run")
    t.add_argument("--stop-after", type=int, default=None, metavar="STEPS",
                   help="stop (with a checkpoint) after this many steps; --resume continues")
    t.add_argument("--threads", type=int, default=None, metavar="N",
                   help="CPU threads for this call (default: the config's `threads`); a "
                   "machine setting, so --resume may change it")
    t.add_argument("--log", action="append", default=[], choices=("wandb",),
                   help="also log the curves and config to Weights & Biases (offline unless "
                   "credentials are set; beside metrics.jsonl and TensorBoard)")
    t.add_argument("--force", action="store_true", help="replace an existing run directory")
    t.add_argument("--force-data", action="store_true",
                   help="--resume although the run's dataset changed since it started")
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    t.set_defaults(func=cmd_train)
    e = sub.add_parser("eval", help="plan towards goals and measure success (the paper "
                       "protocol)",
                       description="Plan towards goals and measure success. The defaults "
                       "below are the paper's; a run whose recipe plans its own way (e.g. "
                       "reacher-cpu's path cost) starts from that, and the flags given here "
                       "apply on top.")
    e.add_argument("run_dir")
    e.add_argument("--data", help="episode file for start/goal rows (default: the training data)")
    e.add_argument("--ensemble", nargs="+", metavar="RUN",
                   help="other runs trained on the same data (e.g. other seeds) to plan with "
                   "together with RUN_DIR: a plan's cost is the sum of each model's own, so "
                   "a plan one model is wrong about scores badly under the others")
    add_flags(e, EvalConfig, title="evaluation protocol")
    add_plan_flags(e)
    e.add_argument("--name", default="eval.json", help="the result's file name in the run "
                   "directory, eval*.json (its GIFs and PNG take its stem), so that several "
                   "evaluations of one run (other seeds, --start rest) live side by side "
                   "(default: eval.json)")
    e.add_argument("--force", action="store_true", help="replace an existing result")
    add_device(e)
    e.set_defaults(func=cmd_eval)
    d = sub.add_parser("demo", help="collect, train and evaluate Two-Room on a CPU (~5 min)")
    d.add_argument("--out", default="runs/demo", help="run directory (default runs/demo)")
    d.add_argument("--seed", type=int, default=0, help="seed of collection and training")
    add_flags(d, CollectConfig, skip=tuple(f.name for f in dataclasses.fields(CollectConfig)
                                           if f.name not in ("episodes", "steps")),
              title="collection (the tworoom-cpu recipe's, unless given)",
              base=get_recipe("tworoom-cpu").collect)
    d.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a field of the tworoom-cpu preset")
    d.add_argument("--force", action="store_true", help="replace an existing run directory")
    d.add_argument("--quiet", action="store_true", help="no progress bars")
    add_device(d, "the device of training and planning")
    d.set_defaults(func=cmd_demo)
    ta = sub.add_parser("train-actor", help="train a goal-conditioned actor on a run's frozen "
                        "latents (then: lewm eval RUN --planner actor)")
    ta.add_argument("run_dir")
    ta.add_argument("--data", help="episode file (default: the run's training data)")
    add_flags(ta, ActorConfig, title="actor")
    ta.add_argument("--force", action="store_true", help="replace the run's actor")
    ta.add_argument("--quiet", action="store_true", help="no progress bars")
    add_device(ta)
    ta.set_defaults(func=cmd_train_actor)

    sm = sub.add_parser("summary", help="several models' evaluations on the same episodes "
                        "(e.g. a recipe's training seeds) as one result: mean +- std over "
                        "models and the pooled CI, under both criteria")
    sm.add_argument("evals", nargs="+", metavar="EVAL", help="eval.json files or run "
                    "directories (their eval.json); one model's several episode sets pool")
    sm.add_argument("--out", help="write the summary here (.json) and its table beside it (.md)")
    sm.add_argument("--force", action="store_true", help="replace an existing summary")
    sm.set_defaults(func=cmd_summary)

    pr = sub.add_parser("probe", help="linear and MLP probes of the latent space")
    pr.add_argument("run_dir")
    pr.add_argument("--data", help="episode file (default: the training data)")
    add_flags(pr, ProbeConfig, title="probes")
    pr.add_argument("--force", action="store_true")
    add_device(pr)
    pr.set_defaults(func=cmd_probe)

    de = sub.add_parser("decode", help="train a pixel decoder for a run's embeddings; decode "
                        "held-out frames and an imagined rollout")
    de.add_argument("run_dir")
    de.add_argument("--data", help="episode file (default: the training data)")
    add_flags(de, DecodeConfig, title="decoder")
    de.add_argument("--force", action="store_true", help="replace an existing decoder")
    de.add_argument("--quiet", action="store_true", help="no progress bar")
    add_device(de)
    de.set_defaults(func=cmd_decode)

    su = sub.add_parser("surprise", help="prediction error on teleport and colour events")
    su.add_argument("run_dir")
    add_flags(su, SurpriseConfig, title="surprise study")
    su.add_argument("--force", action="store_true")
    add_device(su)
    su.set_defaults(func=cmd_surprise)

    from lewm.perturbspec import FAMILIES

    ro = sub.add_parser("robustness", help="success under each perturbation of the scene "
                        "beside clean, on the same episodes",
                        description="Evaluate RUN clean and under perturbed scenes (lewm.perturb)"
                        " on the same episodes; writes robustness.json, robustness.png and one "
                        "eval-robustness-*.json per scene in the run directory.")
    ro.add_argument("run_dir")
    ro.add_argument("--perturb", nargs="+", metavar="NAME[:LEVEL]",
                    help="the scenes (default: every family at its default level: "
                    f"{', '.join(FAMILIES)})")
    ro.add_argument("--planner", help="how to act (default: the run's recipe's plan; actor, "
                    "guarded, ... take the recipe's plan for them)")
    add_flags(ro, EvalConfig, skip=("perturb", "gifs", "goals", "offset"),
              title="evaluation protocol", base=EvalConfig(episodes=200))
    ro.add_argument("--force", action="store_true", help="replace existing results")
    add_device(ro)
    ro.set_defaults(func=cmd_robustness)

    im = sub.add_parser("import", help="make a run directory from an authors' checkpoint "
                        "(weights.pt + config.json)")
    im.add_argument("src", help="the checkpoint directory (or its weights .pt file)")
    im.add_argument("--data", required=True, help="an episode file of the checkpoint's world: "
                    "action statistics are fitted on it, and evaluation draws from it")
    im.add_argument("--world", help="tworoom, pusht, reacher or cube (default: the data's)")
    im.add_argument("--out", required=True, help="run directory to create")
    im.add_argument("--force", action="store_true", help="replace an existing checkpoint")
    im.set_defaults(func=cmd_import)

    ex = sub.add_parser("export", help="write a run's model as an authors' checkpoint, or as "
                        "ONNX graphs")
    ex.add_argument("run_dir")
    ex.add_argument("--out", required=True, help="directory for weights.pt and config.json "
                    "(authors), or the graphs and manifest.json (onnx)")
    ex.add_argument("--format", default="authors", choices=("authors", "onnx"),
                    help="authors: their torch layout, for load_pretrained; onnx: the encoder, "
                    "one predictor step and the actor (if trained) for onnxruntime and other "
                    "runtimes (pip install 'lewm[onnx]')")
    ex.add_argument("--transformers", default="4", choices=("4", "5"), help="ViT parameter "
                    "names of this transformers major version (4: the released checkpoints')")
    ex.add_argument("--force", action="store_true", help="replace existing files")
    ex.set_defaults(func=cmd_export)

    ab = sub.add_parser("ablate", help="the collapse study: each regulariser, same data and seed")
    ab.add_argument("--preset", default="tworoom-cpu")
    ab.add_argument("--data", required=True, help="training episode file (.h5)")
    ab.add_argument("--out", required=True, help="directory for the runs and the table")
    ab.add_argument("--regularizers", default="sigreg,none,vicreg,ema")
    ab.add_argument("--episodes", type=int, help="evaluation episodes per run (default: "
                    "EvalConfig's, the protocol's 50)")
    ab.add_argument("--perturb", metavar="SPECS", default="",
                    help="also each run in these scenes (comma-separated NAME[:LEVEL], e.g. "
                    "distractors,colour): success and the probes of the task state and of "
                    "the distractors, as `lewm robustness` on the clean evaluation's episodes")
    ab.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    ab.add_argument("--force", action="store_true")
    ab.add_argument("--quiet", action="store_true")
    add_device(ab, "the device of evaluation and probing (training: --set device=...)")
    ab.set_defaults(func=cmd_ablate)
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except LewmError as e:
        print(f"lewm {args.verb}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:
        print(f"lewm {args.verb}: interrupted{': ' + str(e) if str(e) else ''}", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (`lewm info FILE | head`): stop quietly, as Unix tools do.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except OSError as e:
        if e.errno not in USER_OS_ERRORS:
            raise
        # The machine's, not lewm's: a full disk, a read-only place, a missing permission.
        where = f"{e.filename}: " if e.filename else ""
        print(f"lewm {args.verb}: error: {where}{e.strerror or e}", file=sys.stderr)
        return 2
    return 0


USER_OS_ERRORS = STORAGE_ERRNOS | {errno.EPERM, errno.ENOENT, errno.ENOTDIR, errno.EISDIR,
                                   errno.EEXIST}


if __name__ == "__main__":
    sys.exit(main())
