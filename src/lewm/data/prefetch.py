"""Training batches read ahead on a background thread, so the accelerator does not wait on
HDF5 reads, decompression and copies.

Batch `step` is a pure function of the step (`batch_indices`), so reading ahead changes
nothing about which clips a step sees: a run is the same with or without the thread.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator

import torch

_DONE = object()


class Prefetcher:
    """Iterates `make(step)` for step in `steps`, computed `depth` steps ahead on a thread.

    make: step -> tuple of CPU tensors; with `pin` they are copied to pinned memory, so that
    the caller's `.to(cuda, non_blocking=True)` overlaps the copy with compute. An exception
    in `make` is raised by the iteration, at the step that failed. `close()` (or leaving the
    `with` block) stops the thread early.
    """

    def __init__(self, make: Callable[[int], tuple], steps: range, depth: int = 2,
                 pin: bool = False):
        self.make, self.steps, self.pin = make, steps, pin
        self.queue: queue.Queue = queue.Queue(maxsize=max(1, depth))
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, name="lewm-prefetch", daemon=True)
        self.thread.start()

    def _run(self):
        try:
            for step in self.steps:
                if self.stopping.is_set():
                    return
                batch = self.make(step)
                if self.pin:
                    batch = tuple(t.pin_memory() for t in batch)
                self._put((step, batch))
        except BaseException as e:  # handed to the consumer, raised where it reads
            self._put((None, e))
            return
        self._put((None, _DONE))

    def _put(self, item):
        while not self.stopping.is_set():
            try:
                self.queue.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def __iter__(self) -> Iterator[tuple[int, tuple]]:
        while True:
            step, batch = self.queue.get()
            if step is None:
                if batch is _DONE:
                    return
                raise batch
            yield step, batch

    def close(self):
        self.stopping.set()
        self.thread.join(timeout=5)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def as_tensors(batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """A ClipDataset batch -> (pixels uint8 (B, T, H, W, 3), actions float (B, T, blk))."""
    return torch.from_numpy(batch["pixels"]), torch.from_numpy(batch["action"])
