"""Writes that never leave a half-made file: write to a temporary name, rename when complete."""

from __future__ import annotations

import json
import os
from contextlib import contextmanager
from pathlib import Path

from lewm.errors import STORAGE_ERRNOS, LewmError


def refuse_overlap(out, inputs, flag: str = "--out", holding: bool = True) -> None:
    """Refuse an output that is one of the inputs, lies inside one, or (`holding`: for an
    output replaced whole) holds one: writing it would replace or remove what the command
    reads (e.g. `lewm import SRC --out SRC`)."""
    o = Path(out).resolve()
    for given in inputs:
        if given is None:
            continue
        i = Path(given).resolve()
        if o == i or i in o.parents or (holding and o in i.parents):
            where = ("is" if o == i else "lies inside" if i in o.parents else "holds")
            raise LewmError(f"{out}: {where} the input {given}; choose another {flag}")


def check_output(path, force: bool) -> Path:
    """Refuse to replace an existing output unless `force`; make the parent directory."""
    path = Path(path)
    if path.exists() and not force:
        raise LewmError(f"{path}: already exists (pass --force to replace it)")
    if path.exists() and path.is_dir():
        raise LewmError(f"{path}: is a directory, not a file")
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


@contextmanager
def atomic_path(path):
    """Yield a temporary path beside `path`; on success it is renamed to `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        yield tmp
        os.replace(tmp, path)
    except OSError as e:
        if e.errno in STORAGE_ERRNOS:
            # Name the file the user asked for, not the temporary one (which goes below).
            raise LewmError(f"{path}: not written ({e.strerror}); any earlier {path.name} is "
                            "unchanged") from None
        raise
    finally:
        if tmp.exists():
            tmp.unlink()


def read_json(path, what: str):
    """The JSON document at `path`; a missing or unreadable one is a one-line error calling
    it `what` (a manifest, a goal file, an evaluation)."""
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise LewmError(f"{path}: no such {what}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise LewmError(f"{path}: not a JSON {what} ({e})") from None


def write_json(path, obj) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, default=_jsonable) + "\n")


def _jsonable(x):
    if hasattr(x, "tolist"):
        return x.tolist()
    if isinstance(x, Path):
        return str(x)
    raise TypeError(f"cannot write {type(x).__name__} to JSON")


def write_gif(frames, path, fps: int = 10, scale: int = 1) -> None:
    """Frames (T, H, W, 3) uint8 to an animated GIF, optionally upscaled by `scale`."""
    from PIL import Image

    images = [Image.fromarray(f) for f in frames]
    if scale > 1:
        images = [im.resize((im.width * scale, im.height * scale), Image.NEAREST) for im in images]
    with atomic_path(path) as tmp:
        images[0].save(tmp, format="GIF", save_all=True, append_images=images[1:],
                       duration=int(1000 / fps), loop=0)
