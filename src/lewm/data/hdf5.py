"""Episode files in the authors' HDF5 layout (docs/design.md §3).

One dataset per column whose first axis runs over every step of every episode; `ep_len` and
`ep_offset` index the episodes; row t holds the observation at t and the action taken from
it, so each episode's last action is NaN. Files are written under a temporary name and
renamed when complete, so a crash never leaves a file that looks finished.
"""

from __future__ import annotations

import os
import shutil
import signal
import threading
from pathlib import Path

import h5py
import numpy as np

from lewm import __version__
from lewm.data.config import COMPRESSIONS
from lewm.errors import LewmError
from lewm.io import check_output

REQUIRED = ("pixels", "action", "ep_len", "ep_offset")
INDEX = ("ep_len", "ep_offset")
# HDF5 filter ids of the compressors the authors' files use (hdf5plugin registers them).
PLUGIN_FILTERS = {32001: "blosc", 32026: "blosc2", 32004: "lz4", 32015: "zstd",
                  307: "bzip2"}


def compression_args(name: str) -> dict:
    """h5py create_dataset keywords of a compression name (images and other >= 2-D columns)."""
    if name == "none":
        return {}
    if name in ("lzf", "gzip"):
        return {"compression": name}
    if name == "blosc":  # the authors' setting: Blosc with lz4, level 5, byte shuffle
        hdf5plugin = _hdf5plugin(f"--compression {name}")
        return dict(hdf5plugin.Blosc(cname="lz4", clevel=5, shuffle=hdf5plugin.Blosc.SHUFFLE))
    raise LewmError(f"unknown compression {name!r} (choose from {', '.join(COMPRESSIONS)})")


def _hdf5plugin(what: str):
    try:
        import hdf5plugin
    except ImportError:
        raise LewmError(f"{what} needs hdf5plugin: pip install 'lewm[authors]'") from None
    return hdf5plugin


class EpisodeWriter:
    """Appends whole episodes to an HDF5 file written under a temporary name.

    Use as a context manager: the file appears at `path` only when the block finishes
    without error; on error the temporary file is removed and `path` is untouched.
    """

    def __init__(self, path, attrs: dict, force: bool = False, chunk_rows: int = 16,
                 compression: str = "none"):
        self.compress = compression_args(compression)
        self.path = check_output(path, force)
        self.tmp = self.path.with_name(f".{self.path.name}.tmp-{os.getpid()}")
        self.attrs = attrs
        self.chunk_rows = chunk_rows
        self.ep_len: list[int] = []
        self.rows = 0

    def __enter__(self):
        for stale in self.path.parent.glob(f".{self.path.name}.tmp-*"):
            pid = stale.name.rsplit("-", 1)[-1]
            if pid.isdigit() and not _alive(int(pid)):
                stale.unlink()  # left by a writer that was killed (SIGKILL, power loss)
                print(f"removed {stale}, left by a collection that was killed", flush=True)
        # SIGTERM and SIGHUP (schedulers, `timeout`, closed terminals) end the write the way
        # Ctrl-C does, so the temporary file is removed rather than left behind.
        self.previous = {}
        if threading.current_thread() is threading.main_thread():
            self.previous = {sig: signal.signal(sig, _interrupt)
                             for sig in (signal.SIGTERM, signal.SIGHUP)}
        self.file = h5py.File(self.tmp, "w")
        return self

    def add(self, episode: dict[str, np.ndarray]) -> None:
        """Append one episode: a dict of per-step columns with equal first dimension.

        The free space is checked first: HDF5 fails badly on a full disk (errors while
        freeing its objects, then a segmentation fault), so the write stops before that,
        with the temporary file removed and a one-line error."""
        n = len(episode["action"])
        raw = sum(np.asarray(v).nbytes for v in episode.values())
        need = (raw if not self.compress else raw // 20) + (1 << 20)  # + metadata slack
        free = shutil.disk_usage(self.tmp.parent).free
        if free < need:
            raise LewmError(f"{self.tmp.parent}: no space left for {self.path.name} ({free >> 20} "
                            f"MB free, the next episode needs ~{need >> 20} MB); nothing was "
                            "written")
        for name, value in episode.items():
            value = np.asarray(value)
            if name not in self.file:
                compress = self.compress if value.ndim >= 3 else {}  # images, not vectors
                # A training clip uses every frameskip-th frame: with one frame per compressed
                # chunk, reading it decompresses those frames alone, not the 16-32 around them
                # (6.4x the frames/s at 224 px, lzf; bench/results/loader_throughput_cpu.json).
                rows = 1 if compress else self.chunk_rows
                self.file.create_dataset(
                    name,
                    shape=(0, *value.shape[1:]),
                    maxshape=(None, *value.shape[1:]),
                    dtype=value.dtype,
                    chunks=(rows, *value.shape[1:]),
                    **compress,
                )
            ds = self.file[name]
            ds.resize(self.rows + n, axis=0)
            ds[self.rows : self.rows + n] = value
        self.ep_len.append(n)
        self.rows += n

    def __exit__(self, exc_type, exc, tb):
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)
        try:
            if exc_type is None:
                ep_len = np.asarray(self.ep_len, dtype=np.int64)
                self.file.create_dataset("ep_len", data=ep_len)
                self.file.create_dataset("ep_offset", data=np.cumsum(ep_len) - ep_len)
                for key, value in {**self.attrs, "lewm_version": __version__}.items():
                    self.file.attrs[key] = value
            self.file.close()
            if exc_type is None:
                os.replace(self.tmp, self.path)
        finally:
            if self.tmp.exists():
                self.tmp.unlink()
        return False


def _interrupt(signum, frame):
    raise KeyboardInterrupt(f"stopped by signal {signum}")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def json_attr(value):
    """An HDF5 attribute as a JSON-friendly value."""
    value = value.item() if isinstance(value, np.generic) else value
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value


def check_world(path, attrs, world: str, image_size: int | None = None,
                frames: int | None = None) -> None:
    """Refuse an episode file of another world than the model's, or (given both) of other
    image sizes than its training data's (files that do not say which world they hold, such
    as some of the authors', are taken as they come)."""
    held = attrs.get("world")
    held = held.decode() if isinstance(held, bytes) else held
    if held and str(held) != world:
        raise LewmError(f"{path}: holds {held} episodes, but this run is a {world} model")
    if image_size and frames and image_size != frames:
        raise LewmError(f"{path}: holds {frames} px frames, but this run was trained on "
                        f"{image_size} px")


def open_episodes(path, columns=("pixels", "action"), camera: str | None = None):
    """Open an episode file for reading after checking it is complete and consistent.

    Every problem becomes a one-line `LewmError` naming the file: not there, not HDF5,
    truncated, a missing column, columns of different lengths, episodes that do not tile
    the rows, non-finite actions outside the terminal rows, or images of the wrong shape.
    A LeRobot dataset directory opens as the same interface (lewm.data.lerobot; `camera`
    picks its video feature when it has several).
    """
    path = Path(path)
    if not path.exists():
        raise LewmError(f"{path}: no such file")
    if path.is_dir():
        from lewm.data.lerobot import LeRobotEpisodes, is_lerobot

        if not is_lerobot(path) and not (path / "meta").is_dir():
            raise LewmError(f"{path}: is a directory, not an HDF5 file or a LeRobot dataset "
                            "(no meta/info.json)")
        f = LeRobotEpisodes(path, camera)
        for name in columns:
            if name not in f:
                f.close()
                raise LewmError(f"{path}: missing column {name!r} (has {sorted(f)})")
        return f
    try:
        is_hdf5 = h5py.is_hdf5(path)
    except OSError as e:
        raise LewmError(f"{path}: cannot be read ({e})") from None
    if not is_hdf5:
        raise LewmError(f"{path}: not an HDF5 file")
    try:
        f = h5py.File(path, "r")
    except OSError:
        raise LewmError(f"{path}: cannot be opened (truncated or partially written?)") from None
    try:
        _check_filters(path, f)
        _validate(path, f, tuple(dict.fromkeys((*REQUIRED, *columns))))
    except LewmError:
        f.close()
        raise
    except (OSError, KeyError, ValueError) as e:
        f.close()
        raise LewmError(f"{path}: cannot be read (truncated or corrupt?): {e}") from None
    return f


def _check_filters(path, f: h5py.File) -> None:
    """Every column's compression filter can be decoded here; the authors' files compress
    images with Blosc, which h5py reads once hdf5plugin has registered it."""
    for name, ds in f.items():
        if not isinstance(ds, h5py.Dataset):
            continue
        plist = ds.id.get_create_plist()
        for i in range(plist.get_nfilters()):
            code = plist.get_filter(i)[0]
            if h5py.h5z.filter_avail(code):
                continue
            label = PLUGIN_FILTERS.get(code, f"filter {code}")
            if code in PLUGIN_FILTERS:
                _hdf5plugin(f"{path}: column {name!r} is compressed with {label}, which")
                if h5py.h5z.filter_avail(code):
                    continue
            raise LewmError(f"{path}: column {name!r} uses HDF5 {label}, which this "
                            "installation cannot decode")


def _validate(path, f: h5py.File, required) -> None:
    for name in required:
        if name not in f:
            raise LewmError(f"{path}: missing column {name!r} (has {sorted(f.keys())})")
        if not isinstance(f[name], h5py.Dataset):
            raise LewmError(f"{path}: {name!r} is a group, not a column")
    ep_len = f["ep_len"][()].astype(np.int64)
    ep_offset = f["ep_offset"][()].astype(np.int64)
    if ep_len.ndim != 1 or ep_len.shape != ep_offset.shape or len(ep_len) == 0:
        raise LewmError(
            f"{path}: ep_len {ep_len.shape} and ep_offset {ep_offset.shape} must be equal-length "
            "non-empty vectors"
        )
    steps = [name for name in f if name not in INDEX and isinstance(f[name], h5py.Dataset)]
    rows = len(f["action"])
    for name in steps:
        if len(f[name]) != rows:
            raise LewmError(
                f"{path}: column {name!r} has {len(f[name])} rows but 'action' has {rows}"
            )
    expected = np.concatenate([[0], np.cumsum(ep_len)[:-1]])
    if np.any(ep_len < 1) or not np.array_equal(ep_offset, expected) or ep_len.sum() != rows:
        raise LewmError(
            f"{path}: ep_offset/ep_len do not tile the {rows} rows "
            f"(lengths sum to {ep_len.sum()}, offsets must be the running sum of lengths)"
        )
    pixels = f["pixels"]
    if pixels.dtype != np.uint8 or pixels.ndim != 4 or pixels.shape[-1] != 3:
        raise LewmError(
            f"{path}: 'pixels' must be uint8 (N, H, W, 3), got {pixels.dtype} {pixels.shape}"
        )
    action = f["action"][()]
    if action.ndim != 2:
        raise LewmError(f"{path}: 'action' must be (N, A), got {action.shape}")
    bad = ~np.isfinite(action).all(axis=1)
    bad[ep_offset + ep_len - 1] = False  # the terminal row's action is NaN by convention
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise LewmError(
            f"{path}: non-finite action at row {row} ({int(bad.sum())} rows), "
            "only each episode's last row may be NaN"
        )
    # Touch the last row of every column: a truncated file fails here rather than mid-training.
    for name in steps:
        f[name][rows - 1]


def describe(path) -> str:
    """A human-readable summary of an episode file (for `lewm info`)."""
    with open_episodes(path) as f:
        ep_len = f["ep_len"][()]
        h, w = f["pixels"].shape[1:3]
        lines = [
            f"{path}",
            f"  episodes  {len(ep_len)}  (length min {ep_len.min()}, mean {ep_len.mean():.1f}, "
            f"max {ep_len.max()})",
            f"  steps     {int(ep_len.sum())}",
            f"  image     {h} x {w}",
            "  columns",
        ]
        for name in sorted(f):
            ds = f[name]
            lines.append(f"    {name:<12} {str(tuple(ds.shape)):<22} {ds.dtype}")
        if f.attrs:
            lines.append("  attributes")
            for key in sorted(f.attrs):
                lines.append(f"    {key:<12} {f.attrs[key]}")
    return "\n".join(lines)
