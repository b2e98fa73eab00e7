"""Training batches read ahead, so the accelerator does not wait on HDF5 reads,
decompression and copies: on a background thread (`Prefetcher`), or in worker processes
(`ProcessPrefetcher`) when one reader cannot keep up (h5py serialises reads across threads,
so only processes read in parallel; at 224 px one reads ~2,000 frames/s uncompressed and
~600 lzf-compressed, bench/results/compression_pusht_224px.json, where the paper model
trains at ~8,000-11,000 frames/s on an H200).

Batch `step` is a pure function of the step (`batch_indices`), so reading ahead changes
nothing about which clips a step sees: a run is the same with or without them.
"""

from __future__ import annotations

import multiprocessing
import queue
import signal
import threading
from collections.abc import Callable, Iterator

import torch

from lewm.errors import LewmError

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


class _StepBatches(torch.utils.data.Dataset):
    """Item i of a DataLoader over it: (steps[i], make(steps[i]))."""

    def __init__(self, make: Callable[[int], tuple], steps: range):
        self.make, self.steps = make, steps

    def __len__(self) -> int:
        return len(self.steps)

    def __getitem__(self, i: int):
        step = self.steps[i]
        return step, self.make(step)


class ProcessPrefetcher:
    """`Prefetcher` with `workers` forked processes: worker w computes batches w, w + workers,
    ... (`depth` each ahead), and the batches come back in step order through shared memory
    (torch's DataLoader machinery). Forked workers inherit `make` and what it reads from;
    `worker_init` runs first in each (e.g. `EpisodeData.reopen`: HDF5 handles must not be
    shared across a fork). Workers ignore SIGINT: the training loop decides when to stop."""

    def __init__(self, make: Callable[[int], tuple], steps: range, depth: int = 2,
                 pin: bool = False, workers: int = 2,
                 worker_init: Callable[[], None] | None = None):
        if "fork" not in multiprocessing.get_all_start_methods():
            raise LewmError("workers > 0 needs processes started by fork (Linux); use workers=0")

        def init(_):
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            if worker_init is not None:
                worker_init()

        loader = torch.utils.data.DataLoader(
            _StepBatches(make, steps), batch_size=None, num_workers=workers,
            prefetch_factor=max(1, depth), pin_memory=pin, worker_init_fn=init,
            multiprocessing_context="fork")
        self._it = iter(loader)

    def __iter__(self) -> Iterator[tuple[int, tuple]]:
        while self._it is not None:
            try:
                step, batch = next(self._it)
            except StopIteration:
                return
            yield int(step), tuple(batch)

    def close(self):
        it, self._it = self._it, None
        if it is not None:
            it._shutdown_workers()  # joins the workers now, not at garbage collection

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def as_tensors(batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """A ClipDataset batch -> (pixels uint8 (B, T, H, W, 3), actions float (B, T, blk))."""
    return torch.from_numpy(batch["pixels"]), torch.from_numpy(batch["action"])
