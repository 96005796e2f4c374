"""Communicators: how the ranks of one job talk during collective calls.

- Comm.single(): a job of one process (what Save/Load use when given no communicator).
- Comm.from_callbacks(obj): collectives implemented in Python by any object with
  `gather(send, recv)` and `broadcast(buf)` methods (see Collectives).
- LocalGroup(n): n ranks as threads of this process, sharing memory, for tests and tools.
- Comm.mpi(comm): mpi4py's Gather/Bcast (mpi4py is optional and imported only here).
"""

from __future__ import annotations

import contextlib
import ctypes
import threading
from typing import TYPE_CHECKING, Any, Callable, Iterator, Literal, Protocol, TypeVar, cast, overload

from . import _lib
from ._handle import Handle
from .errors import check

if TYPE_CHECKING:
    from mpi4py import MPI

_R = TypeVar("_R")


class SupportsCollectives(Protocol):
    """What Comm.from_callbacks needs of its `impl`: Collectives' methods and attributes (rank and
    size may be plain attributes or properties)."""

    @property
    def rank(self) -> int: ...

    @property
    def size(self) -> int: ...

    def gather(self, send: memoryview, recv: memoryview | None) -> None: ...

    def broadcast(self, buf: memoryview) -> None: ...


class Collectives:
    """The protocol a callback communicator implements (subclassing is optional).

    Rank 0 is the root. The library calls these only from inside collective shardpoint calls, on
    the thread that made that call, in the same order on every rank. The memoryviews are valid
    only during the call: copy what must outlive it. Raise to fail the collective; the shardpoint
    call then fails with CommError whose __cause__ is your exception.
    """

    rank: int = 0
    size: int = 1

    def gather(self, send: memoryview, recv: memoryview | None) -> None:
        """Every rank sends len(send) bytes; on rank 0, `recv` (size * len bytes) receives rank r's
        bytes at offset r * len; on other ranks `recv` is None."""
        raise NotImplementedError

    def broadcast(self, buf: memoryview) -> None:
        """Rank 0's bytes in `buf` are copied into `buf` on every other rank."""
        raise NotImplementedError


def _memory(address: int | None, length: int, readonly: bool) -> memoryview:
    if length == 0 or not address:
        return memoryview(b"") if readonly else memoryview(bytearray())
    view = memoryview((ctypes.c_char * length).from_address(address)).cast("B")
    return view.toreadonly() if readonly else view


def _release(*views: memoryview | None) -> None:
    # A released view raises on later use instead of touching memory the library reclaimed.
    for view in views:
        if view is not None:
            try:
                view.release()
            except BufferError:  # the implementation still holds an export of it
                pass


class _CallbackState:
    """What the C thunks close over. Kept apart from Comm so the thunks do not keep Comm alive."""

    def __init__(self, impl: SupportsCollectives, size: int) -> None:
        self.impl = impl
        self.size = size
        self.error: BaseException | None = None

    # The thunks' arguments as ctypes passes them: void* as int or None, uint64 as int.
    def gather(self, _user: int | None, send: int | None, length: int, recv: int | None) -> int:
        send_view: memoryview | None = None
        recv_view: memoryview | None = None
        try:
            send_view = _memory(send, int(length), True)
            if recv:
                recv_view = _memory(recv, int(length) * self.size, False)
            self.impl.gather(send_view, recv_view)
            return 0
        except BaseException as exc:  # nothing may propagate into C
            self.error = exc
            return -1
        finally:
            _release(send_view, recv_view)

    def broadcast(self, _user: int | None, buf: int | None, length: int) -> int:
        view: memoryview | None = None
        try:
            view = _memory(buf, int(length), False)
            self.impl.broadcast(view)
            return 0
        except BaseException as exc:
            self.error = exc
            return -1
        finally:
            _release(view)


class Comm(Handle):
    """A shardpoint_comm. Build one with Comm.single(), Comm.from_callbacks(), Comm.mpi() or
    LocalGroup.comm(); close it (or use `with`) after the Saves and Loads that use it."""

    _free_name = "shardpoint_comm_free"

    def __init__(self, _ptr: int | None, _state: _CallbackState | None = None, _keepalive: object = None) -> None:
        self._state = _state
        self._adopt(_ptr, _keepalive)

    @classmethod
    def single(cls) -> Comm:
        out = ctypes.c_void_p()
        check(_lib.lib().shardpoint_comm_new_single(ctypes.byref(out)))
        return cls(out.value)

    @classmethod
    def from_callbacks(cls, impl: SupportsCollectives, rank: int | None = None, size: int | None = None) -> Comm:
        """A communicator whose gather/broadcast are `impl`'s methods. `rank` and `size` default to
        impl.rank and impl.size."""
        rank = impl.rank if rank is None else rank
        size = impl.size if size is None else size
        state = _CallbackState(impl, int(size))
        gather = _lib.GatherFn(state.gather)
        broadcast = _lib.BroadcastFn(state.broadcast)
        callbacks = _lib.CommCallbacks()
        dll = _lib.lib()
        check(dll.shardpoint_comm_callbacks_init(ctypes.byref(callbacks), _lib.COMM_CALLBACKS_VERSION))
        callbacks.rank = int(rank)
        callbacks.size = int(size)
        callbacks.gather = gather
        callbacks.broadcast = broadcast
        out = ctypes.c_void_p()
        check(dll.shardpoint_comm_new_callbacks(ctypes.byref(out), ctypes.byref(callbacks)))
        # The thunks must outlive the C comm: the finalizer holds them until comm_free returns.
        return cls(out.value, state, (gather, broadcast, impl))

    @classmethod
    def mpi(cls, mpi_comm: MPI.Comm | None = None) -> Comm:
        """A communicator over an mpi4py communicator (default MPI.COMM_WORLD)."""
        return cls.from_callbacks(MPICollectives(mpi_comm))

    @property
    def rank(self) -> int:
        out = ctypes.c_int32()
        check(_lib.lib().shardpoint_comm_rank(self._raw(), ctypes.byref(out)))
        return out.value

    @property
    def size(self) -> int:
        out = ctypes.c_int32()
        check(_lib.lib().shardpoint_comm_size(self._raw(), ctypes.byref(out)))
        return out.value

    def _take_error(self) -> BaseException | None:
        """The Python exception a callback raised during the last collective, if any."""
        if self._state is None:
            return None
        error, self._state.error = self._state.error, None
        return error

    def __repr__(self) -> str:
        if self.closed:
            return "<shardpoint.Comm closed>"
        return f"<shardpoint.Comm rank={self.rank} size={self.size}>"


class MPICollectives(Collectives):
    """Collectives over mpi4py (raw bytes, root 0)."""

    def __init__(self, mpi_comm: MPI.Comm | None = None) -> None:
        from mpi4py import MPI  # optional dependency

        self._comm: MPI.Comm = MPI.COMM_WORLD if mpi_comm is None else mpi_comm
        self._byte = MPI.BYTE
        self.rank = self._comm.Get_rank()
        self.size = self._comm.Get_size()

    def gather(self, send: memoryview, recv: memoryview | None) -> None:
        self._comm.Gather([send, self._byte], None if recv is None else [recv, self._byte], root=0)

    def broadcast(self, buf: memoryview) -> None:
        self._comm.Bcast([buf, self._byte], root=0)


class _Rendezvous:
    """A reusable barrier for the ranks of a LocalGroup, with an abort that only fails the waits
    that can no longer complete.

    Arrivals are counted per round (generation). The last rank to arrive closes the round and
    wakes the others; a waiter that wakes up checks first whether its round was closed, and if so
    it succeeds, even if the group was aborted in the meantime. threading.Barrier does not do
    that: its abort also fails the threads that the last arrival has released but that have not
    yet reacquired the lock, so a rank that left right after a round completed (e.g. because the
    library failed the collective on every rank) made the others' finished round fail.

    abort() is called for a rank that has left the group for good (or by the user). Such a rank
    is in no round, so the round still open cannot complete: its waiters fail, and so does every
    later arrival. Rounds that already completed are not affected. A wait that times out breaks
    the group the same way.
    """

    def __init__(self, parties: int, timeout: float | None) -> None:
        self._parties = parties
        self._timeout = timeout
        self._cond = threading.Condition(threading.Lock())
        self._arrived = 0
        self._generation = 0
        self._failure: str | None = None  # why the group was broken, once it is

    def wait(self) -> None:
        with self._cond:
            if self._failure is not None:
                raise threading.BrokenBarrierError(self._failure)
            generation = self._generation
            self._arrived += 1
            if self._arrived == self._parties:
                self._arrived = 0
                self._generation += 1
                self._cond.notify_all()
                return
            closed = self._cond.wait_for(
                lambda: self._generation != generation or self._failure is not None, self._timeout)
            if self._generation != generation:
                return  # the round completed: its result stands, whatever happened since
            if not closed:
                self._break(f"a collective waited more than {self._timeout} s for the other ranks")
            raise threading.BrokenBarrierError(self._failure)

    def abort(self, reason: str) -> None:
        with self._cond:
            self._break(reason)

    def _break(self, reason: str) -> None:
        if self._failure is None:
            self._failure = reason
        self._cond.notify_all()


class LocalGroup:
    """`size` ranks as threads of one process, exchanging bytes through shared memory and a barrier.

    Typical use:
        results = LocalGroup(3).run(lambda rank, comm: do_rank_work(rank, comm))

    A rank that fails outside a collective would leave the others waiting in one; run() aborts the
    group when a rank raises, and every wait has a timeout, so the others fail with CommError. An
    abort only fails the collective rounds that have not completed (they never can, since the
    rank that raised takes no further part): a rank that has finished its part of a round is not
    disturbed, so when the library fails a collective on every rank, every rank sees that error.
    """

    def __init__(self, size: int, timeout: float | None = 120.0) -> None:
        if size < 1:
            raise ValueError("a group needs at least one rank")
        self.size = int(size)
        self._barrier = _Rendezvous(self.size, timeout)
        self._slots: list[bytes | None] = [None] * self.size
        self._shared: bytes | None = None

    def comm(self, rank: int) -> Comm:
        """The communicator of rank `rank`, to be used by one thread."""
        if not 0 <= rank < self.size:
            raise ValueError(f"rank {rank} outside a group of {self.size}")
        return Comm.from_callbacks(_LocalRank(self, rank), rank, self.size)

    def abort(self, reason: str = "the local group was aborted") -> None:
        """Makes every pending collective round of the group that has not completed, and every
        future one, fail. Call it for a rank that will take no further part."""
        self._barrier.abort(reason)

    @overload
    def run(self, fn: Callable[..., _R], *args: object, return_exceptions: Literal[False] = False) -> list[_R]: ...
    @overload
    def run(self, fn: Callable[..., _R], *args: object, return_exceptions: bool) -> list[_R | BaseException]: ...

    def run(self, fn: Callable[..., Any], *args: object, return_exceptions: bool = False) -> list[Any]:
        """Runs fn(rank, comm, *args) on one thread per rank; returns the results in rank order.

        If ranks raise, the first exception (preferring one that is not a mere echo of another
        rank's failure, i.e. not RankError/CommError) is re-raised, unless return_exceptions=True,
        in which case exceptions take the place of results."""
        from .errors import CommError, RankError

        results: list[Any] = [None] * self.size  # each rank's result, or the exception it raised
        failed = [False] * self.size

        def body(rank: int) -> None:
            try:
                with self.comm(rank) as comm:
                    results[rank] = fn(rank, comm, *args)
            except BaseException as exc:
                results[rank] = exc
                failed[rank] = True
                # This rank takes no further part: fail the rounds that wait for it.
                self.abort(f"rank {rank} left the local group: {type(exc).__name__}: {exc}")

        threads = [threading.Thread(target=body, args=(r,), name=f"shardpoint-rank-{r}") for r in range(self.size)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if return_exceptions or not any(failed):
            return results
        errors = [results[r] for r in range(self.size) if failed[r]]
        primary = [e for e in errors if not isinstance(e, (RankError, CommError))]
        raise (primary or errors)[0]

    def _wait(self) -> None:
        self._barrier.wait()

    @contextlib.contextmanager
    def _second_wait(self) -> Iterator[None]:
        """Runs the body of a collective, then its closing wait, even when the body failed (the
        other ranks still finish the round); the body's error takes precedence."""
        try:
            yield
        except BaseException:
            try:
                self._wait()
            except threading.BrokenBarrierError:
                pass
            raise
        self._wait()


class _LocalRank(Collectives):
    def __init__(self, group: LocalGroup, rank: int) -> None:
        self._group = group
        self.rank = rank
        self.size = group.size

    def gather(self, send: memoryview, recv: memoryview | None) -> None:
        group = self._group
        group._slots[self.rank] = bytes(send)
        group._wait()
        with group._second_wait():  # nobody reuses the slots before rank 0 has read them
            if recv is not None:
                step = len(send)
                # (every rank filled its slot before the first wait)
                for r, data in enumerate(cast("list[bytes]", group._slots)):
                    if len(data) != step:
                        raise ValueError(f"gather: rank {r} sent {len(data)} bytes, rank 0 sent {step}")
                    recv[r * step:(r + 1) * step] = data

    def broadcast(self, buf: memoryview) -> None:
        group = self._group
        if self.rank == 0:
            group._shared = bytes(buf)
        group._wait()
        with group._second_wait():  # rank 0 replaces _shared only after everyone has read it
            if self.rank != 0:
                shared = cast(bytes, group._shared)  # rank 0 set it before the first wait
                if len(shared) != len(buf):
                    raise ValueError(f"broadcast: rank 0 sent {len(shared)} bytes, "
                                     f"rank {self.rank} expects {len(buf)}")
                buf[:] = shared
