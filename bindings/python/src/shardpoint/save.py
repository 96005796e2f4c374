"""Saving: Save (add what this rank holds, then commit) and the save() shortcut."""

from __future__ import annotations

import ctypes
import os
import warnings
import weakref
from typing import TYPE_CHECKING, Iterable, Mapping, NamedTuple, NoReturn, cast

from . import _lib
from .progress import ProgressCallback, Reporter, install
from . import state as _state
from ._buffer import TensorBuffer, describe, pack_whole, plain_arrays
from ._handle import Handle
from .errors import check, error_for

if TYPE_CHECKING:
    from types import TracebackType

    from typing_extensions import Unpack

    from ._typing import DTypeArg, Indices, PathArg, SaveKwargs, Shape, State
    from .comm import Comm


def _indices(values: Indices, ndim: int, what: str) -> Shape:
    """A tuple of ndim non-negative ints (ctypes would wrap negatives silently)."""
    ints = tuple(int(v) for v in values)
    if len(ints) != ndim:
        raise ValueError(f"{what} has {len(ints)} values, the data has {ndim} dimensions")
    if any(v < 0 for v in ints):
        raise ValueError(f"{what} must not be negative: {ints}")
    return ints


def _comm_ptr(comm: Comm | None) -> int | None:
    return None if comm is None else comm._raw()


def _raise(code: int, comm: Comm | None) -> NoReturn:
    """Raises the error of a failed collective, chained to a communicator callback's exception."""
    error = error_for(code)
    cause = comm._take_error() if comm is not None else None
    if cause is not None:
        raise error from cause
    raise error


def save_flags(*, overwrite: bool = False, durable: bool = True, allow_partial: bool = False,
               fsync: bool | None = None) -> int:
    """The SHARDPOINT_SAVE_* flags for Save's keyword options.

    durable=False (SHARDPOINT_SAVE_NO_FSYNC) skips every fsync: safe against a crash of the
    process, not against a power loss or kernel crash, after which the new checkpoint (and with
    overwrite the one it replaced) may be lost. `fsync` is the option of 0.1, when saves were not
    durable by default: deprecated, and without effect (fsync=False does not opt out; use
    durable=False).
    """
    if fsync is not None:
        warnings.warn("Save(fsync=...) is deprecated and has no effect: saves are durable by default; "
                      "pass durable=False to skip fsync", DeprecationWarning, stacklevel=3)
    return ((_lib.SAVE_OVERWRITE if overwrite else 0)
            | (0 if durable else _lib.SAVE_NO_FSYNC)
            | (_lib.SAVE_ALLOW_PARTIAL if allow_partial else 0))


_CODECS = {"deflate": _lib.CODEC_DEFLATE_STREAM, "zlib": _lib.CODEC_ZLIB, "zstd": _lib.CODEC_ZSTD}


def save_options(*, overwrite: bool, durable: bool, allow_partial: bool, compression: int | str,
                 compression_level: int, shuffle: bool, io_threads: int, alignment: int, checkpoint_id: str | None,
                 fsync: bool | None = None) -> _lib.SaveOptions:
    """The C save options (shardpoint_save_options) of Save's and Writer's keyword arguments."""
    dll = _lib.lib()
    options = _lib.SaveOptions()
    check(dll.shardpoint_save_options_init(ctypes.byref(options), _lib.SAVE_OPTIONS_VERSION))
    options.flags = save_flags(overwrite=overwrite, durable=durable, allow_partial=allow_partial, fsync=fsync)
    if isinstance(compression, str):
        if compression not in _CODECS:
            raise ValueError(f"unknown compression {compression!r}: use 'zstd', 'zlib', 'deflate' or a zlib level")
        options.codec = _CODECS[compression]
        options.compression_level = int(compression_level)
    else:  # a zlib level, as in 0.1 (0: raw)
        options.compression_level = int(compression)
    options.filters = _lib.FILTER_SHUFFLE if shuffle else 0
    options.io_threads = int(io_threads)
    options.alignment = int(alignment)
    options.checkpoint_id = None if checkpoint_id is None else _lib.encode(checkpoint_id, "checkpoint_id")
    return options


class Save(Handle):
    """One rank's part of a checkpoint save.

    Tensor data and blobs are borrowed, not copied: the Save keeps a reference to every object
    given to add_tensor/add_bytes until commit() returns (or the Save is closed), and the memory
    must not change until then. Used as a context manager, a Save commits on a clean exit (unless
    already committed) and is freed in every case; an exception inside the block writes nothing.

    Options: `overwrite` replaces a checkpoint already at `path` (else ExistsError). Saves are
    durable (every file and the directory fsynced before commit() returns); `durable=False` skips
    every fsync, which risks losing the new checkpoint, and with overwrite the previous one too,
    on a power loss or kernel crash. Tensors that the ranks together leave partly uncovered make
    commit() raise UncoveredError (nothing is written) unless `allow_partial=True`.
    `compression`: 0 stores raw; "zstd" or "zlib" compress every 64 KiB block alone (on all
    cores; a partial load restores only its blocks; format 2, which shardpoint 0.1 cannot read),
    with `shuffle=True` byte-shuffling floats first, at `compression_level` (0: the codec's fast
    default); "deflate" or a number 1..9 (a zlib level) write one zlib stream per chunk, readable
    by every format 1 reader. `io_threads` 0 means one per core; `alignment` 0 means 4096.
    `fsync` is deprecated and has no effect.
    """

    _free_name = "shardpoint_save_free"

    def __init__(self, path: PathArg, comm: Comm | None = None, *, overwrite: bool = False, durable: bool = True,
                 allow_partial: bool = False, compression: int | str = 0, compression_level: int = 0,
                 shuffle: bool = False, io_threads: int = 0, alignment: int = 0, checkpoint_id: str | None = None,
                 fsync: bool | None = None) -> None:
        dll = _lib.lib()
        options = save_options(overwrite=overwrite, durable=durable, allow_partial=allow_partial, compression=compression,
                               compression_level=compression_level, shuffle=shuffle, io_threads=io_threads,
                               alignment=alignment, checkpoint_id=checkpoint_id, fsync=fsync)
        out = ctypes.c_void_p()
        check(dll.shardpoint_save_new(ctypes.byref(out), _lib.encode_path(path), _comm_ptr(comm), ctypes.byref(options)))
        self._adopt(out.value)
        self._comm = comm  # borrowed by the C save until it is freed
        if comm is not None:
            comm._register(self)
        self._borrowed: list[object] = []
        self.committed = False
        self._async = False
        self._staging: Staging | None = None
        self._reporter: Reporter | None = None
        # A Save that is garbage-collected neither committed nor closed saved nothing: say so.
        self.path = os.fspath(path)
        self._dropped_warning = weakref.finalize(self, _warn_dropped, self.path)

    def add_tensor(self, fqn: str, data: object, *, offsets: Indices | None = None, global_shape: Indices | None = None,
                   dtype: DTypeArg | None = None) -> None:
        """Offers `data` as the chunk of tensor `fqn` at `offsets` in a tensor of `global_shape`.

        `data`: a numpy array (any strides, including negative), anything with __array_interface__,
        __dlpack__ (CPU) or the buffer protocol. Without offsets and global_shape, `data` is the
        whole tensor. `dtype` names the stored dtype when the memory's own type does not (e.g.
        dtype="bf16" for a uint16 array); it must have the same element size.
        """
        buf = describe(data)
        dt = buf.with_dtype(dtype)
        sizes = buf.shape
        if offsets is None and global_shape is None:
            offsets, global_shape = (0,) * buf.ndim, sizes
        elif global_shape is None:
            raise ValueError("offsets given without global_shape")
        elif offsets is None:
            offsets = (0,) * buf.ndim
        offsets = _indices(offsets, buf.ndim, "offsets")
        global_shape = _indices(global_shape, buf.ndim, "global_shape")
        check(_lib.lib().shardpoint_save_add_tensor(
            self._raw(), _lib.encode(fqn, "fqn"), int(dt), buf.ndim,
            _lib.u64_array(global_shape), _lib.u64_array(offsets), _lib.u64_array(sizes),
            buf.ptr or None, _lib.i64_array(buf.c_strides()),
        ))
        self._borrowed.append(buf)

    def add_tensors(self, tensors: Mapping[str, object] | Iterable[tuple[str, object]]) -> None:
        """Offers many tensors in one call of the library: `tensors` maps fqn to a value (or is
        an iterable of (fqn, value) pairs), each value an array (the whole tensor) or a Chunk.

        All or nothing: when one is refused, none of them is kept and the error names its
        position in the batch. Much cheaper per tensor than add_tensor for many small ones.
        """
        names: list[str]
        values: list[object]
        if hasattr(tensors, "items"):
            mapping = cast("Mapping[str, object]", tensors)  # anything with items() is taken as a mapping
            names, values = list(mapping.keys()), list(mapping.values())
        else:
            pairs = list(tensors)
            names, values = [p[0] for p in pairs], [p[1] for p in pairs]
        plain = plain_arrays(values)
        if plain is not None:  # every value a whole C-contiguous array: packed column by column
            ptrs, codes, shapes = plain
            first, keep = pack_whole(_lib.TensorChunk, names, codes, shapes, ptrs, "global_shape", "data")
            check(_lib.lib().shardpoint_save_add_tensors(self._raw(), first, len(names), ctypes.sizeof(_lib.TensorChunk)))
            self._borrowed.extend(values)
            return
        batch = _lib.Batch()
        bufs: list[TensorBuffer] = []
        rows: list[tuple[int, int, int, int | None, int | None, int | None, int | None, int | None]] = []
        for fqn, value in zip(names, values):
            if isinstance(value, Chunk):
                buf = describe(value.data)
                dt = buf.with_dtype(value.dtype)
                offsets, global_shape = value.offsets, value.global_shape
                if global_shape is None:
                    if offsets is not None:
                        raise ValueError(f"{fqn!r}: offsets given without global_shape")
                    global_shape = buf.shape
                offsets = _indices((0,) * buf.ndim if offsets is None else offsets, buf.ndim, "offsets")
                global_shape = _indices(global_shape, buf.ndim, "global_shape")
            else:
                buf = describe(value)
                dt = buf.with_dtype(None)
                offsets, global_shape = None, buf.shape  # NULL offsets and sizes: the whole tensor
            whole = offsets is None
            rows.append((batch.add_name(fqn), int(dt), buf.ndim, batch.add_dims(global_shape),
                         None if whole else batch.add_dims(offsets), None if whole else batch.add_dims(buf.shape),
                         buf.ptr or None, batch.add_strides(buf.c_strides())))
            bufs.append(buf)
        dims, strides, name_addresses = batch.freeze()
        chunks = (_lib.TensorChunk * max(1, len(rows)))()
        for chunk, (name, code, ndim, shape_at, offsets_at, sizes_at, ptr, strides_at) in zip(chunks, rows):
            chunk.fqn = name_addresses[name]
            chunk.dtype = code
            chunk.ndim = ndim
            chunk.global_shape = None if shape_at is None else dims + 8 * shape_at
            chunk.chunk_offsets = None if offsets_at is None else dims + 8 * offsets_at
            chunk.chunk_sizes = None if sizes_at is None else dims + 8 * sizes_at
            chunk.data = ptr
            chunk.strides = None if strides_at is None else strides + 8 * strides_at
        check(_lib.lib().shardpoint_save_add_tensors(self._raw(), chunks, len(rows), ctypes.sizeof(_lib.TensorChunk)))
        self._borrowed.extend(bufs)

    def add_bytes(self, fqn: str, data: object) -> None:
        """Offers the bytes of `data` (bytes, bytearray, contiguous memoryview or array) as blob `fqn`."""
        buf = describe(data)
        if not buf.c_contiguous:
            raise ValueError("blob data must be contiguous")
        check(_lib.lib().shardpoint_save_add_bytes(self._raw(), _lib.encode(fqn, "fqn"), buf.ptr or None, buf.nbytes))
        self._borrowed.append(buf)

    def set_metadata(self, key: str, value: str) -> None:
        """Records a user key/value pair (strings); rank 0's pairs are the ones kept."""
        check(_lib.lib().shardpoint_save_set_metadata(
            self._raw(), _lib.encode(key, "metadata key"), _lib.encode(value, "metadata value")))

    def commit(self, *, progress: ProgressCallback | None = None) -> None:
        """Collective: writes every rank's data, then commits the metadata atomically.

        `progress(Progress("write", done, total))` reports this rank's write (see
        shardpoint.progress); returning False cancels it (CanceledError here, RankError on the
        other ranks) and an exception it raises cancels it and is raised again. Either way
        nothing is committed and the checkpoint already in the directory stays as it was.
        """
        raw = self._raw()
        reporter = install(lambda f: _lib.lib().shardpoint_save_set_progress(raw, f, None), progress)
        try:
            code = _lib.lib().shardpoint_save_commit(raw)
        finally:
            self._borrowed.clear()  # the library no longer reads them
            if reporter is not None:
                reporter.finish()
        if code != 0:
            _raise(code, self._comm)
        self.committed = True
        self._dropped_warning.detach()

    @property
    def staging_size(self) -> int:
        """The bytes of staging this rank's data takes (see commit_async)."""
        out = ctypes.c_uint64()
        check(_lib.lib().shardpoint_save_staging_size(self._raw(), ctypes.byref(out)))
        return out.value

    def commit_async(self, staging: Staging | None = None, *, progress: ProgressCallback | None = None) -> None:
        """Copies this rank's data into `staging`, then commits in the background and returns: the
        arrays may change from then on (train the next step). wait() gives the outcome, raising
        what commit() would have; `done` polls; cancel() asks it to stop.

        `staging` is reused from save to save (a new one sized to this save when None). While an
        earlier save still uses it, this first waits for that save. Until wait() returns, the
        communicator is used from the library's thread, and `progress` is called there.
        RangeError (nothing started) when the data does not fit.
        """
        raw = self._raw()
        if staging is None:
            staging = Staging(self.staging_size)
        dll = _lib.lib()
        # No Ctrl-C handling: the commit goes on after this returns, on the library's thread.
        self._reporter = install(lambda f: dll.shardpoint_save_set_progress(raw, f, None), progress,
                                 interruptible=False)
        check(dll.shardpoint_save_commit_async(raw, staging._raw()))
        self._staging = staging  # in use until the save ends
        self._borrowed.clear()  # copied: the library no longer reads them
        self._async = True
        self._dropped_warning.detach()

    def wait(self) -> None:
        """Blocks until the asynchronous commit ends; raises its error (every call the same)."""
        code = _lib.lib().shardpoint_save_wait(self._raw())
        if self._reporter is not None:
            self._reporter.finish()
        if code != 0:
            _raise(code, self._comm)
        self.committed = True

    @property
    def done(self) -> bool:
        """True once the asynchronous commit ended (wait() then returns at once)."""
        out = ctypes.c_int32()
        check(_lib.lib().shardpoint_save_poll(self._raw(), ctypes.byref(out)))
        return bool(out.value)

    def cancel(self) -> None:
        """Asks the asynchronous commit to stop; wait() then raises CanceledError, unless this
        rank's data was already written (then it commits). Returns at once."""
        check(_lib.lib().shardpoint_save_cancel(self._raw()))

    def close(self) -> None:
        """Frees the save; without a commit before, nothing is saved (a deliberate abort). An
        asynchronous commit is waited for first (not canceled)."""
        self._dropped_warning.detach()
        super().close()
        self._borrowed.clear()
        self._staging = None

    def __repr__(self) -> str:
        state = ("committed" if self.committed else "closed" if self.closed else "committing" if self._async
                 else "open")
        return f"<Save {self.path!r} {state}>"

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        try:
            if exc_type is None and not self.closed and not self.committed:
                if self._async:
                    self.wait()
                else:
                    self.commit()
        finally:
            self.close()


def _warn_dropped(path: str | bytes) -> None:
    warnings.warn(f"a Save of {path!r} was garbage-collected without commit() or close(): nothing was saved",
                  ResourceWarning, stacklevel=2)


class Chunk(NamedTuple):
    """A value for save(): `data` is the chunk of a tensor of `global_shape` at `offsets`."""

    data: object
    offsets: Indices | None = None
    global_shape: Indices | None = None
    dtype: DTypeArg | None = None


class Blob:
    """A value for save(): the bytes of any contiguous buffer, stored as a blob."""

    __slots__ = ("data",)

    def __init__(self, data: object) -> None:
        self.data = data


def save(path: PathArg, entries: State, *, comm: Comm | None = None, metadata: Mapping[str, str] | None = None,
         progress: ProgressCallback | None = None, **options: Unpack[SaveKwargs]) -> None:
    """Saves `entries` (fqn -> value) as a checkpoint in `path`, collectively over `comm`.

    A value is an array-like (the whole tensor), a Chunk, a Blob, or bytes/bytearray (a blob).
    `entries` may also be a nested training state: dicts (str or int keys), lists and tuples of
    such values and of plain int, float, bool, str and None. Its arrays become entries named by
    their path ("optim.state.0.exp_avg"), and the tree, plain values included, is recorded as
    JSON in the user metadata (state.TREE_KEY; never a pickle), from which load() rebuilds it.
    `options` are Save's keyword options (overwrite, durable, allow_partial, compression, ...);
    `progress` is Save.commit's.
    """
    with Save(path, comm, **options) as s:
        _add_entries(s, entries, metadata)
        s.commit(progress=progress)


def _add_entries(s: Save, entries: State, metadata: Mapping[str, str] | None) -> None:
    """Offers `entries` (flat, or a nested state recorded in the metadata) and `metadata` to `s`."""
    flat: Mapping[str, object]
    if not isinstance(entries, dict) or _state.needs_tree(entries):
        flat, tree = _state.flatten(entries)
        if metadata and _state.TREE_KEY in metadata:
            raise ValueError(f"the metadata key {_state.TREE_KEY!r} is the saved state's own")
        metadata = dict(metadata or {}, **{_state.TREE_KEY: tree})
    else:
        flat = entries
    tensors: dict[str, object] = {}
    for fqn, value in flat.items():
        if isinstance(value, (bytes, bytearray)):
            s.add_bytes(fqn, value)
        elif isinstance(value, Blob):
            s.add_bytes(fqn, value.data)
        else:
            tensors[fqn] = value
    s.add_tensors(tensors)
    for key, value in (metadata or {}).items():
        s.set_metadata(key, value)


class Staging(Handle):
    """Host memory that asynchronous saves copy their data into (Save.commit_async), allocated
    once and reused: its pages are faulted in now (on huge pages where the kernel gives them,
    locked in memory where allowed), so that each save's copy runs at memory speed. One save uses
    it at a time; close() waits for it."""

    _free_name = "shardpoint_staging_free"

    def __init__(self, capacity: int) -> None:
        out = ctypes.c_void_p()
        check(_lib.lib().shardpoint_staging_new(ctypes.byref(out), int(capacity)))
        self._adopt(out.value)

    @property
    def capacity(self) -> int:
        out = ctypes.c_uint64()
        check(_lib.lib().shardpoint_staging_capacity(self._raw(), ctypes.byref(out)))
        return out.value

    def __repr__(self) -> str:
        return "<Staging closed>" if self.closed else f"<Staging {self.capacity} bytes>"


def save_async(path: PathArg, entries: State, *, staging: Staging | None = None, comm: Comm | None = None,
               metadata: Mapping[str, str] | None = None, progress: ProgressCallback | None = None,
               **options: Unpack[SaveKwargs]) -> Save:
    """save(), returning as soon as the data is copied into `staging`: the returned Save is
    committing in the background; call its wait() (or close()) before the next save into the
    same directory, and to learn the outcome.

        staging = shardpoint.Staging(2 << 30)
        pending = shardpoint.save_async(f"ckpt/step-{step}", state, staging=staging)
        ...  # train on; the state may change
        pending.wait()
    """
    s = Save(path, comm, **options)
    try:
        _add_entries(s, entries, metadata)
        s.commit_async(staging, progress=progress)
    except BaseException:
        s.close()
        raise
    return s