"""Evaluating a run directory: build the parts the protocol takes (the model or an ensemble,
the goal set, the planner, the decoder) and hand them to `lewm.evaluate.evaluate`. Every
verb that plans (`eval`, `demo`, `ablate`) goes through `eval_run`."""

from __future__ import annotations

import sys
from pathlib import Path

from lewm.envs import make_env
from lewm.errors import LewmError
from lewm.evaluate import evaluate
from lewm.goals import make_goals
from lewm.planning.config import PlanConfig
from lewm.planning.mpc import plan_setup
from lewm.planning.registry import make_planner
from lewm.protocol import EvalConfig
from lewm.rundir import load_run_model, writing


def eval_run(run_dir, protocol: EvalConfig, plan: PlanConfig, *, data_path=None,
             force: bool = False, device: str = "auto", out_name: str = "eval.json",
             ensemble=()) -> dict:
    """Run the protocol on a trained run with `plan`; writes `out_name` (eval.json), GIFs
    and a summary PNG in the run directory.

    ensemble: other runs trained on the same data (e.g. other seeds), planned together with
    this one (lewm.planning.ensemble): a plan's cost is the sum of every model's own."""
    with writing(run_dir, out_name, "evaluated"):
        return _eval_run(Path(run_dir), protocol, plan, data_path, force, device, out_name,
                         ensemble)


def _eval_run(run_dir: Path, protocol, plan, data_path, force, device, out_name,
              ensemble) -> dict:
    if plan.cost.disagreement and not ensemble:
        raise LewmError("--disagreement weighs the spread of an ensemble's costs: it needs "
                        "--ensemble")
    model = load_run_model(run_dir, (out_name,), force, device)
    if ensemble:
        from lewm.checkpoint import load_model
        from lewm.planning.ensemble import Ensemble

        model = Ensemble([model] + [load_model(r, model.device) for r in ensemble],
                         [str(run_dir)] + [str(r) for r in ensemble])
    world = model.card.world
    env = make_env(world, model.card.image_size)
    action_space = env.action_space
    env.close()
    if action_space.shape[0] != model.cfg.action_dim:
        raise LewmError(f"world {world} has {action_space.shape[0]}-D actions but the model "
                        f"expects {model.cfg.action_dim}-D")
    data_path = data_path or model.card.data["path"]
    goals = make_goals(protocol.goals, world, protocol.episodes, protocol.seed, protocol.offset,
                       data_path, protocol.budget, protocol.manifest, protocol.start)
    planner = make_planner(plan, model, plan_setup(model, action_space, protocol.seed,
                                                   data_path, run_dir))
    decoder = run_decoder(run_dir, model) if protocol.gifs else None
    return evaluate(model, goals, planner, protocol, decoder, out=run_dir / out_name)


def run_decoder(run_dir, model):
    """The run's pixel decoder as embeddings -> images (see `lewm decode`), or None. One that
    belongs to another model (e.g. training went on after it was made) is skipped with a
    warning: the GIFs are then drawn without it. With an ensemble it reads the run's own
    model's part of the embedding."""
    from lewm.decode import load_decoder, to_images
    from lewm.planning.ensemble import Ensemble

    try:
        dec = load_decoder(run_dir, model.device)
    except LewmError as e:
        print(f"warning: {e}; eval GIFs without decoded plans", file=sys.stderr)
        return None
    if dec is None:
        return None
    images = to_images(dec, model.card.image_size)
    if isinstance(model, Ensemble):
        return lambda emb: images(model.lead_part(emb))
    return images
