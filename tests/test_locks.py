"""One writer per output: a second writer is refused in one line naming the holder's pid,
and a writer killed with SIGKILL leaves no lock behind."""

import os
import signal
import subprocess
import sys

import pytest
from conftest import run_cli

from lewm.recipes import get_recipe


@pytest.fixture
def holder():
    """Start a process that holds the write lock of a path until it is killed."""
    procs = []

    def start(path):
        code = ("import sys, time; from lewm.locks import exclusive\n"
                "with exclusive(sys.argv[1]):\n    print('held', flush=True); time.sleep(120)")
        p = subprocess.Popen([sys.executable, "-c", code, str(path)], stdout=subprocess.PIPE,
                             text=True)
        assert p.stdout.readline().strip() == "held"
        procs.append(p)
        return p

    yield start
    for p in procs:
        p.kill()
        p.wait()


def test_second_collect_to_one_path_is_refused(holder, tmp_path):
    out = tmp_path / "d.h5"
    run_cli("collect", "tworoom", "--episodes", 2, "--steps", 5, "--size", 16, "--out", out)
    before = out.read_bytes()
    p = holder(out)
    r = run_cli("collect", "tworoom", "--episodes", 2, "--steps", 5, "--size", 16, "--seed", 9,
                "--out", out, "--force", check=False)
    assert r.returncode == 2 and f"another lewm process (pid {p.pid})" in r.stderr
    assert len(r.stderr.splitlines()) == 1 and out.read_bytes() == before
    os.kill(p.pid, signal.SIGKILL)  # the OS releases the lock of a killed writer
    p.wait()
    run_cli("collect", "tworoom", "--episodes", 2, "--steps", 5, "--size", 16, "--seed", 9,
            "--out", out, "--force")
    assert out.read_bytes() != before


def test_second_training_of_a_run_is_refused(holder, tworoom_file, tmp_path):
    from lewm.train import train

    out = tmp_path / "run"
    cfg = get_recipe("tiny").train
    train(cfg, tworoom_file, out, progress=False, stop_after=3)
    weights = (out / "checkpoint" / "model.safetensors").read_bytes()
    p = holder(out)
    for args in (("--resume", out), ("--data", tworoom_file, "--out", out, "--force",
                                     "--preset", "tiny")):
        r = run_cli("train", *args, check=False)
        assert r.returncode == 2 and f"being trained by another lewm process (pid {p.pid})" \
            in r.stderr, r.stderr
    assert (out / "checkpoint" / "model.safetensors").read_bytes() == weights
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    run_cli("train", "--resume", out, "--quiet")


@pytest.mark.slow
def test_a_reader_never_sees_a_half_swapped_checkpoint(tworoom_file, tmp_path):
    """`lewm.load` polled while a run writes a checkpoint at every step: no failed load."""
    import time

    import lewm

    out = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "lewm.cli", "train", "--preset", "tiny",
                             "--data", str(tworoom_file), "--out", str(out), "--set",
                             "steps=400", "--set", "ckpt_every=1", "--set", "val_every=400",
                             "--set", "log_every=400", "--set", "threads=1", "--quiet"])
    try:
        while not (out / "checkpoint" / "model.safetensors").exists():
            assert proc.poll() is None, "training ended before its first checkpoint"
            time.sleep(0.01)
        loads = failures = 0
        while proc.poll() is None or loads < 2000:
            try:
                lewm.load(out)
            except Exception:  # any failure counts
                failures += 1
            loads += 1
            if proc.poll() is not None and loads >= 2000:
                break
        assert proc.wait() == 0 and failures == 0 and loads >= 2000
    finally:
        proc.kill()
