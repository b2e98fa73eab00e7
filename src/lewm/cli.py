"""The `lewm` command: one sub-command per verb. User errors print one line and exit 2."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lewm import __version__
from lewm.errors import LewmError


def cmd_collect(args) -> None:
    from lewm.data.collect import CollectConfig, collect

    cfg = CollectConfig(
        world=args.world, episodes=args.episodes, steps=args.steps, policy=args.policy,
        noise_std=args.noise_std, size=args.size, seed=args.seed, num_envs=args.num_envs,
    )
    out = collect(cfg, args.out, force=args.force, progress=not args.quiet)
    print(f"wrote {out['path']}: {out['episodes']} episodes, {out['rows']} rows in "
          f"{out['seconds']:.1f} s ({out['steps_per_s']:.0f} steps/s)")


def cmd_info(args) -> None:
    from lewm.data.hdf5 import describe

    print(describe(args.path))


def cmd_show(args) -> None:
    from lewm.data.hdf5 import check_output, open_episodes
    from lewm.io import write_gif

    with open_episodes(args.path) as f:
        n = len(f["ep_len"])
        if not 0 <= args.episode < n:
            raise LewmError(f"{args.path}: episode {args.episode} out of range (0..{n - 1})")
        o, length = int(f["ep_offset"][args.episode]), int(f["ep_len"][args.episode])
        frames = f["pixels"][o : o + length]
    out = Path(args.out or Path(args.path).with_suffix(f".ep{args.episode}.gif"))
    check_output(out, args.force)
    write_gif(frames, out, fps=args.fps, scale=max(1, 256 // frames.shape[1]))
    print(f"wrote {out} ({length} frames)")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="lewm", description=__doc__)
    p.add_argument("--version", action="version", version=f"lewm {__version__}")
    sub = p.add_subparsers(dest="verb", required=True, metavar="VERB")

    c = sub.add_parser("collect", help="collect episodes with a scripted policy into HDF5")
    c.add_argument("world", help="world to collect from (tworoom)")
    c.add_argument("--episodes", type=int, default=200)
    c.add_argument("--steps", type=int, default=100, help="actions per episode")
    c.add_argument("--policy", default="noisy-expert", help="random or noisy-expert")
    c.add_argument("--noise-std", type=float, default=None, help="expert action noise std")
    c.add_argument("--size", type=int, default=64, help="image size in pixels")
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--num-envs", type=int, default=8, help="environments stepped side by side")
    c.add_argument("--out", required=True, help="output .h5 file")
    c.add_argument("--force", action="store_true", help="replace an existing output")
    c.add_argument("--quiet", action="store_true", help="no progress bar")
    c.set_defaults(func=cmd_collect)

    i = sub.add_parser("info", help="summarise an episode file")
    i.add_argument("path")
    i.set_defaults(func=cmd_info)

    s = sub.add_parser("show", help="write a GIF of one episode")
    s.add_argument("path")
    s.add_argument("--episode", type=int, default=0)
    s.add_argument("--out", default=None, help="output GIF (default: beside the file)")
    s.add_argument("--fps", type=int, default=10)
    s.add_argument("--force", action="store_true")
    s.set_defaults(func=cmd_show)
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except LewmError as e:
        print(f"lewm {args.verb}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"lewm {args.verb}: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
