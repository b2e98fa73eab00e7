"""LeRobot v3 dataset directories, read and written beside lewm's HDF5 episode files.

A LeRobot dataset (codebase_version v3.0, the layout of the `lerobot` package) is a directory:
meta/info.json (features, frame rate, path templates), meta/episodes/*/*.parquet (one row per
episode: its length, its rows and where its video lies), meta/tasks.parquet, meta/stats.json,
data/*/*.parquet (one row per frame: actions, states, indices) and one MP4 per camera holding
the frames. lewm writes one MP4 per camera per episode (a layout the format allows: an
episode's frames start at timestamp 0 of its file) and reads any layout, concatenated files
included.

Reading gives an object that answers like an open HDF5 episode file (`f["action"][()]`,
`f["pixels"][rows]`, `f.attrs`), so every verb that reads episodes takes a LeRobot directory as
it is. Pixels are decoded on demand: a frame alone (seek to its key frame, decode forward), an
episode, or everything at once. Column names map as LeRobot's conventions have them: the
robot's own state (`observation.state`) is lewm's `proprio`, the scene's
(`observation.environment_state`) its `state`.

pyarrow and PyAV are an optional extra: `pip install 'lewm[lerobot]'`.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np

from lewm import __version__
from lewm.errors import LewmError

VERSION = "v3.0"
IMAGE_KEY = "observation.image"
COLUMN_KEYS = {"proprio": "observation.state", "state": "observation.environment_state"}
DEFAULT_FEATURES = ("timestamp", "frame_index", "episode_index", "index", "task_index")
DATA_PATH = "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
VIDEO_PATH = "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
EPISODES_PATH = "meta/episodes/chunk-000/file-000.parquet"
CHUNK_SIZE = 1000  # files per chunk directory, as `lerobot` writes them
DATA_FILE_MB = 100
# name -> (PyAV encoder, pixel format, default CRF). av1 is `lerobot`'s own default;
# lossless is H.264 in RGB at CRF 0, so a round trip gives back every pixel.
CODECS = {"av1": ("libsvtav1", "yuv420p", 30), "h264": ("libx264", "yuv420p", 23),
          "lossless": ("libx264rgb", "rgb24", 0)}
TOLERANCE_S = 1e-4  # a decoded frame's timestamp against the table's, as `lerobot` checks


def _modules():
    try:
        import av
        import pyarrow
        import pyarrow.parquet
    except ImportError:
        raise LewmError("LeRobot datasets need pyarrow and PyAV: pip install 'lewm[lerobot]'"
                        ) from None
    os.environ.setdefault("SVT_LOG", "1")  # the AV1 encoder's banner, errors only
    return pyarrow, pyarrow.parquet, av


def is_lerobot(path) -> bool:
    """A directory that holds meta/info.json."""
    return Path(path).is_dir() and (Path(path) / "meta" / "info.json").is_file()


def _read_info(root: Path) -> dict:
    path = root / "meta" / "info.json"
    if not path.is_file():
        raise LewmError(f"{path}: no such file (a LeRobot dataset directory has meta/info.json)")
    try:
        info = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise LewmError(f"{path}: not readable JSON ({e})") from None
    if not isinstance(info, dict) or not isinstance(info.get("features"), dict):
        raise LewmError(f"{path}: has no 'features' table")
    version = str(info.get("codebase_version", ""))
    if not version.startswith("v3."):
        raise LewmError(f"{path}: codebase_version {version or 'missing'!r}; lewm reads LeRobot "
                        "v3 datasets (convert older ones with lerobot's v2.1 -> v3.0 script)")
    fps = info.get("fps")
    if not isinstance(fps, (int, float)) or fps <= 0:
        raise LewmError(f"{path}: fps must be a positive number, got {fps!r}")
    return info


def _tables(root: Path, pattern: str, what: str):
    pa, pq, _ = _modules()
    files = sorted(root.glob(pattern))
    if not files:
        raise LewmError(f"{root / pattern.split('/')[0]}: no {what} parquet files "
                        f"({pattern})")
    tables = []
    for f in files:
        try:
            tables.append(pq.read_table(f))
        except (OSError, pa.ArrowException) as e:
            raise LewmError(f"{f}: not a readable parquet table ({e})") from None
    try:
        return pa.concat_tables(tables, promote_options="permissive"), files
    except pa.ArrowException as e:
        raise LewmError(f"{files[0].parent}: its {what} tables do not share columns ({e})"
                        ) from None


def _column(table, name: str, path, dtype) -> np.ndarray:
    if name not in table.column_names:
        raise LewmError(f"{path}: missing column {name!r} (has {sorted(table.column_names)})")
    col = table.column(name).combine_chunks()
    try:
        if hasattr(col, "flatten"):  # a vector per row: fixed-size or variable lists
            lengths = np.asarray(col.value_lengths() if hasattr(col, "value_lengths")
                                 else np.full(len(col), col.type.list_size))
            if col.null_count or (len(lengths) and (lengths != lengths[0]).any()):
                raise ValueError("rows of different lengths or missing values")
            flat = np.array(col.flatten().to_numpy(zero_copy_only=False), dtype=dtype)
            out = flat.reshape(len(col), int(lengths[0]) if len(lengths) else 0)
        else:
            out = np.array(col.to_numpy(zero_copy_only=False), dtype=dtype)
    except (TypeError, ValueError) as e:
        raise LewmError(f"{path}: column {name!r} is not a {np.dtype(dtype).name} array ({e})"
                        ) from None
    return out.reshape(len(out), -1) if out.ndim == 1 and dtype == np.float32 else out


class VideoFrames:
    """One camera's frames of a LeRobot dataset as an (N, H, W, 3) uint8 array that decodes
    what is indexed: an int row, a slice, an array of rows, or `[()]` for all of them."""

    dtype = np.dtype(np.uint8)

    def __init__(self, episodes: LeRobotEpisodes, shape):
        self.episodes = episodes
        self.shape = shape
        self.ndim = 4
        self.size = int(np.prod(shape))
        self.chunks = (1, *shape[1:])  # one frame per read (lewm.data.clips: frame reads)
        self._open: dict[Path, object] = {}

    def __len__(self) -> int:
        return self.shape[0]

    def _container(self, path: Path):
        c = self._open.get(path)
        if c is None:
            _, _, av = _modules()
            if len(self._open) >= 8:
                self.close()
            try:
                c = av.open(str(path))
            except (OSError, av.FFmpegError) as e:
                raise LewmError(f"{path}: not a readable video ({e})") from None
            self._open[path] = c
        return c

    def _decode(self, ep: int, first: int, count: int) -> np.ndarray:
        """Frames first .. first + count - 1 of episode ep."""
        e = self.episodes
        path, start = e.video_files[ep], e.video_from[ep]
        fps, h, w = e.fps, self.shape[1], self.shape[2]
        c = self._container(path)
        stream = c.streams.video[0]
        t0 = start + first / fps
        out = np.empty((count, h, w, 3), np.uint8)
        got = 0
        c.seek(max(0, int(t0 / stream.time_base)), stream=stream, backward=True)
        for frame in c.decode(stream):
            t = float(frame.pts * stream.time_base)
            if t < t0 - TOLERANCE_S - 0.5 / fps:
                continue
            img = frame.to_ndarray(format="rgb24")
            if img.shape != (h, w, 3):
                raise LewmError(f"{path}: frames are {img.shape[1]}x{img.shape[0]}, "
                                f"meta/info.json says {w}x{h}")
            out[got] = img
            got += 1
            if got == count:
                return out
        raise LewmError(f"{path}: holds {first + got} frames of episode {ep} from "
                        f"{start:g} s; its table says {int(e.ep_len[ep])}")

    def episode(self, ep: int) -> np.ndarray:
        return self._decode(ep, 0, int(self.episodes.ep_len[ep]))

    def __getitem__(self, key) -> np.ndarray:
        n = self.shape[0]
        if isinstance(key, tuple) and key == ():
            return np.concatenate([self.episode(ep) for ep in range(len(self.episodes.ep_len))])
        if isinstance(key, (int, np.integer)):
            row = int(key) + n if key < 0 else int(key)
            if not 0 <= row < n:
                raise IndexError(f"row {key} out of {n}")
            return self._rows(np.asarray([row]))[0]
        if isinstance(key, slice):
            return self._rows(np.arange(n)[key])
        rows = np.asarray(key, dtype=np.int64)
        return self._rows(rows.ravel()).reshape(*rows.shape, *self.shape[1:])

    def _rows(self, rows: np.ndarray) -> np.ndarray:
        """The frames of `rows`, runs of consecutive rows of one episode decoded in one
        pass. Rows apart (a clip's, `frameskip` apart) each seek their own key frame: with
        one every 2 frames that was faster than decoding the frames between
        (bench/lerobot_loader.py)."""
        e = self.episodes
        out = np.empty((len(rows), *self.shape[1:]), np.uint8)
        eps = np.searchsorted(e.ep_offset, rows, side="right") - 1
        i = 0
        while i < len(rows):
            j = i + 1
            while j < len(rows) and eps[j] == eps[i] and rows[j] == rows[j - 1] + 1:
                j += 1
            out[i:j] = self._decode(int(eps[i]), int(rows[i] - e.ep_offset[eps[i]]), j - i)
            i = j
        return out

    def close(self) -> None:
        for c in self._open.values():
            c.close()
        self._open = {}


class LeRobotEpisodes:
    """A LeRobot v3 directory opened like an HDF5 episode file (lewm.data.hdf5.open_episodes):
    `ep_len`, `ep_offset`, `action`, `state` / `proprio` where present, `pixels` (the chosen
    camera, decoded on demand) and `attrs`. Every inconsistency is a one-line error naming the
    file: no info.json, a missing table, column or video, lengths that disagree."""

    def __init__(self, root, camera: str | None = None):
        self.root = root = Path(root)
        info = _read_info(root)
        self.info, self.fps = info, float(info["fps"])
        features = info["features"]
        videos = [k for k, v in features.items() if isinstance(v, dict)
                  and v.get("dtype") == "video"]
        info_path = root / "meta" / "info.json"
        if camera is None:
            if not videos:
                raise LewmError(f"{info_path}: no video feature (lewm trains on camera "
                                "frames stored as video)")
            if len(videos) > 1 and IMAGE_KEY not in videos:
                raise LewmError(f"{root}: {len(videos)} cameras ({', '.join(videos)}); choose "
                                "one with --camera KEY")
            camera = IMAGE_KEY if IMAGE_KEY in videos else videos[0]
        elif camera not in videos:
            raise LewmError(f"{info_path}: no video feature {camera!r} (has "
                            f"{', '.join(videos) or 'none'})")
        self.camera = camera
        shape = features[camera].get("shape")
        names = features[camera].get("names") or ["height", "width", "channels"]
        if not (isinstance(shape, list) and len(shape) == 3):
            raise LewmError(f"{info_path}: feature {camera!r} has shape {shape!r}, expected "
                            "[height, width, 3]")
        if list(names)[:1] == ["channels"]:
            shape = [shape[1], shape[2], shape[0]]
        if shape[2] != 3:
            raise LewmError(f"{info_path}: feature {camera!r} has {shape[2]} channels; lewm "
                            "takes RGB frames")

        episodes, ep_files = _tables(root, "meta/episodes/*/*.parquet", "episode")
        where = ep_files[0] if len(ep_files) == 1 else ep_files[0].parent.parent
        index = _column(episodes, "episode_index", where, np.int64)
        order = np.argsort(index, kind="stable")
        if not np.array_equal(index[order], np.arange(len(index))):
            raise LewmError(f"{where}: episode_index must run 0 .. {len(index) - 1} once each")
        self.ep_len = _column(episodes, "length", where, np.int64)[order]
        start = _column(episodes, "dataset_from_index", where, np.int64)[order]
        stop = _column(episodes, "dataset_to_index", where, np.int64)[order]
        if np.any(self.ep_len < 1) or not np.array_equal(stop - start, self.ep_len):
            raise LewmError(f"{where}: dataset_to_index - dataset_from_index differs from "
                            "length (or an episode is empty)")
        self.ep_offset = np.concatenate([[0], np.cumsum(self.ep_len)[:-1]]).astype(np.int64)
        if not np.array_equal(start, self.ep_offset):
            raise LewmError(f"{where}: episodes do not tile the frames in order "
                            "(dataset_from_index must be the running sum of lengths)")
        chunk = _column(episodes, f"videos/{camera}/chunk_index", where, np.int64)[order]
        fileno = _column(episodes, f"videos/{camera}/file_index", where, np.int64)[order]
        self.video_from = _column(episodes, f"videos/{camera}/from_timestamp", where,
                                  np.float64)[order]
        template = info.get("video_path") or VIDEO_PATH
        self.video_files = [root / template.format(video_key=camera, chunk_index=int(c),
                                                   file_index=int(f), episode_index=i)
                            for i, (c, f) in enumerate(zip(chunk, fileno))]
        for path in dict.fromkeys(self.video_files):
            if not path.is_file():
                raise LewmError(f"{path}: no such file (the video of camera {camera!r})")

        data, data_files = _tables(root, "data/*/*.parquet", "frame")
        where = data_files[0] if len(data_files) == 1 else root / "data"
        rows = int(self.ep_len.sum())
        if data.num_rows != rows:
            raise LewmError(f"{where}: {data.num_rows} frames, but the episodes' lengths sum to "
                            f"{rows}")
        if not np.array_equal(_column(data, "index", where, np.int64), np.arange(rows)):
            raise LewmError(f"{where}: the index column must run 0 .. {rows - 1} in file order")
        frame_ep = _column(data, "episode_index", where, np.int64)
        if not np.array_equal(frame_ep, np.repeat(np.arange(len(self.ep_len)), self.ep_len)):
            raise LewmError(f"{where}: episode_index of the frames disagrees with the episodes' "
                            "lengths in meta/episodes")
        self.columns = {"action": _column(data, "action", where, np.float32)}
        for name, key in COLUMN_KEYS.items():
            if key in data.column_names:
                self.columns[name] = _column(data, key, where, np.float32)
        action = self.columns["action"]
        bad = ~np.isfinite(action).all(axis=1)
        bad[self.ep_offset + self.ep_len - 1] = False
        if action.shape[1] == 0 or bad.any():
            raise LewmError(f"{where}: the action column is empty or non-finite at row "
                            f"{int(np.flatnonzero(bad)[0]) if bad.any() else 0}")
        self.lewm = self._lewm_meta()
        if self.lewm.get("terminal_action") == "nan":  # lewm's convention, undone on write
            self.columns["action"][self.ep_offset + self.ep_len - 1] = np.nan
        self.pixels = VideoFrames(self, (rows, int(shape[0]), int(shape[1]), 3))
        self.attrs = dict(self.lewm.get("attrs") or {"source": "lerobot",
                                                     "robot_type": info.get("robot_type"),
                                                     "fps": self.fps})
        self.attrs = {k: v for k, v in self.attrs.items() if v is not None}

    def _lewm_meta(self) -> dict:
        path = self.root / "meta" / "lewm.json"
        if not path.is_file():
            return {}
        try:
            meta = json.loads(path.read_text())
        except (OSError, ValueError) as e:
            raise LewmError(f"{path}: not readable JSON ({e})") from None
        return meta if isinstance(meta, dict) else {}

    # The h5py.File answers the readers use.
    def __getitem__(self, name):
        if name == "pixels":
            return self.pixels
        if name in ("ep_len", "ep_offset"):
            return getattr(self, name)
        try:
            return self.columns[name]
        except KeyError:
            raise KeyError(name) from None

    def __contains__(self, name) -> bool:
        return name in self.columns or name in ("pixels", "ep_len", "ep_offset")

    def __iter__(self):
        return iter(sorted([*self.columns, "pixels", "ep_len", "ep_offset"]))

    def keys(self):
        return list(self)

    def reopen(self) -> None:
        """In a forked reader process: decoders of its own."""
        self.pixels._open = {}

    def close(self) -> None:
        self.pixels.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


# ----------------------------------------------------------------------------- writing


def _stats(x: np.ndarray) -> dict:
    """LeRobot's per-feature statistics of rows x (n, d) (float64 lists)."""
    x = x[np.isfinite(x).all(axis=1)] if x.dtype.kind == "f" else x
    x = x.astype(np.float64)
    q = np.quantile(x, [0.01, 0.10, 0.50, 0.90, 0.99], axis=0) if len(x) else np.zeros((5, 1))
    out = {"min": x.min(0), "max": x.max(0), "mean": x.mean(0), "std": x.std(0)}
    out.update({f"q{int(round(p * 100)):02d}": q[i] for i, p in
                enumerate([0.01, 0.10, 0.50, 0.90, 0.99])})
    out = {k: np.asarray(v).tolist() for k, v in out.items()}
    out["count"] = [int(len(x))]
    return out


def _image_stats(pixels, rows: np.ndarray) -> dict:
    """Per-channel statistics in [0, 1], shaped (3, 1, 1) as LeRobot keeps them."""
    x = np.stack([pixels[int(r)] for r in rows]).reshape(-1, 3).astype(np.float64) / 255.0
    s = _stats(x)
    s = {k: (np.asarray(v).reshape(3, 1, 1).tolist() if k != "count" else [int(len(rows))])
         for k, v in s.items()}
    return s


def _encode(path: Path, frames: np.ndarray, fps: int, codec: str, crf: int) -> None:
    _, _, av = _modules()
    encoder, pix_fmt, _ = CODECS[codec]
    h, w = frames.shape[1:3]
    if pix_fmt == "yuv420p" and (h % 2 or w % 2):
        raise LewmError(f"--codec {codec} needs even frame sizes, got {w}x{h} (use "
                        "--codec lossless)")
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as c:
        options = {"crf": str(crf), "g": "2"}
        if encoder == "libsvtav1":
            options["preset"] = "8"
        s = c.add_stream(encoder, rate=fps, options=options)
        s.width, s.height, s.pix_fmt = w, h, pix_fmt
        for img in frames:
            for packet in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                c.mux(packet)
        for packet in s.encode():
            c.mux(packet)


def _fixed_list(pa, x: np.ndarray):
    x = np.ascontiguousarray(x, dtype=np.float32)
    return pa.FixedSizeListArray.from_arrays(pa.array(x.reshape(-1)), x.shape[1])


def _tasks_table(pa, tasks: list[str]):
    """meta/tasks.parquet as pandas writes it (the task strings as its index), without
    needing pandas: `lerobot` reads it with pandas and looks tasks up by that index."""
    table = pa.table({"task_index": pa.array(range(len(tasks)), pa.int64()),
                      "task": pa.array(tasks, pa.string())})
    pandas_meta = {"index_columns": ["task"], "column_indexes": [], "columns": [
        {"name": "task_index", "field_name": "task_index", "pandas_type": "int64",
         "numpy_type": "int64", "metadata": None},
        {"name": "task", "field_name": "task", "pandas_type": "unicode",
         "numpy_type": "object", "metadata": None}],
        "creator": {"library": "lewm", "version": __version__}, "pandas_version": "2.2.0"}
    return table.replace_schema_metadata({b"pandas": json.dumps(pandas_meta).encode()})


def world_fps(world: str) -> int:
    """The control rate of a lewm world (its env's render_fps), 10 if unknown."""
    try:
        import importlib

        from lewm.worlds import WORLDS

        module, name = WORLDS[world].env.split(":")
        return int(getattr(importlib.import_module(module), name).metadata["render_fps"])
    except (KeyError, ImportError, AttributeError, ValueError):
        return 10


def check_dataset_out(out: Path, force: bool) -> None:
    """A conversion goes to a new or empty directory, or with `force` replaces a LeRobot
    dataset (a directory with meta/info.json); anything else there is refused."""
    if out.exists() and not out.is_dir():
        raise LewmError(f"{out}: is a file, not a directory")
    if not out.exists() or not any(out.iterdir()):
        return
    if not force:
        raise LewmError(f"{out}: already exists (pass --force to replace it)")
    if not is_lerobot(out):
        raise LewmError(f"{out}: not a LeRobot dataset; refusing to replace it (choose another "
                        "--out)")


def write_lerobot(src, out, *, codec: str = "av1", crf: int | None = None,
                  fps: int | None = None, camera: str = IMAGE_KEY, task: str | None = None,
                  force: bool = False, progress: bool = True) -> dict:
    """Write episode file `src` as a LeRobot v3 dataset directory `out` (built under a
    temporary name and renamed when complete)."""
    from tqdm.auto import tqdm

    from lewm.data.hdf5 import json_attr, open_episodes
    from lewm.interop import restore_swapped, swap_in

    pa, pq, _ = _modules()
    if codec not in CODECS:
        raise LewmError(f"--codec {codec!r}: choose one of {', '.join(CODECS)}")
    crf = CODECS[codec][2] if crf is None else crf
    if not 0 <= crf <= 63:
        raise LewmError(f"--crf must be in [0, 63], got {crf}")
    if "/" in camera or not camera:
        raise LewmError(f"--camera {camera!r}: a feature name without '/'")
    out = Path(out)
    restore_swapped(out)
    check_dataset_out(out, force)
    with open_episodes(src, columns=("pixels", "action")) as f:
        attrs = {k: json_attr(v) for k, v in f.attrs.items()}
        world = str(attrs.get("world", ""))
        fps = int(fps or world_fps(world))
        if fps < 1:
            raise LewmError(f"--fps must be >= 1, got {fps}")
        ep_len = f["ep_len"][()].astype(np.int64)
        ep_offset = f["ep_offset"][()].astype(np.int64)
        action = f["action"][()].astype(np.float32)
        lowdim = {name: f[name][()].astype(np.float32).reshape(len(action), -1)
                  for name in COLUMN_KEYS if name in f}
        pixels = f["pixels"]
        n, (h, w) = len(action), pixels.shape[1:3]
        terminal = ep_offset + ep_len - 1
        nan_terminal = bool(np.isnan(action[terminal]).all())
        action = np.nan_to_num(action, nan=0.0)
        tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        frame_index = np.concatenate([np.arange(m) for m in ep_len]).astype(np.int64)
        episode_index = np.repeat(np.arange(len(ep_len)), ep_len).astype(np.int64)
        try:
            for ep, (o, m) in enumerate(tqdm(list(zip(ep_offset, ep_len)), desc="encode",
                                             unit="episode", disable=not progress,
                                             dynamic_ncols=True)):
                path = tmp / VIDEO_PATH.format(video_key=camera, chunk_index=ep // CHUNK_SIZE,
                                               file_index=ep % CHUNK_SIZE)
                _encode(path, pixels[int(o):int(o + m)], fps, codec, crf)
            _write_tables(pa, pq, tmp, ep_len, ep_offset, frame_index, episode_index, action,
                          lowdim, fps, camera,
                          task or (f"{world}: reach the goal frame" if world else "episode"))
            sample = np.random.default_rng(0).choice(n, size=min(n, 2000), replace=False)
            stats = {"action": _stats(action), camera: _image_stats(pixels, np.sort(sample))}
            for name, key in COLUMN_KEYS.items():
                if name in lowdim:
                    stats[key] = _stats(lowdim[name])
            for key, x in (("timestamp", frame_index / fps), ("frame_index", frame_index),
                           ("episode_index", episode_index),
                           ("index", np.arange(n)), ("task_index", np.zeros(n))):
                stats[key] = _stats(np.asarray(x, np.float64).reshape(-1, 1))
            features = {"action": _feature("float32", action.shape[1], "action")}
            for name, key in COLUMN_KEYS.items():
                if name in lowdim:
                    features[key] = _feature("float32", lowdim[name].shape[1], name)
            encoder, pix_fmt, _ = CODECS[codec]
            features[camera] = {
                "dtype": "video", "shape": [int(h), int(w), 3],
                "names": ["height", "width", "channels"],
                "info": {"video.height": int(h), "video.width": int(w),
                         "video.codec": {"libsvtav1": "av1", "libx264": "h264",
                                         "libx264rgb": "h264"}[encoder],
                         "video.pix_fmt": pix_fmt, "video.is_depth_map": False,
                         "video.fps": fps, "video.channels": 3, "has_audio": False,
                         "video.g": 2, "video.crf": crf}}
            features["timestamp"] = {"dtype": "float32", "shape": [1], "names": None}
            for key in DEFAULT_FEATURES[1:]:
                features[key] = {"dtype": "int64", "shape": [1], "names": None}
            info = {"codebase_version": VERSION, "robot_type": world or None,
                    "total_episodes": len(ep_len), "total_frames": n, "total_tasks": 1,
                    "chunks_size": CHUNK_SIZE, "data_files_size_in_mb": DATA_FILE_MB,
                    "video_files_size_in_mb": 200, "fps": fps,
                    "splits": {"train": f"0:{len(ep_len)}"}, "data_path": DATA_PATH,
                    "video_path": VIDEO_PATH, "features": features}
            meta = tmp / "meta"
            (meta / "info.json").write_text(json.dumps(info, indent=2))
            (meta / "stats.json").write_text(json.dumps(stats))
            (meta / "lewm.json").write_text(json.dumps({
                "lewm_version": __version__, "source": str(src), "attrs": attrs,
                "terminal_action": "nan" if nan_terminal else "kept",
                "codec": codec, "crf": crf}, indent=2))
            swap_in(tmp, out)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return {"path": str(out), "episodes": len(ep_len), "frames": n, "fps": fps,
            "codec": codec, "crf": crf}


def _feature(dtype: str, dim: int, name: str) -> dict:
    return {"dtype": dtype, "shape": [int(dim)], "names": [f"{name}_{i}" for i in range(dim)]}


def _write_tables(pa, pq, root: Path, ep_len, ep_offset, frame_index, episode_index,
                  action, lowdim, fps, camera, task) -> None:
    row_bytes = 4 * (action.shape[1] + sum(x.shape[1] for x in lowdim.values())) + 36
    per_file = max(1, (DATA_FILE_MB << 20) // row_bytes)
    # Files break at episode boundaries, each under the size lerobot writes.
    file_of_ep = (ep_offset // per_file).astype(np.int64)
    files = np.unique(file_of_ep)
    file_of_ep = np.searchsorted(files, file_of_ep)
    for k in range(len(files)):
        eps = np.flatnonzero(file_of_ep == k)
        lo, hi = int(ep_offset[eps[0]]), int(ep_offset[eps[-1]] + ep_len[eps[-1]])
        cols = {"action": _fixed_list(pa, action[lo:hi])}
        for name, key in COLUMN_KEYS.items():
            if name in lowdim:
                cols[key] = _fixed_list(pa, lowdim[name][lo:hi])
        cols.update({
            "timestamp": pa.array((frame_index[lo:hi] / fps).astype(np.float32)),
            "frame_index": pa.array(frame_index[lo:hi]),
            "episode_index": pa.array(episode_index[lo:hi]),
            "index": pa.array(np.arange(lo, hi, dtype=np.int64)),
            "task_index": pa.array(np.zeros(hi - lo, np.int64))})
        path = root / DATA_PATH.format(chunk_index=k // CHUNK_SIZE, file_index=k % CHUNK_SIZE)
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.table(cols), path)
    eps = np.arange(len(ep_len), dtype=np.int64)
    zeros = np.zeros(len(ep_len), np.int64)
    table = pa.table({
        "episode_index": pa.array(eps), "tasks": pa.array([[task]] * len(eps)),
        "length": pa.array(ep_len.astype(np.int64)),
        "data/chunk_index": pa.array(file_of_ep // CHUNK_SIZE),
        "data/file_index": pa.array(file_of_ep % CHUNK_SIZE),
        "dataset_from_index": pa.array(ep_offset.astype(np.int64)),
        "dataset_to_index": pa.array((ep_offset + ep_len).astype(np.int64)),
        f"videos/{camera}/chunk_index": pa.array(eps // CHUNK_SIZE),
        f"videos/{camera}/file_index": pa.array(eps % CHUNK_SIZE),
        f"videos/{camera}/from_timestamp": pa.array(np.zeros(len(eps))),
        f"videos/{camera}/to_timestamp": pa.array(ep_len / fps),
        "meta/episodes/chunk_index": pa.array(zeros),
        "meta/episodes/file_index": pa.array(zeros)})
    (root / EPISODES_PATH).parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, root / EPISODES_PATH)
    pq.write_table(_tasks_table(pa, [task]), root / "meta" / "tasks.parquet")


def square_frames(frames: np.ndarray, size: int) -> np.ndarray:
    """Frames (N, H, W, 3) uint8 centre-cropped to a square and resized to (size, size) with
    PIL's bilinear filter (antialiased when it shrinks, as the worlds' renderers resize): a
    robot camera's 480 x 640 made what a model's `image_size` expects, without stretching."""
    from PIL import Image

    h, w = frames.shape[1:3]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    crop = frames[:, top:top + side, left:left + side]
    if side == size:
        return np.ascontiguousarray(crop)
    return np.stack([np.asarray(Image.fromarray(f).resize((size, size), Image.BILINEAR))
                     for f in crop])


def read_lerobot(src, out, *, camera: str | None = None, size: int | None = None,
                 force: bool = False, progress: bool = True) -> dict:
    """Write LeRobot directory `src` (one camera) as an episode file `out` in lewm's HDF5
    layout (under a temporary name until complete); `size`: frames centre-cropped and
    resized to size x size (`square_frames`)."""
    from tqdm.auto import tqdm

    from lewm.data.config import COMPRESSIONS
    from lewm.data.hdf5 import EpisodeWriter

    if size is not None and not 8 <= size <= 1024:
        raise LewmError(f"--size {size}: must be between 8 and 1024 pixels")
    with LeRobotEpisodes(src, camera) as f:
        attrs = dict(f.attrs)
        if size is not None:
            h, w = f.pixels.shape[1:3]
            attrs["resized_from"] = f"{h}x{w}, centre-cropped to a square"
        compression = attrs.get("compression", "none")
        compression = compression if compression in COMPRESSIONS else "none"
        with EpisodeWriter(out, attrs, force=force, compression=compression) as w:
            for ep, (o, m) in enumerate(tqdm(list(zip(f.ep_offset, f.ep_len)), desc="decode",
                                             unit="episode", disable=not progress,
                                             dynamic_ncols=True)):
                pixels = f.pixels.episode(ep)
                episode = {"pixels": pixels if size is None else square_frames(pixels, size)}
                for name, col in f.columns.items():
                    episode[name] = col[o:o + m]
                w.add(episode)
        return {"path": str(out), "episodes": len(f.ep_len), "frames": int(f.ep_len.sum()),
                "camera": f.camera, "fps": f.fps,
                "image": (size, size) if size else tuple(f.pixels.shape[1:3])}
