"""The authors' datasets: written by their library, Blosc-compressed, named their way."""

import subprocess
import sys

import h5py
import numpy as np
import peer as peer_lib
import pytest
from conftest import run_cli

from lewm.data.hdf5 import open_episodes


def test_peer_written_dataset_trains_and_evaluates(tworoom_file, tmp_path):
    """A Two-Room dataset written by the authors' own HDF5Writer, with their column names
    (agent position in `proprio`, `ep_idx`, `step_idx`, no file attributes)."""
    writer = peer_lib.hdf5_writer()
    path = tmp_path / "authors.h5"
    with h5py.File(tworoom_file) as f, writer(path, mode="overwrite") as w:
        for o, n in zip(f["ep_offset"][()], f["ep_len"][()]):
            rows = slice(int(o), int(o + n))
            w.write_episode({"pixels": list(f["pixels"][rows]), "action": list(f["action"][rows]),
                             "proprio": list(f["state"][rows]), "ep_idx": [int(o)] * int(n),
                             "step_idx": list(range(int(n)))})
    with h5py.File(path) as f:
        assert "state" not in f and not f.attrs and {"ep_idx", "step_idx"} <= set(f)
    run_cli("train", "--preset", "tiny", "--data", path, "--out", tmp_path / "run", "--quiet")
    run_cli("eval", tmp_path / "run", "--episodes", "3", "--samples", "16", "--elites", "4",
            "--iterations", "2", "--gifs", "0", "--offset", "10", "--budget", "10")
    assert (tmp_path / "run" / "eval.json").exists()


def test_blosc_round_trip(tmp_path):
    pytest.importorskip("hdf5plugin", reason="hdf5plugin is not installed (lewm[authors])")
    for c in ("none", "blosc", "gzip"):
        run_cli("collect", "pusht", "--episodes", "2", "--steps", "12", "--size", "32",
                "--compression", c, "--out", tmp_path / f"{c}.h5", "--quiet")
    with open_episodes(tmp_path / "none.h5") as a, open_episodes(tmp_path / "blosc.h5") as b:
        assert "32001" in b["pixels"]._filters  # Blosc
        np.testing.assert_array_equal(a["pixels"][()], b["pixels"][()])
    with open_episodes(tmp_path / "gzip.h5") as g:
        assert g["pixels"].compression == "gzip" and g["state"].compression is None


def test_blosc_without_the_plugin_is_one_line(tmp_path):
    pytest.importorskip("hdf5plugin", reason="hdf5plugin is not installed (lewm[authors])")
    run_cli("collect", "tworoom", "--episodes", "2", "--steps", "5", "--size", "16",
            "--compression", "blosc", "--out", tmp_path / "b.h5", "--quiet")
    # A Python where hdf5plugin cannot be imported (and so Blosc is not registered).
    code = ("import sys; sys.modules['hdf5plugin'] = None; from lewm.cli import main; "
            f"sys.exit(main(['info', {str(tmp_path / 'b.h5')!r}]))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 2, r.stderr
    assert r.stderr.count("\n") == 1 and "lewm[authors]" in r.stderr and "blosc" in r.stderr
