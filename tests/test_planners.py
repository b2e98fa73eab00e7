"""The planning interface: a planner added in one module and one line, the context the MPC
loop hands a planner across re-plans, bf16 planning, and the import structure."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from test_planning import OracleTwoRoom, mpc, small

from lewm.envs import tworoom
from lewm.evaluate import make_envs
from lewm.goals import dataset_pairs
from lewm.planning import registry
from lewm.planning.config import MPCConfig, PlanConfig, RuntimeConfig
from lewm.planning.cost import latent_cost


def test_a_planner_registered_in_one_line_plans_through_lewm_eval(tiny_run, monkeypatch,
                                                                  capsys):
    from lewm.cli import main

    monkeypatch.setattr(registry, "PLANNERS", dict(registry.PLANNERS))  # undone after
    registry.register("shooting", "shooting_planner:RandomShooting")  # the one line
    code = main(["eval", str(tiny_run), "--planner", "shooting", "--episodes", "3", "--samples",
                 "16", "--elites", "4", "--gifs", "1", "--force", "--device", "cpu"])
    assert code == 0, capsys.readouterr().err
    result = json.loads((tiny_run / "eval.json").read_text())
    assert result["planner"] == result["config"]["plan"]["planner"] == "shooting"
    assert result["shooting"]["calls"] == result["plan_calls"] > 0
    assert result["episodes_evaluated"] == 3
    unknown = main(["eval", str(tiny_run), "--planner", "nope", "--force"])
    assert unknown == 2 and "--planner must be one of" in capsys.readouterr().err


class ContextChecker(OracleTwoRoom):
    """The Two-Room oracle, checking every context it is handed: the true dynamics applied to
    context frame k with context block k must land on context frame k + 1. Records the
    worst mismatch (in canvas units) of each rollout with context actions."""

    def __init__(self):
        self.mismatch = []

    def rollout(self, context_emb, context_actions, future_actions):
        if context_actions is not None:
            pos = context_emb[:, :-1].reshape(-1, 2).double().numpy()
            acts = context_actions.reshape(-1, 5, 2).double().numpy()
            for s in range(5):
                pos = tworoom.move(pos, acts[:, s])
            seen = context_emb[:, 1:].reshape(-1, 2).double().numpy()
            self.mismatch.append(float(np.abs(pos - seen).max()))
        return super().rollout(context_emb, context_actions, future_actions)


@pytest.mark.parametrize("replan,carry", [(1, "none"), (1, "shrink"), (2, "warm"), (0, "none")])
def test_context_actions_are_the_blocks_executed_between_the_context_frames(
        tworoom_file, monkeypatch, replan, carry):
    """With 3 context frames, each re-plan's context blocks are exactly the blocks executed
    between its frames, for every re-plan period and carry-over. The check has teeth: the
    same loop with the context actions shifted by one block (the previous block in each
    place) is caught."""
    import lewm.planning.mpc as mpc_module

    pairs = dataset_pairs(tworoom_file, 3, offset=25, seed=42)
    plan = small(samples=16, elites=4, iterations=2, clip=True,
                 mpc=MPCConfig(context=3, replan=replan, carry=carry))

    def worst():
        model = ContextChecker()
        envs, obs = make_envs("tworoom", 64, pairs)
        mpc(model, envs, obs, np.stack([e.goal_pixels() for e in envs]), plan, budget=40)
        assert model.mismatch, "no re-plan had context actions"
        return max(model.mismatch)

    assert worst() < 2.5  # the image-read positions' rounding

    def shifted_see(self, z):  # a bug to catch: each block one place late
        self.emb = (self.emb + [z])[-self.frames :]
        n = len(self.emb) - 1
        late = self.actions[-n - 1 : -1] if len(self.actions) > n else self.actions[-n:]
        self.actions = late if n else []

    monkeypatch.setattr(mpc_module.Context, "see", shifted_see)
    assert worst() > 5


def test_bf16_planning_scores_as_fp32_to_bfloat16_rounding_and_plans(tiny_run):
    """RuntimeConfig(precision="bf16") runs the rollouts under autocast: its costs are fp32's
    to bfloat16 rounding, and an episode plans through it to the end of its budget."""
    from lewm.checkpoint import load_model

    model = load_model(tiny_run)
    D, blk = model.cfg.embed_dim, model.cfg.frameskip * model.cfg.action_dim
    g = torch.Generator().manual_seed(0)
    ctx, goal = torch.randn(2, 3, D, generator=g), torch.randn(2, D, generator=g)
    acts, cand = torch.randn(2, 2, blk, generator=g), torch.randn(2, 32, 5, blk, generator=g)
    with torch.no_grad():
        fp32 = latent_cost(model, ctx, acts, goal)(cand)
        bf16 = latent_cost(model, ctx, acts, goal, runtime=RuntimeConfig("bf16"))(cand)
    assert bf16.dtype == torch.float32
    torch.testing.assert_close(bf16, fp32, rtol=0.05, atol=0.05)
    assert not torch.equal(bf16, fp32)  # it did run in bf16
    data = json.loads((tiny_run / "config.json").read_text())["data"]["path"]
    envs, obs = make_envs("tworoom", 32, dataset_pairs(data, 2, offset=25, seed=42))
    plan = small(samples=16, elites=4, iterations=2, runtime=RuntimeConfig("bf16"),
                 mpc=MPCConfig(context=3, replan=1))
    logs, timings = mpc(model, envs, obs, np.stack([e.goal_pixels() for e in envs]), plan,
                        budget=15)
    assert timings and all(log.success or log.steps == 15 for log in logs)


def modules_after(code: str) -> set[str]:
    out = subprocess.run([sys.executable, "-c", code + "\nimport sys\nprint(' '.join("
                          "sorted(sys.modules)))"], capture_output=True, text=True, check=True)
    return set(out.stdout.split())


def test_imports_follow_the_pipeline():
    """Planning reads no study module; evaluation neither decodes nor collects; the training
    config knows no environment; data knows no run directory; nothing that builds the CLI's
    help imports torch or numpy."""
    planning = modules_after("import lewm.planning.cem, lewm.planning.graph, lewm.planning.mpc,"
                             " lewm.planning.ensemble, lewm.planning.registry")
    assert not {"lewm.probe", "lewm.decode"} & planning
    assert not {"lewm.decode", "lewm.data.collect"} & modules_after("import lewm.evaluate")
    assert not {"lewm.envs", "lewm.data.collect"} & modules_after("import lewm.trainconfig")
    data = modules_after("import lewm.data.clips, lewm.data.collect, lewm.data.hdf5, "
                         "lewm.data.merge, lewm.data.prefetch, lewm.data.config")
    assert "lewm.rundir" not in data
    cli = modules_after("from lewm.cli import build_parser\nbuild_parser()")
    assert not {"torch", "numpy", "h5py"} & cli


def test_lewm_train_does_not_import_the_evaluation(tworoom_file, tmp_path):
    code = (f"from lewm.cli import main\nassert main(['train', '--preset', 'tiny', '--data', "
            f"{str(tworoom_file)!r}, '--out', {str(tmp_path / 'run')!r}, '--stop-after', '1', "
            "'--quiet']) == 0")
    assert "lewm.evaluate" not in modules_after(code)
    meta = json.loads((tmp_path / "run" / "config.json").read_text())
    assert meta["plan"] == json.loads(json.dumps(
        __import__("dataclasses").asdict(PlanConfig())))  # tiny's plan: the paper's
