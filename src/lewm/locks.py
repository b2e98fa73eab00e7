"""One writer per output: an advisory lock (flock) on a dataset or a run directory.

The operating system releases a lock when its process dies, so a crash never leaves a stale
lock behind; a second writer gets one line naming the output and the holder's pid.
"""

from __future__ import annotations

import fcntl
import os
from contextlib import contextmanager
from pathlib import Path

from lewm.errors import LewmError


def lock_file(output: Path, beside: bool = False) -> Path:
    """Where the lock of `output` lives: inside a run directory, beside a file (or beside a
    directory that is replaced whole, `beside`)."""
    output = Path(output)
    if output.is_dir() and not beside:
        return output / ".lewm.lock"
    return output.with_name(f".{output.name}.lock")


@contextmanager
def exclusive(output, what: str = "written", beside: bool = False):
    """Hold the write lock of `output` (a file, or a directory that exists) for the block."""
    path = lock_file(output, beside)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            raise LewmError(f"{output}: being {what} by another lewm process (pid {holder}); "
                            "wait for it or stop it") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the lock
