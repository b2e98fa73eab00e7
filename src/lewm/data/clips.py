"""Training clips cut from episode files.

A clip is `clip_frames` frames taken every `frameskip` env steps; frame k's action block is the
`frameskip` raw actions that lead from it to frame k + 1, concatenated (frameskip * A values,
docs/design.md §1.3). Images stay uint8 until a batch is formed; actions are z-scored per
dimension with statistics fitted on the training episodes only.
"""

from __future__ import annotations

import functools
import os

import h5py
import numpy as np

from lewm.data.hdf5 import open_episodes
from lewm.errors import LewmError
from lewm.model.normalize import ZScore

LOWDIM = ("state", "proprio")


def split_episodes(n_episodes: int, val_fraction: float, seed: int):
    """Split episode indices into (train, val) by episode, never by clip (clips of one episode
    overlap, so a clip split leaks). At least one episode goes to each side when possible."""
    if not 0 <= val_fraction < 1:
        raise LewmError(f"validation fraction must be in [0, 1), got {val_fraction}")
    order = np.random.default_rng(seed).permutation(n_episodes)
    n_val = int(round(n_episodes * val_fraction))
    if val_fraction > 0 and n_episodes >= 2:
        n_val = min(max(n_val, 1), n_episodes - 1)
    return np.sort(order[n_val:]), np.sort(order[:n_val])


def held_out_split(data_meta: dict, n_episodes: int, seed: int):
    """(train, held-out) episodes of a run: the validation episodes its checkpoint recorded
    (`data_meta` is its config.json's "data" section), or, when none fit this file (an
    imported run, another dataset), a fresh 80/20 split seeded by `seed`."""
    val = np.asarray(data_meta.get("val_episodes") or [], dtype=np.int64)
    if len(val) == 0 or val.max() >= n_episodes:
        _, val = split_episodes(n_episodes, 0.2, seed)
    return np.setdiff1d(np.arange(n_episodes), val), val


def _memory_bytes() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 8 << 30


class EpisodeData:
    """The validated columns of an episode file. Pixels are read into memory when they take
    less than 40 % of RAM (or `in_memory=True`), otherwise read from disk clip by clip."""

    def __init__(self, path, columns=(), in_memory: bool | None = None,
                 camera: str | None = None):
        self.path = str(path)
        self.file = open_episodes(path, columns=tuple(columns), camera=camera)
        f = self.file
        self.ep_len = f["ep_len"][()].astype(np.int64)
        self.ep_offset = f["ep_offset"][()].astype(np.int64)
        self.action = f["action"][()].astype(np.float32)  # (N, A)
        self.lowdim = {name: f[name][()].astype(np.float32) for name in LOWDIM if name in f}
        self.attrs = dict(f.attrs)
        pixels = f["pixels"]
        if in_memory is None:
            in_memory = pixels.size < 0.4 * _memory_bytes()
        self.pixels = pixels[()] if in_memory else pixels  # (N, H, W, 3) uint8
        self.in_memory = in_memory
        # On disk with one frame per chunk (lewm's compressed files): a clip reads its frames
        # alone; otherwise the rows between them too (one contiguous read is faster than
        # h5py's strided selections, and a multi-frame chunk is decompressed whole anyway).
        self.frame_reads = not in_memory and (pixels.chunks or (0,))[0] == 1
        self.image_size = tuple(int(s) for s in pixels.shape[1:3])

    @property
    def num_episodes(self) -> int:
        return len(self.ep_len)

    @property
    def action_dim(self) -> int:
        return self.action.shape[1]

    def episode_rows(self, episodes) -> np.ndarray:
        """All row indices of the given episodes."""
        return np.concatenate([np.arange(o, o + n) for o, n in
                               zip(self.ep_offset[episodes], self.ep_len[episodes])])

    def sample_rows(self, episodes, n: int, rng: np.random.Generator) -> np.ndarray:
        """At most n distinct rows of the given episodes, drawn with `rng`, sorted (for
        HDF5 reads)."""
        rows = self.episode_rows(episodes)
        return np.sort(rng.choice(rows, size=min(n, len(rows)), replace=False))

    def reopen(self) -> None:
        """In a forked reader process: close the handle inherited from the parent and open
        the file again (the parent validated it), so that the process's HDF5 library state
        is its own; in-memory pixels need none."""
        if self.in_memory:
            return
        if hasattr(self.file, "reopen"):  # a LeRobot directory: decoders of its own
            self.file.reopen()
            return
        self.file.close()
        self.file = h5py.File(self.path, "r")
        self.pixels = self.file["pixels"]

    def close(self):
        self.file.close()


def fit_stats(data: EpisodeData, episodes) -> dict:
    """Per-dimension mean and std of the action and low-dimensional columns over `episodes`
    (terminal NaN actions excluded); a constant dimension gets std 1."""
    rows = data.episode_rows(np.asarray(episodes))
    stats = {}
    for name, col in {"action": data.action, **data.lowdim}.items():
        x = col[rows].astype(np.float64)
        x = x[np.isfinite(x).all(axis=1)]
        mean, std = x.mean(axis=0), x.std(axis=0)
        std = np.where(std < 1e-6, 1.0, std)
        stats[name] = {"mean": mean.tolist(), "std": std.tolist()}
    return stats


def clip_starts(ep_len: np.ndarray, clip_frames: int, frameskip: int) -> np.ndarray:
    """Clips of `clip_frames` frames every `frameskip` rows each episode of length `ep_len`
    starts: local starts s with s + span - 1 <= len - 2 for span = clip_frames * frameskip,
    i.e. its terminal NaN row is never used."""
    return np.maximum(np.asarray(ep_len) - clip_frames * frameskip, 0)


class ClipDataset:
    """Clips of `clip_frames` frames every `frameskip` steps from the given episodes.

    Item/batch fields: `pixels` (T, H, W, 3) uint8, `action` (T, frameskip * A) float32
    z-scored with `stats["action"]`, and the raw low-dimensional columns (T, d) present in
    the file. Clip starts are every row from which all T action blocks are real actions.
    """

    def __init__(self, data: EpisodeData, episodes, clip_frames: int, frameskip: int, stats: dict):
        if clip_frames < 1 or frameskip < 1:
            raise LewmError(f"clip_frames and frameskip must be >= 1, got {clip_frames}, "
                            f"{frameskip}")
        self.data, self.clip_frames, self.frameskip = data, clip_frames, frameskip
        span = clip_frames * frameskip  # rows covered by the T action blocks
        episodes = np.asarray(episodes, dtype=np.int64)
        counts = clip_starts(data.ep_len[episodes], clip_frames, frameskip)
        if counts.sum() == 0:
            raise LewmError(
                f"{data.path}: no episode is long enough for clips of {clip_frames} frames every "
                f"{frameskip} steps (need at least {span + 1} rows, longest is "
                f"{int(data.ep_len[episodes].max()) if len(episodes) else 0})"
            )
        self.starts = np.concatenate(
            [o + np.arange(c) for o, c in zip(data.ep_offset[episodes], counts)]
        )  # (num_clips,) absolute row of each clip's first frame
        self.action = np.nan_to_num(ZScore.of(stats).to_z(data.action))  # (N, A)
        self.frame_offsets = np.arange(clip_frames) * frameskip  # (T,)
        self.action_offsets = np.arange(span)  # (T * frameskip,)

    def __len__(self) -> int:
        return len(self.starts)

    def __getitem__(self, i: int) -> dict:
        return {k: v[0] for k, v in self.batch(np.asarray([i])).items()}

    def batch(self, indices) -> dict:
        """Stack the clips `indices` into arrays with a leading batch axis B."""
        starts = self.starts[np.asarray(indices)]  # (B,)
        B, T = len(starts), self.clip_frames
        frames = starts[:, None] + self.frame_offsets  # (B, T)
        if self.data.in_memory:
            pixels = self.data.pixels[frames]  # (B, T, H, W, 3)
        elif self.data.frame_reads:
            pixels = np.stack([self.data.pixels[r] for r in frames.ravel().tolist()])
            pixels = pixels.reshape(B, T, *pixels.shape[1:])
        else:
            # One contiguous read per clip, strided in memory: h5py's strided selections are
            # several times slower than reading the frames in between.
            stop = (T - 1) * self.frameskip + 1
            pixels = np.stack(
                [self.data.pixels[s : s + stop][:: self.frameskip] for s in starts]
            )
        rows = starts[:, None] + self.action_offsets  # (B, T * fs)
        action = self.action[rows].reshape(B, T, -1)  # (B, T, fs * A)
        out = {"pixels": pixels, "action": action}
        for name, col in self.data.lowdim.items():
            out[name] = col[frames]  # (B, T, d)
        return out


def batch_indices(num_clips: int, batch_size: int, seed: int, step: int) -> np.ndarray:
    """Clip indices of training batch `step`: epochs are seeded permutations without the last
    partial batch. Stateless in `step`, so a resumed run draws exactly the same batches."""
    if num_clips < batch_size:
        raise LewmError(f"the training split has {num_clips} clips, fewer than the batch size "
                        f"{batch_size}")
    per_epoch = num_clips // batch_size
    epoch, b = divmod(step, per_epoch)
    return _epoch_order(num_clips, seed, epoch)[b * batch_size : (b + 1) * batch_size]


@functools.lru_cache(maxsize=2)
def _epoch_order(num_clips: int, seed: int, epoch: int) -> np.ndarray:
    """The seeded permutation of an epoch, drawn once per epoch rather than once per step
    (millions of clips at the paper's scale)."""
    order = np.random.default_rng([seed, epoch]).permutation(num_clips)
    order.flags.writeable = False
    return order
