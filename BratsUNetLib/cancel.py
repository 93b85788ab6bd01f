"""Cooperative cancellation: long work checks a :class:`CancelToken` between steps and stops cleanly.

The command line sets the token from SIGINT/SIGTERM (:func:`stop_on_signals`); other callers (the Slicer
worker, tests) call :meth:`CancelToken.cancel` themselves. Handlers are installed only for the duration of the
``with`` block and restored afterwards, so importing the library never changes a process's signal handling.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
import time
from collections.abc import Iterator

# Signals within this many seconds of the first one are the same request.
REPEAT_SECONDS = 2.0


class CancelToken:
    """A thread-safe flag: ``cancel()`` asks the work to stop, ``cancelled`` tells the work to stop."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self.reason = ""

    def cancel(self, reason: str = "cancelled") -> None:
        self.reason = reason
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()


@contextlib.contextmanager
def stop_on_signals(token: CancelToken, notice: str) -> Iterator[CancelToken]:
    """Within the block, the first SIGINT/SIGTERM sets ``token`` and prints ``notice``; a later SIGINT stops at once.

    Outside the main thread signals cannot be handled, so the block then only yields the token.
    """
    if threading.current_thread() is not threading.main_thread():
        yield token
        return
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}

    def handler(signum: int, frame: object) -> None:
        if not token.cancelled:
            token.cancel(signal.Signals(signum).name)
            first_signal[0] = time.monotonic()
            print(notice, file=sys.stderr, flush=True)
        elif signum == signal.SIGINT and time.monotonic() - first_signal[0] > REPEAT_SECONDS:
            # A second Ctrl-C is an impatient user: stop at once. (Signals arriving together, e.g. from the
            # terminal and again from torchrun forwarding it, count as one.)
            raise KeyboardInterrupt

    first_signal = [0.0]

    for sig in previous:
        signal.signal(sig, handler)
    try:
        yield token
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
