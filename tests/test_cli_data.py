"""The data verbs end to end, in subprocesses."""

import h5py
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
