"""Nothing a user made is lost or mixed up, and nothing wrong is accepted silently: the
outputs of import, export, merge and the studies, their locks, integrity on load, and values
checked where they are parsed (issue 45). Each test leaves every pre-existing file
byte-identical where the command is refused."""

import hashlib
import json
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import run_cli, write_episode_file

from lewm.locks import exclusive


def snapshot(root: Path) -> dict:
    """Every file under `root` with its SHA-256."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and not p.name.endswith(".lock")}


def refused(proc, *words):
    err = proc.stderr.strip()
    assert proc.returncode == 2, (proc.returncode, err[-2000:])
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    for w in words:
        assert w in err, err


@pytest.fixture(scope="module")
def vit_run(tworoom_file, tmp_path_factory):
    """A few steps of `tiny` with a small ViT encoder: a model the authors' layout has."""
    from lewm.recipes import get_recipe
    from lewm.train import train
    from lewm.trainconfig import override

    cfg = override(get_recipe("tiny").train, [
        "model.encoder=vit", "model.patch_size=8", "model.enc_dim=32", "model.enc_depth=1",
        "model.enc_heads=2", "model.enc_mlp=64", "steps=4"])
    out = tmp_path_factory.mktemp("vit") / "run"
    train(cfg, tworoom_file, out, progress=False)
    return out


@pytest.fixture(scope="module")
def exported(vit_run, tmp_path_factory):
    """An authors'-layout checkpoint of the ViT run."""
    out = tmp_path_factory.mktemp("exp") / "authors"
    run_cli("export", vit_run, "--out", out)
    return out


def test_export_never_replaces_its_input_or_a_users_files(vit_run, exported, tmp_path):
    tiny_run = vit_run
    before = snapshot(tiny_run)
    refused(run_cli("export", tiny_run, "--out", tiny_run, "--force", check=False), "is the input")
    refused(run_cli("export", tiny_run, "--out", tiny_run / "checkpoint", "--force", check=False),
            "lies inside the input")
    refused(run_cli("export", tiny_run, "--out", tiny_run.parent, "--force", check=False),
            "holds the input")
    assert snapshot(tiny_run) == before
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "config.json").write_text('{"my": "own"}\n')
    refused(run_cli("export", tiny_run, "--out", mine, "--force", check=False),
            "not written by lewm export")
    assert (mine / "config.json").read_text() == '{"my": "own"}\n'
    again = run_cli("export", tiny_run, "--out", exported, check=False)
    refused(again, "already exists")
    run_cli("export", tiny_run, "--out", exported, "--force")  # an earlier export: replaced
    assert sorted(p.name for p in exported.iterdir()) == [".lewm-export.json", "config.json",
                                                          "weights.pt"]


def test_an_export_cut_between_its_renames_keeps_the_old_one(vit_run, exported, tmp_path):
    """Killed after the old export moved aside and before the new one took its name: the next
    export puts the old one back first, then replaces it; nothing mixes two models."""
    out = tmp_path / "cut"
    shutil.copytree(exported, out.with_name(".cut.old"))
    refused(run_cli("export", vit_run, "--out", out, check=False), "already exists")
    assert snapshot(out) == snapshot(exported)  # the old one, back under its name
    run_cli("export", vit_run, "--out", out, "--force")
    assert not out.with_name(".cut.old").exists()
    assert json.loads((out / "config.json").read_text()) == json.loads(
        (exported / "config.json").read_text())


def test_import_refuses_its_source_and_files_lewm_did_not_write(exported, tworoom_file,
                                                               tmp_path):
    before = snapshot(exported)
    refused(run_cli("import", exported, "--data", tworoom_file, "--out", exported, "--force",
                    check=False), "is the input")
    refused(run_cli("import", exported, "--data", tworoom_file, "--out", exported / "x",
                    check=False), "lies inside the input")
    assert snapshot(exported) == before
    user = tmp_path / "user"
    user.mkdir()
    (user / "config.json").write_text('{"notes": 1}\n')
    refused(run_cli("import", exported, "--data", tworoom_file, "--out", user, check=False),
            "already exists")
    refused(run_cli("import", exported, "--data", tworoom_file, "--out", user, "--force",
                    check=False), "not written by lewm")
    assert (user / "config.json").read_text() == '{"notes": 1}\n'


def test_import_over_a_trained_run_leaves_none_of_its_results(tiny_run, exported,
                                                             tworoom_file, tmp_path):
    """Results never outlive the model they describe: `import --force` over a run removes
    its evaluations, metrics, analyses and decoder; a user's own file there is kept."""
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    for name in ("eval.json", "eval_b.json", "probe.json", "decode.json", "decoder.json",
                 "decoder.safetensors", "surprise.png"):
        (run / name).write_text('{"lewm_version": "0.1.0"}\n')
    (run / "notes.txt").write_text("mine\n")
    run_cli("import", exported, "--data", tworoom_file, "--out", run, "--force")
    left = sorted(p.name for p in run.iterdir() if not p.name.startswith("."))
    assert left == ["checkpoint", "config.json", "notes.txt"], left
    assert json.loads((run / "config.json").read_text())["imported_from"]
    run_cli("eval", run, "--episodes", 2, "--samples", 8, "--elites", 2, "--iterations", 1,
            "--gifs", 0)  # the imported run plans


def test_writers_respect_each_others_locks(tiny_run, vit_run, exported, tworoom_file,
                                          tmp_path):
    out = tmp_path / "exp"
    with exclusive(out, "exported", beside=True):
        refused(run_cli("export", vit_run, "--out", out, check=False), "another lewm process")
    run = tmp_path / "imp"
    run.mkdir()
    with exclusive(run, "trained"):
        refused(run_cli("import", exported, "--data", tworoom_file, "--out", run, check=False),
                "another lewm process")
    merged = tmp_path / "m.h5"
    with exclusive(merged):
        refused(run_cli("merge", tworoom_file, tworoom_file, "--out", merged, check=False),
                "another lewm process")
    with exclusive(tiny_run / "eval.json", "evaluated"):
        refused(run_cli("eval", tiny_run, "--force", check=False), "another lewm process")
    assert not merged.exists()


def test_merge_refuses_an_episode_twice(tworoom_file, tmp_path):
    copy = tmp_path / "copy.h5"
    shutil.copy(tworoom_file, copy)
    for pair in ((tworoom_file, tworoom_file), (tworoom_file, copy)):
        refused(run_cli("merge", *pair, "--out", tmp_path / "m.h5", check=False),
                "episode 0", "both sides of the validation split")
    assert not (tmp_path / "m.h5").exists()


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_a_signal_stops_collection_with_nothing_written(tmp_path, sig):
    """The stop flag, not a KeyboardInterrupt that Python may drop inside a callback: every
    signal stops the collection (exit 130) and nothing is left under the final name."""
    out = tmp_path / "c.h5"
    proc = subprocess.Popen([sys.executable, "-m", "lewm.cli", "collect", "tworoom",
                             "--episodes", "3000", "--steps", "100", "--size", "32", "--out",
                             str(out)], stderr=subprocess.PIPE, text=True)
    time.sleep(4)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err[-500:]
    assert "Traceback" not in err
    assert not out.exists() and not list(tmp_path.glob(".c.h5.tmp*"))


def damaged_weights(exported, tmp_path, how):
    bad = tmp_path / how
    shutil.copytree(exported, bad)
    weights = bad / "weights.pt"
    if how == "flipped":
        with zipfile.ZipFile(weights) as z:
            info = max(z.infolist(), key=lambda i: i.file_size)  # a tensor's storage
        blob = bytearray(weights.read_bytes())
        at = info.header_offset + 30 + len(info.filename) + len(info.extra) + info.file_size // 2
        blob[at] ^= 0xFF
        weights.write_bytes(bytes(blob))
    else:
        state = torch.load(weights, weights_only=True)
        name = next(k for k, v in state.items() if v.is_floating_point() and v.numel() > 1)
        state[name] = state[name].clone()
        state[name].view(-1)[0] = float("nan")
        torch.save(state, weights)
    return bad


@pytest.mark.parametrize("how,match", [("flipped", "fails its CRC check"),
                                       ("nan", "holds NaN or inf")])
def test_damaged_or_non_finite_weights_are_refused_at_import(exported, tworoom_file, tmp_path,
                                                            how, match):
    bad = damaged_weights(exported, tmp_path, how)
    refused(run_cli("import", bad, "--data", tworoom_file, "--out", tmp_path / "run",
                    check=False), match)
    assert not (tmp_path / "run").exists()


def test_a_model_is_checked_against_the_data_it_is_used_with(tiny_run, exported, tworoom_file,
                                                            tmp_path):
    other = write_episode_file(tmp_path / "other.h5", [30, 30], size=32)
    import h5py

    with h5py.File(other, "a") as f:
        f.attrs["world"] = "pusht"
    refused(run_cli("import", exported, "--data", tworoom_file, "--world", "pusht", "--out",
                    tmp_path / "a", check=False), "holds tworoom episodes")
    small = write_episode_file(tmp_path / "small.h5", [30, 30], size=16)
    refused(run_cli("import", exported, "--data", small, "--world", "tworoom", "--out",
                    tmp_path / "b", check=False),
            "reads 32 px images")  # the ViT run's
    refused(run_cli("probe", tiny_run, "--data", other, "--force", check=False),
            "holds pusht episodes", "tworoom model")
    refused(run_cli("decode", tiny_run, "--data", other, "--force", "--steps", 1, check=False),
            "holds pusht episodes")
    refused(run_cli("eval", tiny_run, "--data", other, "--force", check=False),
            "holds pusht episodes")
    edited = tmp_path / "edited"
    shutil.copytree(tiny_run, edited)
    cfg = edited / "checkpoint" / "config.json"
    meta = json.loads(cfg.read_text())
    meta["train"]["world"] = "pusht"
    cfg.write_text(json.dumps(meta))
    refused(run_cli("eval", edited, "--force", check=False), "names world 'pusht'")


@pytest.mark.parametrize("args,match", [
    (["train", "--set", "grad_clip=nan"], "grad_clip must be a finite number"),
    (["train", "--set", "weight_decay=nan"], "weight_decay must be a finite number"),
    (["train", "--set", "ema_momentum=2"], "ema_momentum must be in [0, 1]"),
    (["train", "--set", "model.conv_channels=()"], "conv_channels must be one or more"),
    (["train", "--set", "model.embed_dim=1000000"], "of memory"),
    (["train", "--stop-after", "-5"], "--stop-after must be >= 1"),
    (["eval", "RUN", "--seed", "-1"], "--seed must be in"),
    (["eval", "RUN", "--carry-std", "inf"], "carry_std must be a finite number"),
    (["probe", "RUN", "--rows", "0"], "--rows must be >= 2"),
    (["decode", "RUN", "--lr", "inf"], "lr must be a finite number"),
])
def test_values_are_checked_where_they_are_parsed(tiny_run, tworoom_file, tmp_path, args, match):
    args = [str(tiny_run) if a == "RUN" else a for a in args]
    if args[0] == "train":
        args += ["--preset", "tiny", "--data", str(tworoom_file), "--out", str(tmp_path / "r")]
    refused(run_cli(*args, "--force", check=False) if args[0] != "train"
            else run_cli(*args, check=False), match)
    assert not (tmp_path / "r").exists()


def test_show_refuses_a_zero_frame_rate(tworoom_file, tmp_path):
    refused(run_cli("show", tworoom_file, "--fps", 0, "--out", tmp_path / "x.gif", check=False),
            "--fps must be >= 1")


def test_the_graph_planner_refuses_probes_that_cannot_fit(tiny_run):
    refused(run_cli("eval", tiny_run, "--planner", "graph", "--probes", 100_000_000, "--force",
                    check=False), "of memory", "--probes")


def kill_at_random(argv, seconds: float) -> None:
    proc = subprocess.Popen([sys.executable, "-m", "lewm.cli", *map(str, argv)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(seconds)
    proc.send_signal(signal.SIGKILL)
    proc.wait()


@pytest.mark.slow
def test_sigkill_of_import_export_and_merge_leaves_old_or_new(vit_run, tworoom_file,
                                                              tmp_path):
    """Killed at random points: under the final name there is the old output or the new one,
    complete, never a part; the old one is intact until the new one replaces it."""
    rng = np.random.default_rng(0)
    out = tmp_path / "exp"
    run_cli("export", vit_run, "--out", out)
    old = snapshot(out)
    for _ in range(4):
        kill_at_random(["export", vit_run, "--out", out, "--force"], rng.uniform(0.5, 4))
        if out.exists():
            assert set(snapshot(out)) == set(old)  # whole: all three files
        else:
            assert snapshot(out.with_name(".exp.old")) == old
    run_cli("export", vit_run, "--out", out, "--force")
    assert snapshot(out) == old  # the same model exported again: the same bytes

    run = tmp_path / "imp"
    run_cli("import", out, "--data", tworoom_file, "--out", run)
    for _ in range(4):
        kill_at_random(["import", out, "--data", tworoom_file, "--out", run, "--force"],
                       rng.uniform(0.5, 4))
        import lewm

        assert lewm.load(run).card.meta["imported_from"]  # the old model or the new, whole
    merged = tmp_path / "m.h5"
    other = tmp_path / "b.h5"
    run_cli("collect", "tworoom", "--episodes", 12, "--steps", 40, "--size", 32, "--seed", 9,
            "--out", other)
    for _ in range(3):
        kill_at_random(["merge", tworoom_file, other, "--out", merged], rng.uniform(0.3, 2))
        if merged.exists():  # the file appears whole, at the end, or not at all
            assert "episodes  24" in run_cli("info", merged).stdout
            merged.unlink()
    run_cli("merge", tworoom_file, other, "--out", merged)  # and the next merge cleans up
    assert not list(tmp_path.glob(".m.h5.tmp*"))


def test_a_moved_dataset_is_named_and_can_be_given_again(tworoom_file, tmp_path):
    """Resuming a run whose dataset moved: one line naming it and the way out (`--data`,
    checked by the dataset's fingerprint), then the run resumes from the new place."""
    data = tmp_path / "data.h5"
    shutil.copy(tworoom_file, data)
    out = tmp_path / "run"
    run_cli("train", "--preset", "tiny", "--data", data, "--out", out, "--stop-after", 2,
            "--quiet")
    moved = tmp_path / "moved.h5"
    data.rename(moved)
    refused(run_cli("train", "--resume", out, check=False), "is not there", "--data")
    other = write_episode_file(tmp_path / "other.h5", [41] * 12, size=32)
    refused(run_cli("train", "--resume", out, "--data", other, check=False),
            "not the dataset this run was trained on")
    r = run_cli("train", "--resume", out, "--data", moved, "--stop-after", 2, "--quiet")
    assert "stopped early" in r.stdout


def test_merge_joins_files_of_different_compressions(tmp_path):
    from lewm.data.collect import CollectConfig, collect

    a, b = tmp_path / "a.h5", tmp_path / "b.h5"
    collect(CollectConfig(episodes=2, steps=5, size=16, seed=1), a, progress=False)
    collect(CollectConfig(episodes=2, steps=5, size=16, seed=2, compression="lzf"), b,
            progress=False)
    r = run_cli("merge", a, b, "--out", tmp_path / "ab.h5")
    assert "4 episodes" in r.stdout


def test_a_damaged_decoder_is_a_one_line_warning_or_error(tiny_run, tmp_path):
    """`eval --gifs` with a truncated decoder.safetensors warns in one line and draws its
    GIFs without it; `lewm.decode.load_decoder` refuses it in one line."""
    from lewm.decode import load_decoder
    from lewm.errors import LewmError

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run, ignore=shutil.ignore_patterns("decode*", "decoder*"))
    (run / "decoder.json").write_text(json.dumps({"embed_dim": 32, "image_size": 32,
                                                  "channels": [8, 8], "version": "0.1.0"}))
    (run / "decoder.safetensors").write_bytes(b"\x10\x00\x00")
    with pytest.raises(LewmError, match="cannot read its decoder"):
        load_decoder(run)
    r = run_cli("eval", run, "--episodes", 2, "--samples", 8, "--elites", 2, "--iterations", 1,
                "--gifs", 1)
    assert "warning:" in r.stderr and "Traceback" not in r.stderr
    small = write_episode_file(tmp_path / "small.h5", [30, 30], size=16)
    refused(run_cli("probe", run, "--data", small, check=False), "16 px frames", "32 px")


def test_a_manifest_replays_an_evaluations_pairs_exactly(tiny_run, tmp_path):
    """eval.json names its pairs (a SHA-256 of the list) and the checkpoint's weights;
    `--manifest` replays those pairs, in order and with their budget, on any run or planner;
    a malformed or other-world manifest is one line."""
    run_cli("eval", tiny_run, "--episodes", 5, "--seed", 7, "--samples", 8, "--elites", 2,
            "--iterations", 1, "--gifs", 0, "--force")
    first = json.loads((tiny_run / "eval.json").read_text())
    assert len(first["manifest"]["sha256"]) == 64 and first["manifest"]["episodes"] == 5
    assert first["checkpoint_sha256"] == json.loads(
        (tiny_run / "checkpoint" / "config.json").read_text())["model_sha256"]
    kept = tmp_path / "first.json"
    shutil.copy(tiny_run / "eval.json", kept)
    r = run_cli("eval", tiny_run, "--manifest", kept, "--episodes", 3, "--samples", 8,
                "--elites", 2, "--iterations", 2, "--gifs", 0, "--force")
    assert first["manifest"]["sha256"][:12] in r.stdout
    again = json.loads((tiny_run / "eval.json").read_text())
    assert again["manifest"]["sha256"] == first["manifest"]["sha256"]
    assert [(e["start_state"], e["goal_state"]) for e in again["episodes"]] == \
        [(e["start_state"], e["goal_state"]) for e in first["episodes"]]
    assert again["budget"] == first["budget"]
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    refused(run_cli("eval", tiny_run, "--manifest", bad, "--force", check=False),
            "not a JSON manifest")
    other = dict(first, world="pusht")
    (tmp_path / "other.json").write_text(json.dumps(other))
    refused(run_cli("eval", tiny_run, "--manifest", tmp_path / "other.json", "--force",
                    check=False), "an evaluation in world 'pusht'")
    edited = dict(first, episodes=first["episodes"][1:])
    (tmp_path / "edited.json").write_text(json.dumps(edited))
    refused(run_cli("eval", tiny_run, "--manifest", tmp_path / "edited.json", "--force",
                    check=False), "do not match its manifest")
    # beside it, the same episodes from rest (Two-Room has no velocity: the same pairs)
    run_cli("eval", tiny_run, "--manifest", kept, "--start", "rest", "--name", "eval-rest.json",
            "--samples", 8, "--elites", 2, "--iterations", 1, "--gifs", 0)
    rest = json.loads((tiny_run / "eval-rest.json").read_text())
    assert rest["manifest"]["start"] == "rest"
    assert rest["manifest"]["sha256"] == first["manifest"]["sha256"]
    refused(run_cli("eval", tiny_run, "--name", "../eval.json", check=False), "--name must")
