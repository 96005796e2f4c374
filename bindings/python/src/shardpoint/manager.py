"""CheckpointManager: the steps of a training run under one root directory, and their retention.

    mgr = shardpoint.CheckpointManager("/ckpt/run1", keep_last=3, keep_best=1, best_metric="loss")
    for step in range(start, steps):
        ...
        if step % 1000 == 0:
            mgr.save(step, state, metadata={"loss": str(loss)})
    state = mgr.load(into=state)          # the latest committed step

A root holds one ordinary checkpoint per step, ROOT/step-N; every rule of retention lives in the
library (shardpoint_manager_* in shardpoint.h): this class only translates it.
"""

from __future__ import annotations

import ctypes
import enum
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar, overload

from . import _lib
from ._handle import Handle
from .errors import ENOTFOUND, check
from .save import _comm_ptr
from .save import Save, Staging
from .save import save as _save
from .save import save_async as _save_async

if TYPE_CHECKING:
    from typing import Literal, Mapping

    from typing_extensions import Unpack

    from ._typing import PathArg, ReaderKwargs, SaveKwargs, State
    from .comm import Comm
    from .progress import ProgressCallback
    from .reader import Reader

_S = TypeVar("_S", bound="State")


class StepState(enum.IntEnum):
    """COMMITTED: saved and whole. PARTIAL: no metadata (a save in progress or a killed one's
    debris). DAMAGED: its metadata fails validation or a data file is missing."""

    COMMITTED = _lib.STEP_COMMITTED
    PARTIAL = _lib.STEP_PARTIAL
    DAMAGED = _lib.STEP_DAMAGED

    def __str__(self) -> str:
        return self.name.lower()


@dataclass(frozen=True)
class StepInfo:
    """One step directory of a root, as CheckpointManager.steps() lists it."""

    step: int
    state: StepState
    path: str
    bytes: int          # total size of its files
    disk_bytes: int     # the space they take on disk
    file_count: int
    time_unix_ns: int   # committed: when its metadata was committed; else the directory's mtime
    busy: bool          # a save held its lock when it was listed (being written)
    metric: str | None  # the best_metric value of a committed step, when it has one
    message: str        # partial and damaged: what is wrong

    @property
    def committed(self) -> bool:
        return self.state == StepState.COMMITTED


class Garbage(NamedTuple):
    """What CheckpointManager.gc() removed (or would remove): a name relative to the root."""

    name: str
    size: int


class CheckpointManager(Handle):
    """A root directory of step checkpoints (ROOT/step-N) with retention.

    Retention keeps a committed step when any rule keeps it: the newest `keep_last` ones, those
    whose number is a multiple of `keep_every`, the `keep_best` best by the user metadata value
    `best_metric` (a decimal number; `best_mode` "min" or "max"). The newest committed step is
    always kept, steps a save is writing are never deleted, and with no rule (the defaults)
    nothing committed is deleted. Deletion is crash-safe, and an open Reader of a deleted step
    keeps reading it.

    With `comm`, every rank opens its manager; save() is collective and only rank 0 applies
    retention. `create` makes the root when it is missing.
    """

    _free_name = "shardpoint_manager_free"

    def __init__(self, root: PathArg, comm: Comm | None = None, *, keep_last: int = 0, keep_every: int = 0,
                 keep_best: int = 0, best_metric: str | None = None, best_mode: Literal["min", "max"] = "min",
                 create: bool = True) -> None:
        if best_mode not in ("min", "max"):
            raise ValueError(f"best_mode must be 'min' or 'max', not {best_mode!r}")
        dll = _lib.lib()
        options = _lib.ManagerOptions()
        check(dll.shardpoint_manager_options_init(ctypes.byref(options), _lib.MANAGER_OPTIONS_VERSION))
        options.flags = _lib.MANAGER_CREATE if create else 0
        options.keep_last = _count(keep_last, "keep_last")
        options.keep_every = _count(keep_every, "keep_every")
        options.keep_best = _count(keep_best, "keep_best")
        options.best_metric = None if best_metric is None else _lib.encode(best_metric, "best_metric")
        options.best_mode = _lib.METRIC_MAX if best_mode == "max" else _lib.METRIC_MIN
        out = ctypes.c_void_p()
        check(dll.shardpoint_manager_open(ctypes.byref(out), _lib.encode_path(root), _comm_ptr(comm),
                                          ctypes.byref(options)))
        self._adopt(out.value)
        self._comm = comm  # borrowed by the C manager until it is freed
        if comm is not None:
            comm._register(self)
        self.root = os.fsdecode(os.fspath(root))
        self._pending: Save | None = None  # the asynchronous save not yet waited for

    def __repr__(self) -> str:
        return f"<CheckpointManager {self.root!r}{' closed' if self.closed else ''}>"

    def step_path(self, step: int) -> str:
        """The directory of step `step` (ROOT/step-N), whether it exists or not."""
        out = ctypes.c_char_p()
        check(_lib.lib().shardpoint_manager_step_path(self._raw(), _step(step), ctypes.byref(out)))
        return os.fsdecode(out.value or b"")

    def save(self, step: int, state: State, *, metadata: Mapping[str, str] | None = None,
             progress: ProgressCallback | None = None, retention: bool = True, **options: Unpack[SaveKwargs]) -> list[int]:
        """Saves `state` as step `step` exactly as shardpoint.save() would (collectively over the
        manager's comm; the same state, metadata, progress and options), then applies retention
        (on rank 0 only; `retention=False` skips it). Returns the steps retention deleted.

        An asynchronous save still pending (save_async) is waited for first.
        """
        self.wait(retention=False)
        _save(self.step_path(step), state, comm=self._comm, metadata=metadata, progress=progress, **options)
        return self.apply_retention() if retention else []

    def save_async(self, step: int, state: State, *, staging: Staging | None = None,
                   metadata: Mapping[str, str] | None = None, progress: ProgressCallback | None = None,
                   **options: Unpack[SaveKwargs]) -> Save:
        """shardpoint.save_async() into step `step`: returns once the state is copied into
        `staging` (reuse one area for every save), and training may change the state while the
        step is written and committed in the background. The save pending before, if any, is
        waited for first (its error is raised here) and retention applied; wait() does the same
        for this one. Returns the pending Save.
        """
        self.wait()
        self._pending = _save_async(self.step_path(step), state, staging=staging, comm=self._comm, metadata=metadata,
                                    progress=progress, **options)
        return self._pending

    def wait(self, *, retention: bool = True) -> list[int]:
        """Waits for the asynchronous save pending (none: returns at once), raising its error,
        then applies retention (unless `retention=False`). Returns the steps retention deleted."""
        pending, self._pending = self._pending, None
        if pending is None:
            return []
        try:
            pending.wait()
        finally:
            pending.close()
        return self.apply_retention() if retention else []

    def close(self) -> None:
        """Frees the manager; a pending asynchronous save is finished first (not canceled)."""
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.close()
        super().close()

    def latest_step(self) -> int | None:
        """The highest committed step, or None when there is none."""
        out = ctypes.c_uint64()
        code = _lib.lib().shardpoint_manager_latest_step(self._raw(), ctypes.byref(out))
        if code == ENOTFOUND:  # no committed step
            return None
        check(code)
        return out.value

    def steps(self) -> list[StepInfo]:
        """Every step directory now, by step number (committed, partial and damaged ones)."""
        dll = _lib.lib()
        raw = self._raw()
        count = ctypes.c_uint64()
        check(dll.shardpoint_manager_list(raw, ctypes.byref(count)))
        out: list[StepInfo] = []
        info = _lib.StepInfo()
        for i in range(count.value):
            check(dll.shardpoint_manager_step_info(raw, i, ctypes.byref(info)))
            out.append(StepInfo(
                step=info.step, state=StepState(info.state), path=os.fsdecode(info.path), bytes=info.bytes,
                disk_bytes=info.disk_bytes, file_count=info.file_count, time_unix_ns=info.time_unix_ns,
                busy=bool(info.busy), metric=_lib.decode(info.metric), message=_lib.decode(info.message)))
        return out

    def delete(self, step: int) -> None:
        """Deletes step `step` (in any state) crash-safely. NotFoundError when there is no such
        step, StateError when a save is writing it (nothing is touched)."""
        check(_lib.lib().shardpoint_manager_delete_step(self._raw(), _step(step)))

    def apply_retention(self, *, dry_run: bool = False) -> list[int]:
        """Deletes the steps the retention options do not keep (on rank 0; other ranks: nothing),
        the debris of killed saves below the newest committed step and leftovers of killed
        deletions. Returns the steps deleted (with dry_run: that would be, deleting nothing)."""
        deleted: list[int] = []

        def note(_user: object, step: int, _bytes: int) -> int:
            deleted.append(step)
            return 0

        callback = _lib.RetentionFn(note)
        check(_lib.lib().shardpoint_manager_apply_retention(
            self._raw(), _lib.RETENTION_DRY_RUN if dry_run else 0, callback, None, None))
        return deleted

    def gc(self, *, dry_run: bool = False) -> list[Garbage]:
        """Removes leftovers of killed deletions, the debris of killed saves in every step no save
        is writing, and empty partial steps below the newest committed one; returns them."""
        found: list[Garbage] = []

        def note(_user: object, name: bytes, size: int) -> int:
            found.append(Garbage(os.fsdecode(name), size))
            return 0

        callback = _lib.GcFn(note)
        check(_lib.lib().shardpoint_manager_gc(self._raw(), _lib.GC_DRY_RUN if dry_run else 0, callback, None, None, None))
        return found

    def reader(self, step: int | None = None, **reader_options: Unpack[ReaderKwargs]) -> Reader:
        """A Reader of step `step` (None: the latest committed step)."""
        from .reader import Reader

        return Reader(self.step_path(self._resolve(step)), comm=self._comm, **reader_options)

    # Without `into` the result is shaped as the checkpoint (known at run time only), hence Any.
    @overload
    def load(self, step: int | None = None, *, into: None = None, progress: ProgressCallback | None = None,
             **reader_options: Unpack[ReaderKwargs]) -> Any: ...
    @overload
    def load(self, step: int | None = None, *, into: _S, progress: ProgressCallback | None = None,
             **reader_options: Unpack[ReaderKwargs]) -> _S: ...

    def load(self, step: int | None = None, *, into: State | None = None, progress: ProgressCallback | None = None,
             **reader_options: Unpack[ReaderKwargs]) -> Any:
        """shardpoint.load() of step `step` (None: the latest committed step; NotFoundError when
        there is none), over the manager's comm."""
        from . import load as _load  # (the package's load: shardpoint/__init__.py imports this module)

        path = self.step_path(self._resolve(step))
        if into is None:
            return _load(path, comm=self._comm, progress=progress, **reader_options)
        return _load(path, comm=self._comm, into=into, progress=progress, **reader_options)

    def _resolve(self, step: int | None) -> int:
        if step is not None:
            return step
        out = ctypes.c_uint64()
        check(_lib.lib().shardpoint_manager_latest_step(self._raw(), ctypes.byref(out)))
        return out.value


def delete_checkpoint(path: PathArg) -> None:
    """Deletes the checkpoint directory `path` as crash-safely as a step (shardpoint_checkpoint_delete)."""
    check(_lib.lib().shardpoint_checkpoint_delete(_lib.encode_path(path)))


def _count(value: int, what: str) -> int:
    v = int(value)
    if v < 0:
        raise ValueError(f"{what} must not be negative: {v}")
    return v


def _step(step: int) -> int:
    v = int(step)
    if v < 0 or v >= 1 << 64:
        raise ValueError(f"step must be in [0, 2**64), not {v}")
    return v
