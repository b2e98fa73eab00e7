"""The actor's training pairs, by hindsight: a frame, the frame one block before it, and a
later frame of the same episode as its goal, with the action block the data took next as
the target. Every row's embedding is computed once and cached in the run's actor folder."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from lewm.io import atomic_path, write_json
from lewm.model.embed import embed_frames

CHUNK = 2048  # frames read and encoded at a time


def cached_embeddings(model, data, cache: Path, model_sha256: str | None,
                      progress: bool = True) -> torch.Tensor:
    """(N, D) float32 embeddings of every row of `data` (an EpisodeData), read from `cache`
    (.npy, with its key beside it in .json) when they were made by the same model from the
    same file, else computed and written there."""
    key = {"model_sha256": model_sha256, "data": str(Path(data.path).resolve()),
           "rows": int(len(data.action)), "embed_dim": int(model.cfg.embed_dim)}
    key_path = cache.with_suffix(".json")
    if model_sha256 is not None and cache.exists() and key_path.exists():
        try:
            if json.loads(key_path.read_text()) == key:
                emb = np.load(cache)
                if emb.shape == (key["rows"], key["embed_dim"]):
                    return torch.from_numpy(emb)
        except (OSError, ValueError):
            pass  # unreadable: made again below
    from tqdm.auto import tqdm

    n, parts = len(data.action), []
    bar = tqdm(total=n, desc="embed", unit="frame", disable=not progress, dynamic_ncols=True,
               mininterval=1.0)
    for lo in range(0, n, CHUNK):
        chunk = np.asarray(data.pixels[lo : lo + CHUNK])
        parts.append(embed_frames(model, chunk).cpu().numpy().astype(np.float32))
        bar.update(len(chunk))
    bar.close()
    emb = np.concatenate(parts)
    with atomic_path(cache) as tmp:
        with open(tmp, "wb") as fh:
            np.save(fh, emb)
    write_json(key_path, key)
    return torch.from_numpy(emb)


class HindsightPairs:
    """Draws (frame, previous frame, goal) rows among `episodes` of a file with `ep_offset`
    and `ep_len`: the frame any row whose next `frameskip` actions exist, the goal `d` rows
    later with d uniform in [frameskip, max_offset] and within the episode, the previous frame
    `frameskip` rows earlier (the frame itself at the episode's start). No pair crosses an
    episode boundary."""

    def __init__(self, ep_offset, ep_len, episodes, frameskip: int, max_offset: int):
        self.fs, self.max_offset = int(frameskip), max(int(max_offset), int(frameskip))
        starts, firsts, lasts = [], [], []
        for e in np.asarray(episodes, dtype=np.int64):
            first, length = int(ep_offset[e]), int(ep_len[e])
            # the last row has no action: a block from t needs rows t .. t + fs - 1 <= L - 2
            count = length - self.fs
            if count <= 0:
                continue
            starts.append(first + np.arange(count))
            firsts.append(np.full(count, first))
            lasts.append(np.full(count, first + length - 1))
        if not starts:
            raise ValueError(f"no episode is longer than {self.fs} steps")
        self.t, self.first, self.last = map(np.concatenate, (starts, firsts, lasts))

    def __len__(self) -> int:
        return len(self.t)

    def draw(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(t, prev, goal) row indices, (n,) each."""
        i = rng.integers(len(self.t), size=n)
        t, first, last = self.t[i], self.first[i], self.last[i]
        d = rng.integers(self.fs, np.minimum(self.max_offset, last - t) + 1)
        prev = np.where(t - self.fs >= first, t - self.fs, t)
        return t, prev, t + d


def action_blocks(actions: np.ndarray, t: np.ndarray, frameskip: int) -> np.ndarray:
    """(n, frameskip * A) the raw actions of rows t .. t + frameskip - 1, in time order."""
    rows = t[:, None] + np.arange(frameskip)[None]
    return actions[rows].reshape(len(t), -1)
