"""Join episode files into one: collections made on several machines or with several seeds.

The episodes are copied in order, file by file. The files must agree on their columns (names,
per-row shapes and dtypes) and on the attributes that describe the data (world, image size,
policy, ...); attributes that legitimately differ, such as the seed, are recorded per source
in `merged_from` rather than kept from one file.
"""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np

from lewm.data.config import COMPRESSIONS
from lewm.data.hdf5 import INDEX, EpisodeWriter, open_episodes
from lewm.errors import LewmError

# Attributes that may differ between the sources: recorded per source, not kept.
PER_SOURCE = ("seed", "episodes", "episodes_solved", "lewm_version", "num_envs", "workers")


def merge(paths, out, force: bool = False) -> dict:
    """Write the episodes of `paths`, in order, to `out`; returns a summary."""
    paths = [Path(p) for p in paths]
    if len(paths) < 2:
        raise LewmError("merge needs at least two episode files")
    out = Path(out)
    for p in paths:
        if p.exists() and out.exists() and p.resolve() == out.resolve():
            raise LewmError(f"{out}: is one of the files being merged; choose another --out")
    files = []
    try:
        for p in paths:
            files.append(open_episodes(p))
        columns = _columns(paths, files)
        attrs = _attrs(paths, files)
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


def _columns(paths, files) -> list[str]:
    """The per-row columns, checked to match the first file's in name, shape and dtype."""
    def spec(f):
        return {name: (f[name].shape[1:], f[name].dtype) for name in f
                if name not in INDEX and isinstance(f[name], h5py.Dataset)}

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
                raise LewmError(f"{p}: attribute {key!r} is {_show(f.attrs[key])}, "
                                f"{paths[0]} has {_show(value)}")
    sources = []
    for p, f in zip(paths, files):
        source = {"path": str(p), "episodes": int(len(f["ep_len"]))}
        source.update({k: _show(f.attrs[k]) for k in PER_SOURCE
                       if k in f.attrs and k != "episodes"})
        sources.append(source)
    solved = [(float(f.attrs["episodes_solved"]), len(f["ep_len"])) for f in files
              if "episodes_solved" in f.attrs]
    if len(solved) == len(files):  # how often the policy reached its goal, over all episodes
        shared["episodes_solved"] = sum(s * n for s, n in solved) / sum(n for _, n in solved)
    shared["merged_from"] = json.dumps(sources)
    return shared


def _same(a, b) -> bool:
    return np.array_equal(np.asarray(a), np.asarray(b))


def _show(value):
    """An HDF5 attribute as a JSON-friendly value."""
    value = value.item() if isinstance(value, np.generic) else value
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value
