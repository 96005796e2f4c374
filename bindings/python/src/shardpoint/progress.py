"""Progress reports and cancellation of long calls (Save.commit, Load.execute, Reader.verify).

The library calls back on the thread that made the call: once at the start (done 0), at most
every 50 ms, and once with done == total. The callable returning False cancels the call, which
then raises CanceledError; an exception raised by the callable (a KeyboardInterrupt from Ctrl-C
included) cancels it too and is raised again once the library has stopped. A canceled save
commits nothing: the checkpoint already in the directory stays as it was.
"""

from __future__ import annotations

from typing import Callable, NamedTuple, Optional

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
    """Carries the host's callable into the C callback, and what it raised back out."""

    def __init__(self, callback: ProgressCallback) -> None:
        self.callback = callback
        self.error: BaseException | None = None
        self.c_function = _lib.ProgressFn(self._call)  # kept here: C holds only its address

    def _call(self, user: int | None, phase: int, done: int, total: int) -> int:
        try:
            return 1 if self.callback(Progress(_PHASES.get(phase, str(phase)), done, total)) is False else 0
        except BaseException as error:  # must not unwind into C: cancel, raise it afterwards
            self.error = error
            return 1

    def raise_error(self) -> None:
        """Raises what the callable raised, if it did (it outranks the CanceledError it caused)."""
        if self.error is not None:
            error, self.error = self.error, None
            raise error


def install(set_progress: Callable[[object], int], callback: ProgressCallback | None) -> Reporter | None:
    """Hands `callback` to the library through `set_progress` (a shardpoint_*_set_progress
    bound to its handle); None installs nothing."""
    if callback is None:
        return None
    reporter = Reporter(callback)
    check(set_progress(reporter.c_function))
    return reporter
