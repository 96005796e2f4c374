"""Progress reports and cancellation of long calls (Save.commit, Load.execute, Reader.verify).

The library calls back on the thread that made the call: once at the start (done 0), at most
every 50 ms, and once with done == total. The callable returning False cancels the call, which
then raises CanceledError; an exception raised by the callable cancels it too and is raised again
once the library has stopped. On the main thread, Ctrl-C during Save.commit, Load.execute or a
conversion (with or without a callable) cancels it and raises KeyboardInterrupt. A canceled save
commits nothing: the checkpoint already in the directory stays as it was.
"""

from __future__ import annotations

import signal
import threading
from typing import Any, Callable, NamedTuple, Optional

from . import _lib
from .errors import check


class Progress(NamedTuple):
    """`done` of `total` bytes of `phase` ("write", "read", "verify" or "convert") are through on this rank."""

    phase: str
    done: int
    total: int


ProgressCallback = Callable[[Progress], Optional[bool]]

_PHASES = {1: "write", 2: "read", 3: "verify", 4: "convert"}


class Reporter:
    """Carries the host's callable into the C callback, and what it raised back out.

    `interruptible`: on the main thread, while Python's own Ctrl-C handler is in place, Ctrl-C
    is caught for the duration of the call and cancels it; finish() then raises
    KeyboardInterrupt. (A KeyboardInterrupt raised inside a ctypes callback would be printed and
    lost, and without a callback a C call cannot be interrupted at all.)
    """

    def __init__(self, callback: ProgressCallback | None, *, interruptible: bool) -> None:
        self.callback = callback
        self.error: BaseException | None = None
        self.interrupted = False
        self.c_function = _lib.ProgressFn(self._call)  # kept here: C holds only its address
        self._previous_handler: Any = None
        if (interruptible and threading.current_thread() is threading.main_thread()
                and signal.getsignal(signal.SIGINT) is signal.default_int_handler):
            self._previous_handler = signal.signal(signal.SIGINT, self._on_interrupt)

    def _on_interrupt(self, signum: int, frame: object) -> None:
        self.interrupted = True

    def _call(self, user: int | None, phase: int, done: int, total: int) -> int:
        if self.interrupted:
            return 1
        if self.callback is None:
            return 0
        try:
            return 1 if self.callback(Progress(_PHASES.get(phase, str(phase)), done, total)) is False else 0
        except BaseException as error:  # must not unwind into C: cancel, raise it afterwards
            self.error = error
            return 1

    def finish(self) -> None:
        """Puts Ctrl-C back, then raises what the callable raised, or KeyboardInterrupt after a
        Ctrl-C (either outranks the CanceledError it caused)."""
        if self._previous_handler is not None:
            signal.signal(signal.SIGINT, self._previous_handler)
            self._previous_handler = None
        if self.error is not None:
            error, self.error = self.error, None
            raise error
        if self.interrupted:
            self.interrupted = False
            raise KeyboardInterrupt


def install(set_progress: Callable[[object], int], callback: ProgressCallback | None, *,
            interruptible: bool = True) -> Reporter | None:
    """Hands `callback` to the library through `set_progress` (a shardpoint_*_set_progress
    bound to its handle), with Ctrl-C cancelling the call when `interruptible` (see Reporter).
    Returns None when there is nothing to install. The caller calls finish() after the call."""
    reporter = Reporter(callback, interruptible=interruptible)
    if callback is None and reporter._previous_handler is None:
        return None
    try:
        check(set_progress(reporter.c_function))
    except BaseException:
        reporter.finish()
        raise
    return reporter
