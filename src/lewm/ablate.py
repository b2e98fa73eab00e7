"""The collapse study: the same preset, data and seed trained with each anti-collapse
regulariser (SIGReg, none, VICReg, EMA target), then evaluated with the planning protocol and
probed, and optionally in messy scenes (`lewm robustness` on each run: success, the probes of
the task state and of the distractors). Writes ablation.json, ablation.md and ablation.png."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

from lewm import __version__
from lewm.errors import LewmError
from lewm.io import atomic_path, check_output, write_json
from lewm.planning.config import PlanConfig
from lewm.protocol import EvalConfig
from lewm.trainconfig import REGULARIZERS, TrainConfig

LABELS = {"sigreg": "SIGReg (LeWM)", "none": "none", "vicreg": "VICReg (var + cov)",
          "ema": "EMA target (BYOL)"}


def ablate(cfg: TrainConfig, data_path, out, plan: PlanConfig | None = None,
           regularizers=REGULARIZERS, force: bool = False, progress: bool = True,
           eval_episodes: int | None = None, device: str = "auto",
           perturbations=()) -> dict:
    """Train `cfg` with each of `regularizers`, evaluate each run with `plan` and probe it;
    with `perturbations` (specs NAME[:LEVEL]), also evaluate and probe it in each of those
    scenes on the clean evaluation's episodes."""
    from lewm.evalrun import eval_run
    from lewm.perturbspec import parse
    from lewm.plots import read_metrics
    from lewm.probe import probe
    from lewm.train import train

    plan = plan or PlanConfig()
    unknown = [r for r in regularizers if r not in REGULARIZERS]
    if unknown:
        raise LewmError(f"unknown regularizer {unknown[0]!r} (choose from "
                        f"{', '.join(REGULARIZERS)})")
    specs = [parse(s).spec for s in perturbations]
    eval_cfg = EvalConfig(gifs=1, episodes=eval_episodes or EvalConfig.episodes)
    out = Path(out)
    check_output(out / "ablation.json", force)
    rows = []
    for reg in regularizers:
        run = out / reg
        run_cfg = dataclasses.replace(cfg, regularizer=reg)
        state, summary = earlier_run(run, run_cfg) if not force else (None, None)
        if state == "finished":
            print(f"[{reg}] reusing the finished run in {run}", flush=True)
        elif state == "stopped":
            print(f"[{reg}] resuming the stopped run in {run}", flush=True)
            summary = train(None, data_path, run, resume=True, progress=progress)
        else:
            print(f"[{reg}] training", flush=True)
            summary = train(run_cfg, data_path, run, force=force, progress=progress, plan=plan)
        ev = earlier_result(run / "eval.json", summary["step"], {
            "eval": dataclasses.asdict(eval_cfg), "plan": dataclasses.asdict(plan)})
        pr = earlier_result(run / "probe.json", summary["step"])
        if ev is None or pr is None:
            print(f"[{reg}] evaluating", flush=True)
        if ev is None:
            ev = eval_run(run, eval_cfg, plan, force=True, device=device)
        if pr is None:
            pr = probe(run, force=True, device=device)
        scenes = messy_scenes(run, specs, ev, device) if specs else None
        val = read_metrics(run / "metrics.jsonl").get("val", [])
        rows.append({
            "regularizer": reg,
            "effective_rank": summary["val"].get("effective_rank"),
            "rank_abs": summary["val"].get("rank_abs"),
            "std_min": summary["val"].get("std_min"),
            "val_pred_loss": summary["val"].get("pred_loss"),
            "probe_r_linear": pr["probes"]["linear"][next(iter(pr["probes"]["linear"]))]["r"],
            "probe_r_mlp": pr["probes"]["mlp"][next(iter(pr["probes"]["mlp"]))]["r"],
            "success_rate": ev["success_rate"],
            "success_ci95": ev["success_ci95"],
            "random_success_rate": ev["random_success_rate"],
            "train_seconds": summary["seconds"],
            **({"scenes": scenes} if scenes is not None else {}),
            "curve": [{"step": v["step"], "effective_rank": v["effective_rank"],
                       "rank_abs": v.get("rank_abs"), "std_min": v["std_min"]} for v in val],
        })
    result = {"command": "lewm " + " ".join(sys.argv[1:]) if sys.argv else "",
              "embed_dim": cfg.model.embed_dim, "steps": summary["steps"], "seed": cfg.seed,
              "data": str(data_path), "version": __version__, "rows": rows,
              "config": dataclasses.asdict(cfg)}
    write_json(out / "ablation.json", result)
    with atomic_path(out / "ablation.md") as tmp:
        tmp.write_text(table(result))
    from lewm.plots import plot_ablation

    plot_ablation(result, out / "ablation.png")
    return result


def messy_scenes(run: Path, specs: list[str], ev: dict, device: str) -> dict:
    """`lewm robustness` on one of the study's runs, on its clean evaluation's episodes: per
    scene its success, the random floor and the probes (the task state; the distractors'
    position where there are some). A robustness.json of the same checkpoint and scenes is
    reused."""
    import json

    from lewm.robustness import robustness

    try:
        rob = json.loads((run / "robustness.json").read_text())
        if rob.get("checkpoint_sha256") != ev.get("checkpoint_sha256") or \
                [p["spec"] for p in rob["perturbations"]] != specs:
            rob = None
    except (OSError, ValueError, KeyError, TypeError):
        rob = None
    if rob is None:
        rob = robustness(run, specs, protocol=EvalConfig(manifest=str(run / "eval.json")),
                         force=True, device=device,
                         progress=lambda line: print(f"[{run.name}] {line}", flush=True))
    return {p["spec"]: {"success_rate": p["success_rate"], "success_ci95": p["success_ci95"],
                        "random_success_rate": p["random_success_rate"],
                        "strict_success_rate": p["strict"]["success_rate"],
                        "probe_r": p.get("probe_r")} for p in rob["perturbations"]}


def earlier_run(run: Path, cfg: TrainConfig) -> tuple[str | None, dict | None]:
    """What an interrupted study left in `run` with exactly this config: ("finished",
    summary), ("stopped", None) when its last checkpoint can be resumed, else (None, None).
    A study run again picks up where it stopped."""
    from lewm.checkpoint import find_checkpoint, read_meta
    from lewm.plots import read_metrics
    from lewm.trainconfig import from_dict

    try:
        meta = read_meta(run)
    except LewmError:
        return None, None
    if from_dict(meta["train"]) != cfg:
        return None, None
    if meta.get("step") != meta.get("steps", cfg.steps):
        resumable = (find_checkpoint(run) / "resume.pt").exists()
        return ("stopped" if resumable else None), None
    val = read_metrics(run / "metrics.jsonl").get("val", [{}])[-1]
    return "finished", {"val": val, "seconds": meta.get("train_seconds"), "step": meta["step"],
                        "steps": meta["step"]}


def earlier_result(path: Path, step: int, config: dict | None = None) -> dict | None:
    """A result file (eval.json, probe.json) already made from this run's final checkpoint
    (and, for evaluations, with these settings), else None: a resumed study does not redo
    the evaluations it finished."""
    import json

    try:
        result = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if result.get("checkpoint_step") != step:
        return None
    if config and any(result.get("config", {}).get(k) != v for k, v in config.items()):
        return None
    return result


def table(result: dict) -> str:
    D = result["embed_dim"]
    lines = [
        f"# Collapse study (lewm {result['version']})",
        "",
        f"Command: `{result['command']}`",
        "",
        f"Same data, preset and seed ({result['steps']} steps); validation embeddings of "
        f"D = {D}; planning success on the 50-episode protocol; linear/MLP probe r of the "
        "agent position on held-out episodes. Effective rank = exp(entropy of the normalised "
        "singular values), scale-free; rank >= 0.01 = principal directions whose std is at "
        "least 0.01, which sees a shrink towards a point that the scale-free rank cannot.",
        "",
        "| regulariser | effective rank | rank >= 0.01 | min per-dim std | val pred loss "
        "| probe r (linear) | probe r (MLP) | success | random |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    scenes = list(result["rows"][0].get("scenes") or {}) if result["rows"] else []
    if scenes:
        lines[-2] += "".join(f" {s} |" for s in scenes)
        lines[-1] += " --- |" * len(scenes)
    for r in result["rows"]:
        lo, hi = r["success_ci95"]
        lines.append(
            f"| {LABELS.get(r['regularizer'], r['regularizer'])} | {r['effective_rank']:.2f} / {D} "
            f"| {r['rank_abs']} / {D} | {r['std_min']:.2e} | {r['val_pred_loss']:.2e} "
            f"| {r['probe_r_linear']:.3f} "
            f"| {r['probe_r_mlp']:.3f} | {100 * r['success_rate']:.0f}% "
            f"({100 * lo:.0f}-{100 * hi:.0f}) | {100 * r['random_success_rate']:.0f}% |"
            + "".join(_scene_cell(r["scenes"][s]) for s in scenes)
        )
    if scenes:
        lines += ["", "Per scene: success on the clean evaluation's episodes in that scene, and "
                  "the linear probe r (held-out) of the task state's first quantity and, "
                  "with distractors, of a distractor's position."]
    return "\n".join(lines) + "\n"


def _scene_cell(s: dict) -> str:
    probes = s.get("probe_r") or {}
    task = next((v for k, v in probes.items() if k != "distractor_position"), None)
    cell = f" {100 * s['success_rate']:.0f}%"
    if task is not None:
        cell += f", r {task:.2f}"
    if "distractor_position" in probes:
        cell += f", distractor r {probes['distractor_position']:.2f}"
    return cell + " |"
