"""Join episode files into one: collections made on several machines or with several seeds.

The episodes are copied in order, file by file. The files must agree on their columns (names,
per-row shapes and dtypes) and on the attributes that describe the data (world, image size,
policy, ...); attributes that legitimately differ, such as the seed, are recorded per source
in `merged_from` rather than kept from one file.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from lewm.data.config import COMPRESSIONS
from lewm.data.hdf5 import INDEX, EpisodeWriter, json_attr, open_episodes
from lewm.errors import LewmError
from lewm.locks import exclusive

# Attributes that may differ between the sources: recorded per source, not kept.
# "compression" too: the images are decompressed on reading, and the merged file is written
# with the first file's.
PER_SOURCE = ("seed", "episodes", "episodes_solved", "lewm_version", "num_envs", "workers",
              "compression")


def merge(paths, out, force: bool = False) -> dict:
    """Write the episodes of `paths`, in order, to `out`; returns a summary."""
    paths = [Path(p) for p in paths]
    if len(paths) < 2:
        raise LewmError("merge needs at least two episode files")
    out = Path(out)
    for p in paths:
        if p.exists() and out.exists() and p.resolve() == out.resolve():
            raise LewmError(f"{out}: is one of the files being merged; choose another --out")
    out.parent.mkdir(parents=True, exist_ok=True)
    with exclusive(out):
        return _merge(paths, out, force)


def _merge(paths, out: Path, force: bool) -> dict:
    files = []
    try:
        for p in paths:
            files.append(open_episodes(p))
        columns = _columns(paths, files)
        attrs = _attrs(paths, files)
        _refuse_repeats(paths, files)
        compression = str(files[0].attrs.get("compression", "none"))
        if compression not in COMPRESSIONS:
            compression = "none"
        episodes = rows = 0
        with EpisodeWriter(out, attrs, force=force, compression=compression) as writer:
            for f in files:
                for offset, length in zip(f["ep_offset"][()], f["ep_len"][()]):
                    rows_of = slice(int(offset), int(offset + length))
                    writer.add({name: f[name][rows_of] for name in columns})
                    episodes += 1
                    rows += int(length)
            writer.attrs["episodes"] = episodes
    finally:
        for f in files:
            f.close()
    return {"path": str(out), "episodes": episodes, "rows": rows, "sources": len(paths)}


def _refuse_repeats(paths, files) -> None:
    """Refuse an episode that appears twice (the same file given twice, a copy of it, or
    collections that overlap): the episode-level train/validation split would then hold
    copies of one episode on both sides. An episode is known by its length and its first
    frame and action."""
    seen = {}
    for p, f in zip(paths, files):
        for e, (offset, length) in enumerate(zip(f["ep_offset"][()], f["ep_len"][()])):
            row = int(offset)
            key = hashlib.sha1(np.ascontiguousarray(f["pixels"][row]).tobytes()
                               + np.nan_to_num(np.asarray(f["action"][row])).tobytes()
                               + int(length).to_bytes(8, "little")).hexdigest()
            if key in seen:
                q, first = seen[key]
                raise LewmError(f"{p}: episode {e} is episode {first} of {q} again; merging "
                                "it twice would put one episode on both sides of the "
                                "validation split")
            seen[key] = (p, e)


def _columns(paths, files) -> list[str]:
    """The per-row columns, checked to match the first file's in name, shape and dtype."""
    def spec(f):
        return {name: (f[name].shape[1:], f[name].dtype) for name in f
                if name not in INDEX and hasattr(f[name], "shape")}  # a Dataset, not a Group

    first = spec(files[0])
    for p, f in zip(paths[1:], files[1:]):
        other = spec(f)
        if set(other) != set(first):
            raise LewmError(f"{p}: columns {sorted(other)} differ from {paths[0]}'s "
                            f"{sorted(first)}")
        for name, (shape, dtype) in first.items():
            if other[name] != (shape, dtype):
                raise LewmError(f"{p}: column {name!r} is {other[name][1]} {other[name][0]} "
                                f"per row, {paths[0]} has {dtype} {shape}")
    return list(first)


def _attrs(paths, files) -> dict:
    """The first file's attributes, each checked against the others' (PER_SOURCE excepted),
    with `merged_from` listing each source's path and PER_SOURCE values."""
    shared = {k: v for k, v in files[0].attrs.items() if k not in PER_SOURCE}
    for p, f in zip(paths[1:], files[1:]):
        for key, value in shared.items():
            if key in f.attrs and not _same(f.attrs[key], value):
                raise LewmError(f"{p}: attribute {key!r} is {json_attr(f.attrs[key])}, "
                                f"{paths[0]} has {json_attr(value)}")
    sources = []
    for p, f in zip(paths, files):
        source = {"path": str(p), "episodes": int(len(f["ep_len"]))}
        source.update({k: json_attr(f.attrs[k]) for k in PER_SOURCE
                       if k in f.attrs and k != "episodes"})
        sources.append(source)
    solved = [(float(f.attrs["episodes_solved"]), len(f["ep_len"])) for f in files
              if "episodes_solved" in f.attrs]
    if len(solved) == len(files):  # how often the policy reached its goal, over all episodes
        shared["episodes_solved"] = sum(s * n for s, n in solved) / sum(n for _, n in solved)
    shared["merged_from"] = json.dumps(sources)
    if "compression" in files[0].attrs:
        shared["compression"] = files[0].attrs["compression"]
    return shared


def _same(a, b) -> bool:
    return np.array_equal(np.asarray(a), np.asarray(b))

