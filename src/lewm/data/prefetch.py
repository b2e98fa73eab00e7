"""Training batches read ahead, so the accelerator does not wait on HDF5 reads,
decompression and copies: on a background thread (`Prefetcher`), or in worker processes
(`ProcessPrefetcher`) when one reader cannot keep up (h5py serialises reads across threads,
so only processes read in parallel; bench/results/loader_throughput_*.json has what one
reader delivers at 224 px, against the ~8,000-11,000 frames/s the paper model trains at on
an H200).

Batch `step` is a pure function of the step (`batch_indices`), so reading ahead changes
nothing about which clips a step sees: a run is the same with or without them.
"""

from __future__ import annotations

import queue
import signal
import sys
import threading
from collections.abc import Callable, Iterator

import torch

from lewm.errors import LewmError

_DONE = object()


class _Closing:
    """`with` closes it (stopping its readers), also when left before the end."""

    def close(self):
        raise NotImplementedError

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class Prefetcher(_Closing):
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


class _StepBatches(torch.utils.data.Dataset):
    """Item i of a DataLoader over it: (steps[i], make(steps[i])), or (steps[i], the exception
    make raised): handed back as a value, so the consumer raises the original (its type and
    one-line message), not the DataLoader's re-wrapped copy with the worker's traceback."""

    def __init__(self, make: Callable[[int], tuple], steps: range):
        self.make, self.steps = make, steps

    def __len__(self) -> int:
        return len(self.steps)

    def __getitem__(self, i: int):
        step = self.steps[i]
        try:
            return step, self.make(step)
        except Exception as e:  # noqa: BLE001  (raised again by the consumer)
            return step, e


class ProcessPrefetcher(_Closing):
    """`Prefetcher` with `workers` forked processes: worker w computes batches w, w + workers,
    ... (`depth` each ahead), and the batches come back in step order through shared memory
    (torch's DataLoader machinery; 2 x workers batches in /dev/shm at a time, ~80 MB each at
    the paper's 224 px batch). Forked workers inherit `make` and what it reads from;
    `worker_init` runs first in each (e.g. `EpisodeData.reopen`). Workers ignore
    `ignore_signals` (training passes the ones that stop it: the training loop decides when
    to stop)."""

    def __init__(self, make: Callable[[int], tuple], steps: range, depth: int = 2,
                 pin: bool = False, workers: int = 2,
                 worker_init: Callable[[], None] | None = None, ignore_signals=()):
        if not sys.platform.startswith("linux"):
            raise LewmError(f"workers={workers}: reader processes are forked, which is safe on "
                            f"Linux only, not {sys.platform}; use workers=0")

        def init(_):
            for sig in ignore_signals:
                signal.signal(sig, signal.SIG_IGN)
            if worker_init is not None:
                worker_init()

        loader = torch.utils.data.DataLoader(
            _StepBatches(make, steps), batch_size=None, num_workers=workers,
            prefetch_factor=max(1, depth), pin_memory=pin, worker_init_fn=init,
            multiprocessing_context="fork",
            # The workers' seeds come from this generator, not torch's global one, which
            # dropout on a CPU draws from: with it, a run is the same with or without workers.
            generator=torch.Generator())
        self._it = iter(loader)

    def __iter__(self) -> Iterator[tuple[int, tuple]]:
        # Workers are shut down as soon as the batches end or one fails, not at garbage
        # collection: a loader left alive would be inherited by the next one's forked workers.
        while self._it is not None:
            try:
                step, batch = next(self._it)
            except StopIteration:
                self.close()
                return
            if isinstance(batch, Exception):
                self.close()
                raise batch
            yield int(step), tuple(batch)

    def close(self):
        it, self._it = self._it, None
        # DataLoader's own (private) shutdown joins the workers now; without it, they go when
        # the iterator is collected.
        shutdown = getattr(it, "_shutdown_workers", None)
        if shutdown is not None:
            shutdown()


def prefetcher(make: Callable[[int], tuple], steps: range, depth: int = 2, pin: bool = False,
               workers: int = 0, worker_init: Callable[[], None] | None = None,
               ignore_signals=()):
    """A `Prefetcher` (workers=0: one thread) or a `ProcessPrefetcher` (workers > 0, which
    ignore `ignore_signals`)."""
    if workers:
        return ProcessPrefetcher(make, steps, depth, pin, workers, worker_init, ignore_signals)
    return Prefetcher(make, steps, depth, pin)


def as_tensors(batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """A ClipDataset batch -> (pixels uint8 (B, T, H, W, 3), actions float (B, T, blk))."""
    return torch.from_numpy(batch["pixels"]), torch.from_numpy(batch["action"])
