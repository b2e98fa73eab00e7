import json

import numpy as np
import pytest
import torch
from conftest import run_cli
from safetensors.torch import load_file

import lewm
from lewm.errors import LewmError
from lewm.recipes import get_recipe
from lewm.train import train
from lewm.trainconfig import override

TINY = get_recipe("tiny").train


def weights(run_dir):
    return load_file(run_dir / "checkpoint" / "model.safetensors")


def test_run_directory_and_load(tworoom_file, tmp_path):
    out = tmp_path / "run"
    summary = train(TINY, tworoom_file, out, progress=False)
    assert summary["finished"] and summary["step"] == TINY.steps
    for name in ("config.json", "metrics.jsonl", "curves.png", "checkpoint/config.json",
                 "checkpoint/model.safetensors", "checkpoint/stats.json", "checkpoint/resume.pt"):
        assert (out / name).exists(), name
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    train_rows = [r for r in rows if r["split"] == "train"]
    val_rows = [r for r in rows if r["split"] == "val"]
    assert {"pred_loss", "sigreg", "lr", "grad_norm", "frames_per_s"} <= set(train_rows[-1])
    assert {"pred_loss", "std_min", "std_mean", "effective_rank", "rank_abs"} <= set(val_rows[-1])
    model = lewm.load(out)
    assert not model.training and set(model.card.stats) >= {"action", "state"}
    assert model.card.world == "tworoom" and model.card.step == 20
    pixels = torch.randint(0, 256, (2, 4, 32, 32, 3), dtype=torch.uint8)
    again = lewm.load(out / "checkpoint")
    torch.testing.assert_close(model.encode(pixels), again.encode(pixels))


def test_resume_is_bitwise_identical(tworoom_file, tmp_path):
    whole, split = tmp_path / "whole", tmp_path / "split"
    train(TINY, tworoom_file, whole, progress=False)
    # stop_after stops with a checkpoint, as Ctrl-C does.
    first = train(TINY, tworoom_file, split, progress=False, stop_after=7)
    assert not first["finished"]
    meta = json.loads((split / "checkpoint" / "config.json").read_text())
    assert meta["step"] == 7
    stopped_at = torch.load(split / "checkpoint" / "resume.pt")["train_seconds"]
    assert stopped_at >= first["seconds"]
    resumed = train(None, None, split, resume=True, progress=False)
    assert resumed["seconds"] > stopped_at  # the training time counts every part of a run
    a, b = weights(whole), weights(split)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_threads_is_a_setting_of_the_call(tworoom_file, tmp_path, monkeypatch):
    """`--threads` replaces the config's thread count for one call, a resumed one too (a
    machine setting: the run's config is left as it was)."""
    calls = []
    monkeypatch.setattr(torch, "set_num_threads", calls.append)
    run = tmp_path / "run"
    train(override(TINY, ["threads=2"]), tworoom_file, run, progress=False, stop_after=3)
    train(None, None, run, resume=True, progress=False, stop_after=3, threads=1)
    train(None, None, run, resume=True, progress=False)
    assert calls == [2, 1, 2]
    assert json.loads((run / "config.json").read_text())["train"]["threads"] == 2
    with pytest.raises(LewmError, match="--threads must be >= 0"):
        train(None, None, run, resume=True, threads=-1)


def test_worker_processes_train_bitwise_as_the_thread(tworoom_file, tmp_path, monkeypatch):
    """`workers=2` reads batches in two forked processes, each from its own handle on the
    file (pixels left on disk here, as for a dataset larger than RAM): the same batches in
    the same order and the same CPU random stream (dropout on), so the same weights."""
    import lewm.data.clips
    import lewm.data.prefetch

    cfg = override(TINY, ["model.dropout=0.1"])
    thread = tmp_path / "thread"
    train(cfg, tworoom_file, thread, progress=False)
    monkeypatch.setattr(lewm.data.clips, "_memory_bytes", lambda: 1)  # read from disk
    built = []
    real = lewm.data.prefetch.ProcessPrefetcher

    class Recorded(real):
        def __init__(self, *args, **kwargs):
            built.append(args[4])  # workers
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(lewm.data.prefetch, "ProcessPrefetcher", Recorded)
    procs = tmp_path / "procs"
    train(override(cfg, ["workers=2"]), tworoom_file, procs, progress=False)
    assert built == [2]
    a, b = weights(thread), weights(procs)
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_bf16_training_on_a_cpu(tworoom_file, tmp_path):
    """`precision=bf16` trains under bf16 autocast on a CPU too (AMX makes the paper model's
    step ~2x faster): a finite loss and other weights than the fp32 run's."""
    fp32 = train(TINY, tworoom_file, tmp_path / "fp32", progress=False)
    bf16 = train(override(TINY, ["precision=bf16"]), tworoom_file, tmp_path / "bf16",
                 progress=False)
    assert bf16["finished"] and np.isfinite(bf16["val"]["pred_loss"])
    a, b = weights(tmp_path / "fp32"), weights(tmp_path / "bf16")
    assert any(not torch.equal(a[k], b[k]) for k in a) and fp32["finished"]
    with pytest.raises(LewmError, match="precision must be auto, fp32 or bf16"):
        override(TINY, ["precision=fp16"])


def test_bad_data_for_the_preset(tworoom_file, tmp_path):
    with pytest.raises(LewmError, match="actions are 2-D but the preset expects 3-D"):
        train(override(TINY, ["model.action_dim=3"]), tworoom_file, tmp_path / "a")
    with pytest.raises(LewmError, match="images are 32x32 but the preset expects 64 px"):
        train(override(TINY, ["model.image_size=64"]), tworoom_file, tmp_path / "b")


def test_existing_run_directory_is_refused(tworoom_file, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(LewmError, match="already exists"):
        train(TINY, tworoom_file, out)
    assert (out / "notes.txt").read_text() == "mine"


def test_force_replaces_only_what_lewm_wrote(tworoom_file, tmp_path, capsys):
    """`--force` over a directory holding a run, the run's own dataset and a user's files:
    the earlier run's outputs are replaced, every other file is byte-identical after."""
    import shutil

    out = tmp_path / "project"
    out.mkdir()
    data = out / "tworoom.h5"
    shutil.copy(tworoom_file, data)
    (out / "notes.txt").write_text("mine")
    (out / "config.json").write_text('{"mine": 1}')  # a user's file with a run file's name
    (out / "sub").mkdir()
    (out / "sub" / "x.bin").write_bytes(b"\x00\x01")
    before = {p: p.read_bytes() for p in (data, out / "notes.txt", out / "sub" / "x.bin",
                                          out / "config.json")}
    with pytest.raises(LewmError, match="config.json: not written by lewm"):
        train(TINY, data, out, force=True, progress=False)
    assert all(p.read_bytes() == b for p, b in before.items())
    (out / "config.json").unlink()
    before.pop(out / "config.json")
    summary = train(TINY, data, out, force=True, progress=False)
    assert summary["finished"] and lewm.load(out) is not None
    assert all(p.read_bytes() == b for p, b in before.items())
    assert "kept notes.txt, sub, tworoom.h5" in capsys.readouterr().out
    again = train(TINY, data, out, force=True, progress=False)  # a second time: same
    assert again["finished"] and all(p.read_bytes() == b for p, b in before.items())


def test_a_failed_start_leaves_nothing_behind(tworoom_file, tmp_path):
    out = tmp_path / "run"
    with pytest.raises(LewmError, match="no such file"):
        train(TINY, tmp_path / "missing.h5", out, progress=False)
    assert not out.exists()
    assert train(TINY, tworoom_file, out, progress=False)["finished"]


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tworoom_file, tmp_path):
    out = tmp_path / "run"
    cfg = override(TINY, ["lr=1e12", "warmup_steps=0", "grad_clip=0", "steps=200",
                          "ckpt_every=1"])
    with pytest.raises(LewmError, match="loss became"):
        train(cfg, tworoom_file, out, progress=False)
    meta = json.loads((out / "checkpoint" / "config.json").read_text())
    model = lewm.load(out)
    assert all(torch.isfinite(p).all() for p in model.parameters()), meta["step"]


def test_incomplete_and_incompatible_checkpoints(tworoom_file, tmp_path):
    out = tmp_path / "run"
    train(TINY, tworoom_file, out, progress=False)
    cfg_path = out / "checkpoint" / "config.json"
    meta = json.loads(cfg_path.read_text())
    cfg_path.write_text(json.dumps({**meta, "format": 99}))
    with pytest.raises(LewmError, match="format 99"):
        lewm.load(out)
    # The model's own config is what loading needs; a field this version does not know is
    # refused (an unknown training field only matters to --resume, which refuses it too).
    model = {**meta["train"]["model"], "warp_drive": 1}
    cfg_path.write_text(json.dumps({**meta, "train": {**meta["train"], "model": model}}))
    with pytest.raises(LewmError, match="does not match this version"):
        lewm.load(out)
    cfg_path.write_text(json.dumps({**meta, "train": {**meta["train"], "warp_drive": 1}}))
    with pytest.raises(LewmError, match="does not match this version"):
        train(None, None, out, resume=True, progress=False)
    cfg_path.write_text(json.dumps(meta))
    (out / "checkpoint" / "model.safetensors").unlink()
    with pytest.raises(LewmError, match="incomplete checkpoint"):
        lewm.load(out)
    with pytest.raises(LewmError, match="no checkpoint"):
        lewm.load(tmp_path)


def test_set_overrides():
    cfg = override(TINY, ["lr=3e-4", "model.embed_dim=48", "model.conv_channels=8,16,24",
                          "compile=false"])
    assert cfg.lr == 3e-4 and cfg.model.embed_dim == 48 and cfg.model.conv_channels == (8, 16, 24)
    with pytest.raises(LewmError, match="unknown field 'nope'"):
        override(TINY, ["nope=1"])
    with pytest.raises(LewmError, match="not a valid int"):
        override(TINY, ["steps=many"])
    with pytest.raises(LewmError, match="unknown regularizer"):
        override(TINY, ["regularizer=dropout"])
    # Fields valid only together are checked after all assignments, in either order.
    for order in (["model.encoder=vit", "model.patch_size=8"],
                  ["model.patch_size=8", "model.encoder=vit"]):
        vit = override(TINY, order + ["model.enc_heads=4"]).model
        assert (vit.encoder, vit.patch_size, vit.enc_heads) == ("vit", 8, 4)
    with pytest.raises(LewmError, match="not a multiple of model.patch_size"):
        override(TINY, ["model.encoder=vit", "model.patch_size=5", "model.enc_heads=4"])


def test_train_cli(tworoom_file, tmp_path):
    out = tmp_path / "run"
    proc = run_cli("train", "--preset", "tiny", "--data", tworoom_file, "--out", out,
                   "--set", "steps=6", "--quiet")
    assert "step 6/6" in proc.stdout
    again = run_cli("train", "--preset", "tiny", "--data", tworoom_file, "--out", out, check=False)
    assert again.returncode == 2 and "already exists" in again.stderr
    assert "Traceback" not in again.stderr


@pytest.mark.slow
def test_torchrun_two_processes(tworoom_file, tmp_path):
    import subprocess
    import sys

    out = tmp_path / "ddp"
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone",
         "--nproc_per_node", "2", "-m", "lewm.cli", "train", "--preset", "tiny", "--data",
         str(tworoom_file), "--out", str(out), "--set", "steps=4", "--set", "threads=1",
         "--set", "val_every=2", "--quiet"],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads((out / "checkpoint" / "config.json").read_text())["step"] == 4
    model = lewm.load(out)
    # Validation ran once per validation step, on one rank, over the validation clips alone
    # (not a batch duplicated across ranks, which would double SIGReg).
    vals = [r for r in map(json.loads, (out / "metrics.jsonl").read_text().splitlines())
            if r.get("split") == "val"]
    assert [r["step"] for r in vals] == [2, 4]
    from contextlib import nullcontext

    from lewm.train import load_run_data, validate
    from lewm.trainconfig import from_dict

    cfg = from_dict(json.loads((out / "checkpoint" / "config.json").read_text())["train"])
    again = validate(model, load_run_data(cfg, tworoom_file).val, cfg, "cpu", nullcontext)
    assert again["sigreg"] == pytest.approx(vals[-1]["sigreg"], rel=1e-4)


def test_epochs_set_the_steps_from_the_clips_served(tworoom_file, tmp_path):
    import math

    from lewm.train import load_run_data
    from lewm.trainconfig import total_steps

    cfg = override(get_recipe("tiny").train, ["epochs=0.5"])
    clips = len(load_run_data(cfg, tworoom_file).train)
    assert total_steps(cfg, clips) == math.ceil(0.5 * clips / cfg.batch_size)
    summary = train(cfg, tworoom_file, tmp_path / "run", progress=False)
    assert summary["steps"] == summary["step"] == math.ceil(0.5 * clips / cfg.batch_size)


def test_loading_needs_the_model_code_alone(tmp_path, tworoom_file):
    """`lewm.load` imports neither the environments nor the data code: a checkpoint of a
    world whose extra is not installed still loads."""
    import subprocess
    import sys

    train(get_recipe("tiny").train, tworoom_file, tmp_path / "run", progress=False)
    code = ("import sys, lewm; lewm.load(sys.argv[1]); "
            "print(sorted(m for m in sys.modules if m.startswith(('lewm.envs', 'lewm.data', "
            "'lewm.recipes', 'gymnasium'))))")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "run")],
                         capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_a_crash_between_the_swap_renames_keeps_a_checkpoint(tworoom_file, tmp_path):
    """Killed after `checkpoint` became `checkpoint.old` and before the new one took its
    name: the previous checkpoint still loads, and the run resumes."""
    out = tmp_path / "run"
    train(TINY, tworoom_file, out, progress=False, stop_after=4)
    weights = lewm.load(out).state_dict()
    (out / "checkpoint").rename(out / "checkpoint.old")
    (out / "checkpoint.tmp").mkdir()  # a half-written new one
    (out / "checkpoint.tmp" / "model.safetensors").write_bytes(b"\x00" * 10)
    assert all(torch.equal(v, lewm.load(out).state_dict()[k]) for k, v in weights.items())
    assert train(None, None, out, resume=True, progress=False)["finished"]


def test_every_recipe_is_consistent_and_its_plan_survives_config_json():
    """Each recipe's collection and training are of one world and one image size, and its
    plan comes back from config.json's JSON as it went in; the paper recipes plan as the
    authors do. (That every CPU recipe's plan runs: tests/test_golden.py.)"""
    import dataclasses

    from lewm.planning.config import PlanConfig, plan_from_dict
    from lewm.recipes import RECIPES

    for name, r in RECIPES.items():
        assert r.name == name and r.why and r.log
        assert r.collect.world == r.train.world, name
        assert r.collect.size == r.train.model.image_size, name
        assert plan_from_dict(json.loads(json.dumps(dataclasses.asdict(r.plan)))) == r.plan
        if name.endswith("paper"):
            assert r.plan == PlanConfig() and r.train.epochs == 10, name


def test_training_on_windows_of_clips(tworoom_file, tmp_path):
    """clips_per_window: each row read is a window of consecutive clips of one episode, the
    step sees batch_size clips, and the run records the clips (not the windows) it can
    serve; validation keeps independent clips."""
    from lewm.train import load_run_data

    cfg = override(TINY, ["clips_per_window=4", "batch_size=8", "steps=4", "val_every=2"])
    run = load_run_data(cfg, tworoom_file)
    item = run.train[0]
    assert item["pixels"].shape[0] == cfg.window_frames == cfg.clip_frames + 3
    assert run.val[0]["pixels"].shape[0] == cfg.clip_frames
    assert run.info["train_clips"] == len(load_run_data(TINY, tworoom_file).train)
    # every window lies in one episode: its frames are consecutive rows every frameskip
    data, fs = run.train.data, cfg.model.frameskip
    ends = data.ep_offset + data.ep_len
    for start in run.train.starts:
        episode = np.searchsorted(data.ep_offset, start, side="right") - 1
        assert start + cfg.window_frames * fs <= ends[episode] - 1
    summary = train(cfg, tworoom_file, tmp_path / "run", progress=False)
    assert summary["finished"] and summary["step"] == 4
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text()
            .splitlines()]
    assert all(np.isfinite(r["pred_loss"]) for r in rows)


def test_the_fused_optimizer_makes_the_for_loop_update():
    """adamw's fused kernel: the parameters after a few steps are torch's for-loop AdamW's
    within float32 rounding."""
    from lewm.model import LeWM
    from lewm.train import adamw

    torch.manual_seed(0)
    a, b = LeWM(TINY.model), LeWM(TINY.model)
    b.load_state_dict(a.state_dict())
    fused = adamw(a.parameters(), TINY, torch.device("cpu"))
    plain = torch.optim.AdamW(b.parameters(), lr=TINY.lr, weight_decay=TINY.weight_decay,
                              foreach=False)
    assert fused.defaults["fused"]
    g = torch.Generator().manual_seed(1)
    for _ in range(5):
        for p, q in zip(a.parameters(), b.parameters()):
            p.grad = torch.randn(p.shape, generator=g)
            q.grad = p.grad.clone()
        fused.step()
        plain.step()
    for p, q in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)
