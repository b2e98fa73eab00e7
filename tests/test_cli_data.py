"""The data verbs end to end, in subprocesses."""

import json
from pathlib import Path

import h5py
import numpy as np
import pytest
from conftest import run_cli


def test_collect_info_show(tmp_path):
    out = tmp_path / "tr.h5"
    proc = run_cli("collect", "tworoom", "--episodes", 4, "--steps", 10, "--size", 32,
                   "--policy", "noisy-expert", "--seed", 1, "--out", out)
    assert "4 episodes" in proc.stdout
    with h5py.File(out) as f:
        assert f["pixels"].shape == (44, 32, 32, 3)
    info = run_cli("info", out).stdout
    assert "episodes  4" in info and "pixels" in info and "(44, 32, 32, 3)" in info
    gif = tmp_path / "ep.gif"
    run_cli("show", out, "--episode", 2, "--out", gif)
    assert gif.read_bytes()[:6] == b"GIF89a"


def test_random_policy(tmp_path):
    out = tmp_path / "r.h5"
    run_cli("collect", "tworoom", "--episodes", 2, "--steps", 5, "--size", 16, "--policy",
            "random", "--out", out, "--quiet")
    with h5py.File(out) as f:
        assert f.attrs["policy"] == "random"


def test_flags_come_from_the_configs():
    """Every planning and evaluation field is a `lewm eval` flag whose help is the field's
    docstring, and a flag left out is the dataclass default: one place per default, which
    `lewm demo` and `lewm ablate` use too."""
    import dataclasses

    from lewm.cli import build_parser
    from lewm.cliconfig import field_docs, from_flags, plan_from_flags
    from lewm.data.config import CollectConfig
    from lewm.planning.config import PARTS, CEMConfig, MPCConfig, PlanConfig
    from lewm.protocol import EvalConfig
    from lewm.trainconfig import TrainConfig

    parser = build_parser()
    args = parser.parse_args(["eval", "runs/x"])
    assert plan_from_flags(args, PlanConfig()) == PlanConfig()
    assert from_flags(args, EvalConfig) == EvalConfig()
    eval_help = " ".join(run_cli("eval", "--help").stdout.split())
    for cls in (*PARTS.values(), EvalConfig):
        for f in dataclasses.fields(cls):
            assert "--" + f.name.replace("_", "-") in eval_help
            assert field_docs(cls)[f.name] in eval_help
    args = parser.parse_args(["eval", "runs/x", "--horizon", "7", "--no-unbiased-std", "--clip",
                              "--carry", "shrink", "--planner", "graph"])
    assert plan_from_flags(args, PlanConfig()) == PlanConfig(
        planner="graph", solver=CEMConfig(unbiased_std=False, clip=True),
        mpc=MPCConfig(horizon=7, carry="shrink"))
    args = parser.parse_args(["collect", "pusht", "--episodes", "3", "--out", "x.h5"])
    base = CollectConfig("pusht", steps=77)
    assert from_flags(args, CollectConfig, base) == CollectConfig("pusht", episodes=3, steps=77)
    train_help = " ".join(run_cli("train", "--help").stdout.split())
    assert "model.embed_dim = 192" in train_help and field_docs(TrainConfig)["lambd"] in train_help


def planner_settings_of_each_verb(monkeypatch, tmp_path, meta, pick, more_evals=(),
                                  preset="tworoom-cpu"):
    """Run `lewm eval runs/x` (then with each of `more_evals`' extra arguments), `lewm demo`
    and `lewm ablate --preset PRESET`, with data collection, training and the run's
    config.json (`meta`) stubbed, stopping each where it would evaluate; returns
    `pick(protocol, plan)` for each."""
    import lewm.ablate
    import lewm.checkpoint
    import lewm.data.collect
    import lewm.evalrun
    import lewm.train
    from lewm.cli import main

    seen = []

    def fake_eval_run(run, protocol, plan, **k):
        seen.append(pick(protocol, plan))
        raise SystemExit(0)  # stop the verb here: only its planner settings are checked

    monkeypatch.setattr(lewm.evalrun, "eval_run", fake_eval_run)
    monkeypatch.setattr(lewm.checkpoint, "read_meta", lambda run: meta)
    monkeypatch.setattr(lewm.data.collect, "collect", lambda *a, **k: {"seconds": 0})
    summary = {"step": 1, "steps": 1, "val": {}, "seconds": 0, "parameters": 0}
    monkeypatch.setattr(lewm.train, "train", lambda *a, **k: summary)
    monkeypatch.setattr(lewm.ablate, "earlier_run", lambda *a: (None, None))
    for argv in (["eval", "runs/x"], *(["eval", "runs/x", *a] for a in more_evals),
                 ["demo", "--out", str(tmp_path / "demo")],
                 ["ablate", "--data", "x.h5", "--out", str(tmp_path / "ab"), "--regularizers",
                  "none", "--preset", preset]):
        with pytest.raises(SystemExit):
            main(argv)
    return seen


def test_a_recipes_plan_is_how_its_runs_are_planned(monkeypatch, tmp_path):
    """The plan a run keeps in its config.json is what `lewm eval` plans it with, its own
    flags on top; `lewm demo` and `lewm ablate` plan with their recipe's plan and the
    protocol's defaults."""
    import dataclasses

    from lewm.planning.config import CostConfig, MPCConfig, PlanConfig
    from lewm.protocol import EvalConfig
    from lewm.recipes import RECIPES

    mine = PlanConfig(cost=CostConfig(cost="path"), mpc=MPCConfig(replan=1))
    seen = planner_settings_of_each_verb(
        monkeypatch, tmp_path, {"plan": dataclasses.asdict(mine)},
        lambda protocol, plan: (protocol, plan),
        more_evals=[["--iterations", "6", "--cost", "final", "--episodes", "9"]],
        preset="reacher-cpu")
    assert seen == [(EvalConfig(), mine),
                    (EvalConfig(episodes=9), mine.replace(solver={"iterations": 6},
                                                          cost={"cost": "final"})),
                    (EvalConfig(), RECIPES["tworoom-cpu"].plan),
                    (EvalConfig(gifs=1), RECIPES["reacher-cpu"].plan)], seen


def test_runs_written_with_plan_strings_plan_as_before(monkeypatch, tmp_path):
    """A run directory from before PlanConfig (tests/golden/legacy_config.json, the
    checkpoint config.json of `lewm demo` at c6f6855: `plan` strings in its train section)
    plans with the PlanConfig that means the same; so do the old recipes' strings."""
    from lewm.planning.config import (
        CEMConfig,
        CostConfig,
        MPCConfig,
        PlanConfig,
        plan_from_strings,
        run_plan,
    )
    from lewm.trainconfig import from_dict

    meta = json.loads((Path(__file__).parent / "golden" / "legacy_config.json").read_text())
    assert meta["train"]["plan"] == ["iterations=10"] and "plan" not in meta
    ten = PlanConfig(solver=CEMConfig(iterations=10))
    assert run_plan(meta) == ten
    assert from_dict(meta["train"]).world == "tworoom"  # the old field is dropped, not an error
    seen = planner_settings_of_each_verb(monkeypatch, tmp_path, meta, lambda p, plan: plan)
    assert seen[0] == ten
    old = [  # the plan strings of the CPU recipes at c6f6855, and what they meant
        (["clip=true", "noise_beta=1", "keep_elites=0.3", "iterations=10", "replan=1",
          "shrink=true", "tail_std=0.25"],
         PlanConfig(solver=CEMConfig(clip=True, noise_beta=1.0, keep_elites=0.3, iterations=10),
                    mpc=MPCConfig(replan=1, carry="shrink", carry_std=0.25))),
        (["cost=path", "context=3", "replan=1"],
         PlanConfig(cost=CostConfig("path"), mpc=MPCConfig(context=3, replan=1))),
        (["warm_start=true", "shrink=false", "horizon=4", "planner=graph", "lookahead=5"],
         PlanConfig(planner="graph", mpc=MPCConfig(horizon=4, carry="warm")).replace(
             graph={"lookahead": 5})),
    ]
    for strings, meant in old:
        assert plan_from_strings(strings) == meant, strings


@pytest.mark.parametrize("setting,match", [
    ("bogus=1", "'bogus' is not a planning setting"),
    ("cost=cheap", "planning cost must be one of final, path, ramp"),
    ("context", "expected key=value"),
    ("iterations=many", "not a valid int"),
])
def test_a_bad_legacy_plan_setting_is_a_one_line_error(setting, match):
    from lewm.errors import LewmError
    from lewm.planning.config import plan_from_strings

    with pytest.raises(LewmError, match=match):
        plan_from_strings([setting])


def test_merge_joins_collections_and_refuses_mismatches(tmp_path, capsys):
    """Two seeds' collections become one file: the episodes in order, per-source seeds in
    `merged_from`, and a file that trains like any other; mismatched files are refused."""
    from conftest import write_episode_file

    from lewm.cli import main
    from lewm.data.clips import EpisodeData
    from lewm.data.collect import CollectConfig, collect

    def merge(*args):
        code = main(["merge", *map(str, args)])
        out = capsys.readouterr()
        return code, out.out + out.err

    a, b, ab = tmp_path / "a.h5", tmp_path / "b.h5", tmp_path / "ab.h5"
    for seed, path in ((0, a), (1, b)):
        collect(CollectConfig(episodes=3, steps=6, size=16, seed=seed), path, progress=False)
    code, out = merge(a, b, "--out", ab)
    assert code == 0 and "6 episodes, 42 rows from 2 files" in out
    with h5py.File(a) as fa, h5py.File(b) as fb, h5py.File(ab) as f:
        for name in ("pixels", "action", "state", "proprio"):
            np.testing.assert_array_equal(f[name][:21], fa[name][()])  # NaN == NaN here
            np.testing.assert_array_equal(f[name][21:], fb[name][()])
        assert list(f["ep_offset"][()]) == [0, 7, 14, 21, 28, 35]
        assert f.attrs["world"] == "tworoom" and f.attrs["episodes"] == 6
        assert "seed" not in f.attrs
        sources = json.loads(f.attrs["merged_from"])
        assert [(s["seed"], s["episodes"]) for s in sources] == [(0, 3), (1, 3)]
    assert EpisodeData(ab).num_episodes == 6

    code, out = merge(a, b, "--out", ab)
    assert code == 2 and "--force" in out
    bigger = tmp_path / "big.h5"
    collect(CollectConfig(episodes=2, steps=6, size=24), bigger, progress=False)
    code, out = merge(a, bigger, "--out", tmp_path / "x.h5")
    assert code == 2 and "big.h5: column 'pixels'" in out and len(out.splitlines()) == 1
    assert not (tmp_path / "x.h5").exists()
    code, out = merge(a, write_episode_file(tmp_path / "h.h5", [7]), "--out", tmp_path / "y")
    assert code == 2 and "h.h5: columns" in out
    code, out = merge(a, "--out", tmp_path / "z.h5")
    assert code == 2 and "at least two" in out
