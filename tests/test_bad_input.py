"""Each bad input gets a one-line error naming the file or value, exit code 2, no traceback,
and leaves existing files untouched."""

import h5py
import numpy as np
import pytest
from conftest import run_cli, write_episode_file

from lewm.cli import main


def fails(capsys, *argv, match):
    code = main([str(a) for a in argv])
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert match in err, err
    return err


def test_missing_path(capsys, tmp_path):
    fails(capsys, "info", tmp_path / "nope.h5", match="nope.h5: no such file")


def test_not_hdf5(capsys, tmp_path):
    p = tmp_path / "text.h5"
    p.write_text("hello")
    fails(capsys, "info", p, match="not an HDF5 file")


def test_truncated_file(capsys, tmp_path):
    p = write_episode_file(tmp_path / "t.h5", [30, 30], size=32)
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])
    fails(capsys, "info", p, match=str(p))


def test_missing_column(capsys, tmp_path):
    p = write_episode_file(tmp_path / "m.h5", [10], action=None)
    fails(capsys, "info", p, match="missing column 'action'")


def test_mismatched_column_lengths(capsys, tmp_path):
    p = write_episode_file(tmp_path / "l.h5", [10, 10], state=np.zeros((19, 2), np.float32))
    fails(capsys, "info", p, match="column 'state' has 19 rows")


@pytest.mark.parametrize("ep_len,ep_offset", [([10, 9], [0, 10]), ([10, 10], [0, 9])])
def test_episodes_that_do_not_tile(capsys, tmp_path, ep_len, ep_offset):
    p = write_episode_file(tmp_path / "e.h5", [10, 10], ep_len=np.array(ep_len),
                           ep_offset=np.array(ep_offset))
    fails(capsys, "info", p, match="do not tile")


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_action_inside_an_episode(capsys, tmp_path, bad):
    action = np.zeros((20, 2), np.float32)
    action[[9, 19]] = np.nan
    action[4, 1] = bad
    p = write_episode_file(tmp_path / "n.h5", [10, 10], action=action)
    fails(capsys, "info", p, match="non-finite action at row 4")


@pytest.mark.parametrize(
    "pixels", [np.zeros((10, 8, 8, 3), np.float32), np.zeros((10, 8, 8), np.uint8)]
)
def test_wrong_image_dtype_or_shape(capsys, tmp_path, pixels):
    p = write_episode_file(tmp_path / "p.h5", [10], pixels=pixels)
    fails(capsys, "info", p, match="'pixels' must be uint8 (N, H, W, 3)")


def test_existing_output_needs_force(capsys, tmp_path):
    out = tmp_path / "keep.h5"
    out.write_bytes(b"precious")
    fails(capsys, "collect", "tworoom", "--episodes", 1, "--steps", 2, "--out", out,
          match="already exists")
    assert out.read_bytes() == b"precious"


def test_demo_into_an_existing_directory_needs_force(capsys, tmp_path):
    (tmp_path / "mine.txt").write_text("precious")
    err = fails(capsys, "demo", "--out", tmp_path, match="already exists")
    assert "--resume" not in err  # a demo cannot be resumed
    assert (tmp_path / "mine.txt").read_text() == "precious"


def test_force_replaces(capsys, tmp_path):
    out = tmp_path / "keep.h5"
    out.write_bytes(b"old")
    assert main(["collect", "tworoom", "--episodes", "1", "--steps", "2", "--size", "16",
                 "--out", str(out), "--force", "--quiet"]) == 0
    with h5py.File(out) as f:
        assert len(f["action"]) == 3


@pytest.mark.parametrize("flag,value,match", [
    ("--episodes", -1, "--episodes must be >= 1, got -1"),
    ("--size", 8, "--size must be >= 16, got 8"),
    ("--steps", 0, "--steps must be >= 1"),
    ("--policy", "teleport", "has no policy 'teleport'"),
    ("--noise-std", -0.5, "--noise-std must be finite and >= 0, got -0.5"),
])
def test_impossible_collect_arguments(capsys, tmp_path, flag, value, match):
    out = tmp_path / "x.h5"
    fails(capsys, "collect", "tworoom", flag, value, "--out", out, match=match)
    assert not out.exists()


def test_unknown_world(capsys, tmp_path):
    fails(capsys, "collect", "mars", "--out", tmp_path / "x.h5", match="unknown world 'mars'")


def test_show_episode_out_of_range(capsys, tmp_path):
    p = write_episode_file(tmp_path / "s.h5", [10])
    fails(capsys, "show", p, "--episode", 3, match="episode 3 out of range")


def test_errors_in_a_subprocess_have_no_traceback(tmp_path):
    proc = run_cli("info", tmp_path / "nope.h5", check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "Traceback" not in proc.stderr


def test_show_never_writes_over_the_file_it_shows(capsys, tmp_path):
    from conftest import write_episode_file

    path = write_episode_file(tmp_path / "d.h5", [5, 5], size=16)
    before = path.read_bytes()
    fails(capsys, "show", path, "--out", path, "--force", match="is the episode file")
    assert path.read_bytes() == before
