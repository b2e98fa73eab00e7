"""A run directory: making it without losing anything, its metrics log, and stopping a run
cleanly on Ctrl-C."""

from __future__ import annotations

import json
import shutil
import signal
import threading
from pathlib import Path

from lewm.checkpoint import find_checkpoint
from lewm.errors import LewmError


class MetricsLog:
    """metrics.jsonl (always) and TensorBoard (when installed)."""

    def __init__(self, run_dir: Path, enabled: bool):
        self.enabled = enabled
        self.path = run_dir / "metrics.jsonl"
        self.tb = None
        if enabled:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(str(run_dir / "tensorboard"))
            except ImportError:  # TensorBoard is an optional extra: lewm[tensorboard]
                self.tb = None

    def write(self, split: str, step: int, values: dict) -> None:
        if not self.enabled:
            return
        with open(self.path, "a") as f:
            f.write(json.dumps({"split": split, "step": step, **values}) + "\n")
        if self.tb is not None:
            for k, v in values.items():
                self.tb.add_scalar(f"{split}/{k}", v, step)

    def close(self):
        if self.tb is not None:
            self.tb.close()


def prepare_run_dir(out, force: bool, resume: bool, resumable: bool = True) -> Path:
    """Create the run directory `out` (replacing a run there only with `force`). `resumable`:
    whether the error for an existing one may suggest `--resume` (not for `lewm demo`)."""
    out = Path(out)
    if resume:
        find_checkpoint(out)
        return out
    if out.exists():
        is_run = (out / "config.json").exists() or (out / "checkpoint").exists()
        if not force:
            hint = ", or --resume to continue its training" if resumable else ""
            raise LewmError(f"{out}: already exists (pass --force to replace it{hint})")
        if any(out.iterdir()) and not is_run:
            raise LewmError(f"{out}: exists and is not a lewm run directory; refusing to "
                            "replace it")
        shutil.rmtree(out)
    out.mkdir(parents=True)
    return out


class StopFlag:
    """Ctrl-C sets a flag that the loop reads between steps, so the checkpoint written on the
    way out is never of a half-applied optimizer step. A second Ctrl-C interrupts at once."""

    def __init__(self):
        self.set = False
        self.previous = None
        if threading.current_thread() is threading.main_thread():
            self.previous = signal.signal(signal.SIGINT, self._handle)

    def _handle(self, signum, frame):
        if self.set:
            raise KeyboardInterrupt
        self.set = True

    def restore(self):
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)
