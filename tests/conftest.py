import subprocess
import sys

import h5py
import numpy as np
import pytest


def run_cli(*args, check=True, timeout=600):
    """Run `lewm ARGS` in a subprocess; returns the CompletedProcess."""
    proc = subprocess.run([sys.executable, "-m", "lewm.cli", *map(str, args)],
                          capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"lewm {args} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return proc


def write_episode_file(path, ep_lens, action_dim=2, size=16, **overrides):
    """A hand-built episode file: pixel value / action encode the global row number."""
    n = int(sum(ep_lens))
    rows = np.arange(n)
    ep_len = np.asarray(ep_lens, dtype=np.int64)
    cols = {
        "pixels": np.broadcast_to((rows % 256).astype(np.uint8)[:, None, None, None],
                                  (n, size, size, 3)).copy(),
        "action": np.stack([rows + 0.1 * d for d in range(action_dim)], 1).astype(np.float32),
        "state": np.stack([rows, -rows], 1).astype(np.float32),
        "ep_len": ep_len,
        "ep_offset": np.cumsum(ep_len) - ep_len,
    }
    cols["action"][cols["ep_offset"] + ep_len - 1] = np.nan
    cols.update(overrides)
    with h5py.File(path, "w") as f:
        for k, v in cols.items():
            if v is not None:
                f.create_dataset(k, data=v)
    return path


@pytest.fixture(scope="module")
def envs():
    """One env per world at 32 px, shared by the tests of a module (MuJoCo ones are slow
    to build)."""
    from lewm.envs import make_env

    made = {}
    yield lambda world: made.setdefault(world, make_env(world, 32))
    for env in made.values():
        env.close()


@pytest.fixture(scope="session")
def tworoom_file(tmp_path_factory):
    """A small collected Two-Room dataset shared by the tests."""
    from lewm.data.collect import CollectConfig, collect

    path = tmp_path_factory.mktemp("data") / "tworoom.h5"
    collect(CollectConfig(episodes=12, steps=40, size=32, seed=3), path, progress=False)
    return path


@pytest.fixture(scope="module")
def tiny_run(tworoom_file, tmp_path_factory):
    """A `tiny` run trained on `tworoom_file`, one per test module (modules write their own
    evaluations and analyses into it)."""
    from lewm.recipes import get_recipe
    from lewm.train import train

    out = tmp_path_factory.mktemp("runs") / "tiny"
    train(get_recipe("tiny").train, tworoom_file, out, progress=False)
    return out
