"""Faults a user meets: signals from schedulers, killed writers, values out of range."""

import os
import signal
import subprocess
import sys
import time

import pytest
from conftest import run_cli


def test_sigterm_during_training_writes_a_resumable_checkpoint(tworoom_file, tmp_path):
    out = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "lewm.cli", "train", "--preset", "tiny",
                             "--data", str(tworoom_file), "--out", str(out), "--set",
                             "steps=100000", "--set", "ckpt_every=100000", "--quiet"],
                            stderr=subprocess.PIPE, text=True)
    while not (out / "metrics.jsonl").exists():
        assert proc.poll() is None, proc.stderr.read()
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    err = proc.communicate(timeout=60)[1]
    assert proc.returncode == 130 and "--resume" in err and "Traceback" not in err
    r = run_cli("train", "--resume", out, "--stop-after", 2, "--quiet")
    assert "stopped early" in r.stdout


def test_signals_and_kills_during_collection_leave_no_temporary_file(tmp_path):
    out = tmp_path / "d.h5"
    args = [sys.executable, "-m", "lewm.cli", "collect", "tworoom", "--episodes", "100000",
            "--steps", "50", "--size", "16", "--out", str(out), "--quiet"]
    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGKILL):
        proc = subprocess.Popen(args, stderr=subprocess.PIPE, text=True)
        while not list(tmp_path.glob(".d.h5.tmp-*")):
            assert proc.poll() is None, proc.stderr.read()
            time.sleep(0.05)
        time.sleep(0.3)
        os.kill(proc.pid, sig)
        proc.communicate(timeout=60)
        assert not out.exists()
        if sig != signal.SIGKILL:
            assert not list(tmp_path.glob(".d.h5.tmp-*")), sig
    assert list(tmp_path.glob(".d.h5.tmp-*"))  # SIGKILL leaves one: the next writer removes it
    r = run_cli("collect", "tworoom", "--episodes", 2, "--steps", 5, "--size", 16, "--out", out)
    assert "removed" in r.stdout and not list(tmp_path.glob(".d.h5.tmp-*")) and out.exists()


@pytest.mark.parametrize("args,match", [
    (("collect", "tworoom", "--seed", "-1"), "--seed must be in"),
    (("collect", "tworoom", "--seed", str(2**70)), "--seed must be in"),
    (("collect", "tworoom", "--noise-std", "inf"), "--noise-std must be finite"),
])
def test_values_out_of_range_are_refused(tmp_path, args, match):
    r = run_cli(*args, "--out", tmp_path / "x.h5", check=False)
    assert r.returncode == 2 and match in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "x.h5").exists()


def test_training_seed_out_of_range(tworoom_file, tmp_path):
    r = run_cli("train", "--preset", "tiny", "--data", tworoom_file, "--out", tmp_path / "r",
                "--set", "seed=-1", check=False)
    assert r.returncode == 2 and "seed must be in" in r.stderr and "Traceback" not in r.stderr


def test_a_damaged_model_file_is_refused(tworoom_file, tmp_path):
    """Bit rot or a bad copy inside model.safetensors: the checksum recorded when it was
    written catches it, where the file would otherwise load and evaluate silently."""
    out = tmp_path / "run"
    run_cli("train", "--preset", "tiny", "--data", tworoom_file, "--out", out, "--set",
            "steps=2", "--quiet")
    weights = out / "checkpoint" / "model.safetensors"
    blob = bytearray(weights.read_bytes())
    blob[-100] ^= 0x10  # inside the last tensor's data: the header still parses
    weights.write_bytes(bytes(blob))
    r = run_cli("eval", out, "--episodes", 1, "--gifs", 0, check=False)
    assert r.returncode == 2 and "damaged" in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


@pytest.fixture
def tiny_stopped(tworoom_file, tmp_path):
    """A tiny run stopped after 4 of 20 steps, resumable."""
    out = tmp_path / "run"
    run_cli("train", "--preset", "tiny", "--data", tworoom_file, "--out", out,
            "--stop-after", 4, "--quiet")
    return out


@pytest.mark.parametrize("name, content, match", [
    ("stats.json", "{not json", "stats.json: damaged"),
    ("stats.json", "{}", "stats.json: damaged"),
    ("config.json", "[1, 2]", "not a checkpoint config"),
    ("config.json", '{"format": 1, "train": {"model": {}}}', "no 'data' section"),
])
def test_damaged_checkpoint_files_are_one_line_errors(tiny_stopped, name, content, match):
    (tiny_stopped / "checkpoint" / name).write_text(content)
    for args in (("eval", tiny_stopped, "--episodes", 1), ("train", "--resume", tiny_stopped)):
        r = run_cli(*args, check=False)
        assert r.returncode == 2 and match in r.stderr, r.stderr
        assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_a_truncated_resume_file_is_a_one_line_error(tiny_stopped):
    resume = tiny_stopped / "checkpoint" / "resume.pt"
    resume.write_bytes(resume.read_bytes()[:200])
    r = run_cli("train", "--resume", tiny_stopped, check=False)
    assert r.returncode == 2 and "resume.pt: damaged" in r.stderr and "Traceback" not in r.stderr


def test_resume_refuses_a_dataset_that_changed(tworoom_file, tmp_path):
    """The run's data file re-collected (or replaced) at the same path between stop and
    resume: the run would silently continue on other clips and statistics."""
    import shutil

    from conftest import write_episode_file

    data = tmp_path / "data.h5"
    shutil.copy(tworoom_file, data)
    out = tmp_path / "run"
    run_cli("train", "--preset", "tiny", "--data", data, "--out", out, "--stop-after", 2,
            "--quiet")
    write_episode_file(data, [41] * 12, size=32)
    r = run_cli("train", "--resume", out, check=False)
    assert r.returncode == 2 and "not the dataset this run was trained on" in r.stderr
    assert "Traceback" not in r.stderr
    r = run_cli("train", "--resume", out, "--force-data", "--stop-after", 2, "--quiet")
    assert "stopped early" in r.stdout


def test_resume_after_a_torn_metrics_line(tiny_stopped):
    """A kill mid-write leaves half a line; the resumed run drops it (and the rows past the
    checkpoint it resumes from) and finishes, curves included."""
    import json

    metrics = tiny_stopped / "metrics.jsonl"
    with open(metrics, "a") as f:
        f.write('{"split": "train", "step": 99, "loss": 0.1}\n{"split": "tr')
    run_cli("train", "--resume", tiny_stopped, "--quiet")
    rows = [json.loads(line) for line in metrics.read_text().splitlines()]
    assert all(r["step"] != 99 for r in rows) and rows[-1]["step"] == 20
    assert (tiny_stopped / "curves.png").exists()


def test_a_full_disk_stops_collection_cleanly(tmp_path, monkeypatch):
    """HDF5 crashes (errors, then a segmentation fault) when a write hits a full disk; the
    writer checks the space first and leaves nothing behind."""
    import shutil
    from collections import namedtuple

    from lewm.data.collect import CollectConfig, check_resources, collect
    from lewm.errors import LewmError

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage(1 << 30, 1 << 30, 1 << 20))
    out = tmp_path / "d.h5"
    with pytest.raises(LewmError, match="no space left"):
        collect(CollectConfig(episodes=4, steps=10, size=16, compression="lzf"), out,
                progress=False)
    assert not out.exists() and not list(tmp_path.glob(".d.h5.tmp-*"))
    with pytest.raises(LewmError, match="free on its disk"):
        check_resources(CollectConfig(episodes=100, steps=100, size=64), out)
    with pytest.raises(LewmError, match="of memory"):
        check_resources(CollectConfig(episodes=8, steps=10_000_000, size=224), out)


def test_os_errors_of_the_machine_are_one_line(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    r = run_cli("collect", "tworoom", "--episodes", 1, "--steps", 5, "--size", 16, "--out",
                blocker / "d.h5", check=False)
    assert r.returncode == 2 and "exists" in r.stderr and "Traceback" not in r.stderr
