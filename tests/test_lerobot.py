"""LeRobot v3 datasets: `lewm convert` both ways, the layout `lerobot` reads (tested against
its schema: the `lerobot` package needs a CUDA-range torch and does not install here),
malformed directories as one-line errors, and training straight from a directory."""

import json
import shutil

import h5py
import numpy as np
import pytest
from conftest import run_cli

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")
av = pytest.importorskip("av")


@pytest.fixture(scope="module")
def lossless(tworoom_file, tmp_path_factory):
    out = tmp_path_factory.mktemp("lerobot") / "tworoom"
    run_cli("convert", tworoom_file, "--out", out, "--codec", "lossless", "--quiet")
    return out


def test_a_round_trip_is_exact_with_the_lossless_codec(tworoom_file, lossless, tmp_path):
    back = tmp_path / "back.h5"
    r = run_cli("convert", lossless, "--out", back, "--quiet")
    assert "12 episodes" in r.stdout
    with h5py.File(tworoom_file) as a, h5py.File(back) as b:
        assert set(a) == set(b)
        for name in a:
            x, y = a[name][()], b[name][()]
            assert x.dtype == y.dtype and x.shape == y.shape, name
            assert np.array_equal(x, y, equal_nan=True), name
        assert {k: a.attrs[k] for k in a.attrs if k != "lewm_version"} == \
            {k: b.attrs[k] for k in b.attrs if k != "lewm_version"}
    info_a, info_b = (run_cli("info", p).stdout for p in (tworoom_file, lossless))
    for line in ("episodes  12", "steps     492", "image     32 x 32"):
        assert line in info_a and line in info_b


def test_the_layout_is_lerobot_v3(lossless):
    info = json.loads((lossless / "meta" / "info.json").read_text())
    assert info["codebase_version"] == "v3.0" and info["fps"] == 10
    assert info["total_episodes"] == 12 and info["total_frames"] == 492
    assert info["total_tasks"] == 1 and info["splits"] == {"train": "0:12"}
    feats = info["features"]
    assert feats["observation.image"]["dtype"] == "video"
    assert feats["observation.image"]["shape"] == [32, 32, 3]
    assert feats["action"] == {"dtype": "float32", "shape": [2],
                               "names": ["action_0", "action_1"]}
    for key in ("timestamp", "frame_index", "episode_index", "index", "task_index"):
        assert feats[key]["shape"] == [1]
    data = pq.read_table(lossless / info["data_path"].format(chunk_index=0, file_index=0))
    assert data.schema.field("action").type == pa.list_(pa.float32(), 2)
    assert data.schema.field("observation.environment_state").type == pa.list_(pa.float32(), 2)
    assert data.schema.field("timestamp").type == pa.float32()
    for key in ("frame_index", "episode_index", "index", "task_index"):
        assert data.schema.field(key).type == pa.int64()
    assert data.column("index").to_pylist() == list(range(492))  # lerobot's row lookup
    assert data.column("frame_index").to_pylist()[:42] == [*range(41), 0]
    assert not np.isnan(np.asarray(data.column("action").to_pylist())).any()  # no NaN out
    eps = pq.read_table(lossless / "meta" / "episodes" / "chunk-000" / "file-000.parquet")
    for col in ("episode_index", "tasks", "length", "data/chunk_index", "data/file_index",
                "dataset_from_index", "dataset_to_index",
                "videos/observation.image/chunk_index", "videos/observation.image/file_index",
                "videos/observation.image/from_timestamp",
                "videos/observation.image/to_timestamp", "meta/episodes/chunk_index",
                "meta/episodes/file_index"):
        assert col in eps.column_names, col
    assert eps.column("dataset_to_index").to_pylist()[-1] == 492
    tasks = pq.read_table(lossless / "meta" / "tasks.parquet")
    assert json.loads(tasks.schema.metadata[b"pandas"])["index_columns"] == ["task"]
    stats = json.loads((lossless / "meta" / "stats.json").read_text())
    assert np.asarray(stats["observation.image"]["mean"]).shape == (3, 1, 1)
    assert set(stats["action"]) >= {"min", "max", "mean", "std", "count", "q01", "q99"}
    video = lossless / info["video_path"].format(video_key="observation.image",
                                                 chunk_index=0, file_index=3)
    with av.open(str(video)) as c:
        frames = list(c.decode(video=0))
    assert len(frames) == 41
    assert abs(float(frames[5].pts * frames[5].time_base) - 0.5) < 1e-4  # frame_index / fps


def test_the_default_codec_is_lossy_but_close(tworoom_file, tmp_path):
    from lewm.data.lerobot import LeRobotEpisodes

    out = tmp_path / "av1"
    run_cli("convert", tworoom_file, "--out", out, "--quiet")
    with LeRobotEpisodes(out) as f, h5py.File(tworoom_file) as src:
        x, y = f.pixels[()].astype(np.float64), src["pixels"][()]
        assert x.shape == y.shape
        psnr = 10 * np.log10(255**2 / ((x - y) ** 2).mean())
        assert psnr > 30, psnr
        assert np.array_equal(f["action"], src["action"][()], equal_nan=True)


def test_frames_decode_alone_as_they_do_together(lossless, tworoom_file):
    from lewm.data.clips import ClipDataset, EpisodeData, fit_stats

    lr, h5 = EpisodeData(lossless, in_memory=False), EpisodeData(tworoom_file)
    assert lr.frame_reads and not lr.in_memory
    rows = [0, 40, 41, 42, 491, 200, 201, 202]
    assert np.array_equal(lr.pixels[rows], h5.pixels[rows])
    assert np.array_equal(lr.pixels[37:45], h5.pixels[37:45])
    stats = fit_stats(h5, range(12))
    a = ClipDataset(lr, range(12), 4, 5, stats).batch([0, 7, 50, 99])
    b = ClipDataset(h5, range(12), 4, 5, stats).batch([0, 7, 50, 99])
    for k in b:
        assert np.array_equal(a[k], b[k]), k


def test_training_reads_a_lerobot_directory(lossless, tmp_path):
    out = tmp_path / "run"
    run_cli("train", "--preset", "tiny", "--data", lossless, "--out", out, "--set", "steps=4",
            "--quiet")
    meta = json.loads((out / "config.json").read_text())
    assert meta["data"]["camera"] == "observation.image"
    bad = run_cli("train", "--preset", "tiny", "--data", lossless, "--out", tmp_path / "r2",
                  "--camera", "observation.images.top", "--quiet", check=False)
    assert bad.returncode == 2 and "no video feature 'observation.images.top'" in bad.stderr
    assert "Traceback" not in bad.stderr


def _broken(lossless, tmp_path, name):
    d = tmp_path / name
    shutil.copytree(lossless, d)
    return d


@pytest.mark.parametrize("case", ["no_info", "no_video", "lengths", "not_a_dataset"])
def test_malformed_directories_are_one_line_errors(lossless, tmp_path, case):
    d = _broken(lossless, tmp_path, case)
    if case == "no_info":
        (d / "meta" / "info.json").unlink()
        expect = "meta/info.json: no such file"
    elif case == "no_video":
        video = d / "videos" / "observation.image" / "chunk-000" / "file-004.mp4"
        video.unlink()
        expect = f"{video}: no such file"
    elif case == "lengths":
        path = d / "meta" / "episodes" / "chunk-000" / "file-000.parquet"
        t = pq.read_table(path)
        lengths = t.column("length").to_pylist()
        lengths[2] += 1
        t = t.set_column(t.column_names.index("length"), "length", pa.array(lengths))
        pq.write_table(t, path)
        expect = "differs from length"
    else:
        shutil.rmtree(d / "meta")
        expect = "meta/info.json"
    r = run_cli("convert", d, "--out", tmp_path / "x.h5", check=False)
    assert r.returncode == 2 and expect in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and not (tmp_path / "x.h5").exists()
    info = run_cli("info", d, check=False)
    assert info.returncode == 2 and expect in info.stderr


def test_nothing_lands_under_the_final_name_until_complete(tworoom_file, tmp_path,
                                                           monkeypatch):
    import lewm.data.lerobot as lerobot
    from lewm.errors import LewmError

    calls = []

    def failing(path, frames, *args):
        calls.append(path)
        if len(calls) == 5:
            raise LewmError("disk full")
        return encode(path, frames, *args)

    encode = lerobot._encode
    monkeypatch.setattr(lerobot, "_encode", failing)
    out = tmp_path / "ds"
    with pytest.raises(LewmError, match="disk full"):
        lerobot.write_lerobot(tworoom_file, out, progress=False)
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_existing_outputs_need_force_and_must_be_datasets(tworoom_file, lossless, tmp_path):
    out = tmp_path / "ds"
    shutil.copytree(lossless, out)
    again = run_cli("convert", tworoom_file, "--out", out, check=False)
    assert again.returncode == 2 and "--force" in again.stderr
    run_cli("convert", tworoom_file, "--out", out, "--force", "--quiet")
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("mine")
    r = run_cli("convert", tworoom_file, "--out", mine, "--force", check=False)
    assert r.returncode == 2 and "not a LeRobot dataset" in r.stderr
    assert (mine / "notes.txt").read_text() == "mine"



def test_a_foreign_dataset_with_two_cameras_needs_camera(lossless, tmp_path):
    """A dataset lewm did not write (no meta/lewm.json) with a second camera: reading needs
    --camera, and each camera reads its own frames."""
    from lewm.data.lerobot import LeRobotEpisodes
    from lewm.errors import LewmError

    d = tmp_path / "two"
    shutil.copytree(lossless, d)
    (d / "meta" / "lewm.json").unlink()
    shutil.copytree(d / "videos" / "observation.image", d / "videos" / "observation.images.top")
    for video in (d / "videos" / "observation.images.top").rglob("*.mp4"):
        with av.open(str(video)) as c:
            frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
        from lewm.data.lerobot import _encode

        _encode(video, 255 - np.stack(frames), 10, "lossless", 0)
    info = json.loads((d / "meta" / "info.json").read_text())
    info["features"]["observation.images.top"] = info["features"].pop("observation.image")
    info["features"]["observation.images.wrist"] = info["features"]["observation.images.top"]
    (d / "meta" / "info.json").write_text(json.dumps(info))
    path = d / "meta" / "episodes" / "chunk-000" / "file-000.parquet"
    t = pq.read_table(path)
    for name in list(t.column_names):
        if name.startswith("videos/observation.image/"):
            for cam in ("top", "wrist"):
                t = t.append_column(name.replace("observation.image", f"observation.images.{cam}"),
                                    t.column(name))
    pq.write_table(t, path)
    shutil.copytree(d / "videos" / "observation.image", d / "videos" / "observation.images.wrist")
    with pytest.raises(LewmError, match="2 cameras .* --camera"):
        LeRobotEpisodes(d)
    with LeRobotEpisodes(d, "observation.images.top") as top, \
            LeRobotEpisodes(d, "observation.images.wrist") as wrist:
        assert np.array_equal(top.pixels[[3, 100]], 255 - wrist.pixels[[3, 100]])
        assert "world" not in top.attrs and top.attrs["fps"] == 10
        assert np.isfinite(top["action"]).all()  # lewm's NaN convention only where it wrote it
    back = tmp_path / "back.h5"
    r = run_cli("convert", d, "--out", back, "--camera", "observation.images.wrist", "--quiet")
    assert "camera observation.images.wrist" in r.stdout


def test_size_centre_crops_and_resizes_a_cameras_frames(tworoom_file, tmp_path):
    """A camera whose frames are not the model's size (here 32 x 24, as a robot's 480 x 640
    is): `--size` centre-crops each frame to a square and resizes it; the rest is kept."""
    from PIL import Image

    wide = tmp_path / "wide.h5"
    with h5py.File(tworoom_file) as a, h5py.File(wide, "w") as b:
        for name in a:
            b[name] = a[name][()][:, :, 4:28] if name == "pixels" else a[name][()]
        b.attrs.update(dict(a.attrs))
    d = tmp_path / "wide"
    run_cli("convert", wide, "--out", d, "--codec", "lossless", "--quiet")
    back = tmp_path / "back.h5"
    r = run_cli("convert", d, "--out", back, "--size", "16", "--quiet")
    assert "16 px" in r.stdout
    with h5py.File(wide) as a, h5py.File(back) as b:
        frames = a["pixels"][()]
        assert b["pixels"].shape == (len(frames), 16, 16, 3)
        want = np.stack([np.asarray(Image.fromarray(f[4:28]).resize((16, 16), Image.BILINEAR))
                         for f in frames[:5]])
        assert np.array_equal(b["pixels"][:5], want)
        assert np.array_equal(a["action"][()], b["action"][()], equal_nan=True)
        assert b.attrs["resized_from"].startswith("32x24")
    assert "image     16 x 16" in run_cli("info", back).stdout
    bad = run_cli("convert", d, "--out", tmp_path / "bad.h5", "--size", "2", check=False)
    assert bad.returncode != 0 and "--size 2" in bad.stderr and "Traceback" not in bad.stderr
    other = run_cli("convert", wide, "--out", tmp_path / "x", "--size", "16", check=False)
    assert other.returncode != 0 and "--size" in other.stderr
