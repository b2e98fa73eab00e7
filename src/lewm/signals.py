"""Stopping long work cleanly: the signals that ask for it set a flag that the work reads at
its own safe points (between training steps, between collection steps)."""

from __future__ import annotations

import signal
import threading


class StopFlag:
    """Ctrl-C, and the SIGTERM or SIGHUP that schedulers, `timeout` and container stops send,
    set a flag that the loop reads between steps, so the checkpoint written on the way out is
    never of a half-applied optimizer step. A second signal interrupts at once."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

    def __init__(self):
        self.set = False
        self.previous = {}
        if threading.current_thread() is threading.main_thread():
            self.previous = {sig: signal.signal(sig, self._handle) for sig in self.SIGNALS}

    def _handle(self, signum, frame):
        if self.set:
            raise KeyboardInterrupt
        self.set = True

    def restore(self):
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)
