"""`lewm robustness RUN`: a run's success under each perturbation of its scene beside its
clean success, on the same episodes (docs/robustness.md).

The clean evaluation draws the episodes (or replays a manifest); each perturbation replays
them with its scene (lewm.perturb), so every row differs from the clean one in pixels only.
The random policy's floor is the same in every row: it never looks at the frames.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

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
    """The perturbation families the run's training data was rendered with (recorded by the
    collection in the data's description; none for clean data)."""
    return set((meta.get("data") or {}).get("perturb_families") or ())


def robustness(run_dir, perturbations=DEFAULT_SUITE, *, protocol: EvalConfig | None = None,
               planner: str | None = None, force: bool = False, device: str = "auto",
               progress=lambda line: print(line, flush=True)) -> dict:
    """Evaluate `run_dir` clean and under each of `perturbations` (specs NAME[:LEVEL]) on
    one set of episodes; writes robustness.json and robustness.png in the run directory and
    one eval-robustness-*.json per row."""
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
    write_json(run_dir / "robustness.json", result)
    from lewm.plots import plot_robustness

    plot_robustness(result, run_dir / "robustness.png")
    return result


def _criterion(r: dict) -> dict:
    return {k: r[k] for k in ("success_rate", "success_ci95", "random_success_rate",
                              "random_success_ci95")}


def _line(r: dict) -> str:
    lo, hi = r["success_ci95"]
    return (f"success {100 * r['success_rate']:.0f}% ({100 * lo:.0f}-{100 * hi:.0f}), strict "
            f"{100 * r['strict']['success_rate']:.0f}%, random "
            f"{100 * r['random_success_rate']:.0f}%; {r['wall_s']:.0f} s")
