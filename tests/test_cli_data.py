"""The data verbs end to end, in subprocesses."""

import json

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
    """Every CEM and evaluation field is a `lewm eval` flag whose help is the field's
    docstring, and a flag left out is the dataclass default: one place per default, which
    `lewm demo` and `lewm ablate` (CEMConfig(), EvalConfig()) use too."""
    import dataclasses

    from lewm.cli import build_parser
    from lewm.cliconfig import field_docs, from_flags
    from lewm.data.collect import CollectConfig
    from lewm.evaluate import EvalConfig
    from lewm.planning.cem import CEMConfig
    from lewm.presets import TrainConfig

    parser = build_parser()
    args = parser.parse_args(["eval", "runs/x"])
    assert from_flags(args, CEMConfig) == CEMConfig()
    assert from_flags(args, EvalConfig) == EvalConfig()
    eval_help = " ".join(run_cli("eval", "--help").stdout.split())
    for cls in (CEMConfig, EvalConfig):
        for f in dataclasses.fields(cls):
            assert "--" + f.name.replace("_", "-") in eval_help
            assert field_docs(cls)[f.name] in eval_help
    args = parser.parse_args(["eval", "runs/x", "--horizon", "7", "--no-unbiased-std", "--clip"])
    assert from_flags(args, CEMConfig) == CEMConfig(horizon=7, unbiased_std=False, clip=True)
    args = parser.parse_args(["collect", "pusht", "--episodes", "3", "--out", "x.h5"])
    base = CollectConfig("pusht", steps=77)
    assert from_flags(args, CollectConfig, base) == CollectConfig("pusht", episodes=3, steps=77)
    train_help = " ".join(run_cli("train", "--help").stdout.split())
    assert "model.embed_dim = 192" in train_help and field_docs(TrainConfig)["lambd"] in train_help


def planner_settings_of_each_verb(monkeypatch, tmp_path, meta, pick, more_evals=(),
                                  flags=()):
    """Run `lewm eval runs/x` (then with each of `more_evals`' extra arguments), `lewm demo`
    and `lewm ablate` (both with `flags`), with data collection, training and the run's
    config.json (`meta`) stubbed, stopping each at `evaluate`; returns `pick(eval_cfg,
    cem_cfg)` for each."""
    import lewm.ablate
    import lewm.checkpoint
    import lewm.data.collect
    import lewm.evaluate
    import lewm.train
    from lewm.cli import main

    seen = []

    def fake_evaluate(run, cfg, cem_cfg, *a, **k):
        seen.append(pick(cfg, cem_cfg))
        raise SystemExit(0)  # stop the verb here: only its planner settings are checked

    monkeypatch.setattr(lewm.evaluate, "evaluate", fake_evaluate)
    monkeypatch.setattr(lewm.checkpoint, "read_meta", lambda run: meta)
    monkeypatch.setattr(lewm.data.collect, "collect", lambda *a, **k: {"seconds": 0})
    summary = {"step": 1, "steps": 1, "val": {}, "seconds": 0, "parameters": 0}
    monkeypatch.setattr(lewm.train, "train", lambda *a, **k: summary)
    monkeypatch.setattr(lewm.ablate, "earlier_run", lambda *a: (None, None))
    for argv in (["eval", "runs/x"], *(["eval", "runs/x", *a] for a in more_evals),
                 ["demo", "--out", str(tmp_path / "demo"), *flags],
                 ["ablate", "--data", "x.h5", "--out", str(tmp_path / "ab"), "--regularizers",
                  "none", *flags]):
        with pytest.raises(SystemExit):
            main(argv)
    return seen


def test_a_changed_default_reaches_eval_demo_and_ablate(monkeypatch, tmp_path):
    """One place per default: a CEMConfig or EvalConfig whose defaults change (here a
    subclass with horizon 7 and 9 episodes) changes what `lewm eval`, `lewm demo` and
    `lewm ablate` plan with, with no flag given."""
    import dataclasses

    import lewm.evaluate
    import lewm.planning.cem

    @dataclasses.dataclass(frozen=True)
    class Cem(lewm.planning.cem.CEMConfig):
        horizon: int = 7

    @dataclasses.dataclass(frozen=True)
    class Protocol(lewm.evaluate.EvalConfig):
        episodes: int = 9

    monkeypatch.setattr(lewm.planning.cem, "CEMConfig", Cem)
    monkeypatch.setattr(lewm.evaluate, "EvalConfig", Protocol)
    seen = planner_settings_of_each_verb(monkeypatch, tmp_path, {"train": {}},
                                         lambda cfg, cem: (cfg.episodes, cem.horizon))
    assert seen == [(9, 7)] * 3, seen


def test_a_recipes_plan_is_how_its_runs_are_planned(monkeypatch, tmp_path):
    """A recipe's `plan` (key=value evaluation and planner settings, TrainConfig.plan) is
    what `lewm eval`, `lewm demo` and `lewm ablate` plan its runs with; `lewm eval`'s own
    flags apply on top; the plan survives config.json."""
    from lewm.presets import from_dict, get_preset, to_dict

    recipe = {"train": {"plan": ["cost=path", "replan=1", "iterations=4"]}}
    seen = planner_settings_of_each_verb(
        monkeypatch, tmp_path, recipe, lambda cfg, cem: (cfg.replan, cem.cost, cem.iterations),
        more_evals=[["--iterations", "6", "--cost", "final"]],
        flags=["--set", "plan=cost=path,replan=1,iterations=4"])
    assert seen == [(1, "path", 4), (1, "final", 6), (1, "path", 4), (1, "path", 4)], seen
    cfg = get_preset("reacher-cpu")
    assert cfg.plan and from_dict(json.loads(json.dumps(to_dict(cfg)))) == cfg


@pytest.mark.parametrize("setting,match", [
    ("plan=bogus=1", "'bogus' is not an evaluation or planner setting"),
    ("plan=cost=cheap", "planning cost must be one of final, path, ramp"),
    ("plan=context", "expected key=value"),
])
def test_a_bad_plan_setting_fails_before_training(capsys, tmp_path, setting, match):
    from lewm.cli import main

    code = main(["train", "--preset", "tiny", "--data", str(tmp_path / "none.h5"), "--out",
                 str(tmp_path / "run"), "--set", setting])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and match in err, err
    assert not (tmp_path / "run").exists()


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
