"""The storage-layer writer: the phases of a save, for hosts that bring their own planner and
collectives (torch.distributed.checkpoint, see shardpoint.torch). One Writer per rank and save:

    w = Writer(path, overwrite=True)
    w.set_up(rank, world_size)
    i = w.plan_tensor("w", "f32", global_shape, offsets, sizes)   # or add_tensor(...) with data
    plan = w.local_plan()                      # -> the coordinator
    w.global_plan(plans)                       # coordinator: every rank's local plan, rank order
    final = w.final_plan(r)                    # coordinator -> rank r
    for i in w.assigned(final): w.bind_tensor(i, data)
    results = w.write(final)                   # -> the coordinator
    w.finish(all_results)                      # coordinator: commits
    w.abort()                                  # on any failure before the commit

Messages are opaque byte strings (FORMAT.md section 7). The Writer keeps every object given to
add_*/bind_* referenced until write() returns; the memory must not change until then.
"""

from __future__ import annotations

import ctypes
from typing import TYPE_CHECKING, Iterable, cast

from . import _lib
from ._buffer import describe
from ._handle import Handle
from .dtypes import to_dtype
from .errors import check
from .save import _indices, save_options

if TYPE_CHECKING:
    from typing_extensions import Buffer

    from ._typing import DTypeArg, Indices, PathArg, Shape


def _message_array(
    messages: Iterable[Buffer],
) -> tuple[int, ctypes.Array[ctypes.c_void_p], ctypes.Array[ctypes.c_uint64], list[ctypes.Array[ctypes.c_char] | None]]:
    """(count, void* array, u64 array, keepalive) for a list of byte strings."""
    blobs = [bytes(m) for m in messages]
    count = len(blobs)
    ptrs = (ctypes.c_void_p * max(count, 1))()
    lens = (ctypes.c_uint64 * max(count, 1))()
    keep: list[ctypes.Array[ctypes.c_char] | None] = []
    for i, blob in enumerate(blobs):
        buf = ctypes.create_string_buffer(blob, len(blob)) if blob else None
        keep.append(buf)
        ptrs[i] = ctypes.cast(buf, ctypes.c_void_p).value if buf is not None else None
        lens[i] = len(blob)
    return count, ptrs, lens, keep


def _take(ptr: ctypes.c_void_p, length: ctypes.c_uint64) -> bytes:
    """Copies a byte string the library returned (owned by the writer) into Python bytes."""
    # (a non-empty string is never at NULL)
    return ctypes.string_at(cast(int, ptr.value), length.value) if length.value else b""


class Writer(Handle):
    """One rank's part of a save driven phase by phase (shardpoint_writer_*).

    Options as for Save: overwrite, durable, allow_partial, compression, compression_level, shuffle,
    io_threads, alignment, checkpoint_id. Items (added or planned) are numbered 0, 1, 2, ... in call order.
    """

    _free_name = "shardpoint_writer_free"

    def __init__(self, path: PathArg, *, overwrite: bool = False, durable: bool = True, allow_partial: bool = False,
                 compression: int | str = 0, compression_level: int = 0, shuffle: bool = False, io_threads: int = 0,
                 alignment: int = 0, checkpoint_id: str | None = None) -> None:
        dll = _lib.lib()
        options = save_options(overwrite=overwrite, durable=durable, allow_partial=allow_partial, compression=compression,
                               compression_level=compression_level, shuffle=shuffle, io_threads=io_threads,
                               alignment=alignment, checkpoint_id=checkpoint_id)
        out = ctypes.c_void_p()
        check(dll.shardpoint_writer_new(ctypes.byref(out), _lib.encode_path(path), ctypes.byref(options)))
        self._adopt(out.value)
        self.path = path
        self.rank: int | None = None
        self.world_size: int | None = None
        # per item: (kind, sizes) as declared, to check what is bound later
        self._items: list[tuple[str, Shape | None]] = []
        self._borrowed: dict[int, object] = {}  # item -> the object whose memory the library reads during write()

    # --- set up and items -----------------------------------------------------------------------

    def set_up(self, rank: int, world_size: int) -> None:
        """This rank's place in the save (rank 0 is the coordinator). Creates the directory."""
        check(_lib.lib().shardpoint_writer_set_up(self._raw(), int(rank), int(world_size)))
        self.rank, self.world_size = int(rank), int(world_size)

    def add_tensor(self, fqn: str, data: object, *, offsets: Indices | None = None, global_shape: Indices | None = None,
                   dtype: DTypeArg | None = None) -> int:
        """Offers `data` (as Save.add_tensor) as a chunk; returns its item number."""
        buf = describe(data)
        dt = buf.with_dtype(dtype)
        offsets, global_shape = self._box(buf.shape, offsets, global_shape)
        check(_lib.lib().shardpoint_writer_add_tensor(
            self._raw(), _lib.encode(fqn, "fqn"), int(dt), buf.ndim,
            _lib.u64_array(global_shape), _lib.u64_array(offsets), _lib.u64_array(buf.shape),
            buf.ptr or None, _lib.i64_array(buf.c_strides()),
        ))
        return self._new_item("tensor", buf.shape, buf)

    def add_bytes(self, fqn: str, data: object) -> int:
        """Offers the bytes of a contiguous buffer as blob `fqn`; returns its item number."""
        buf = describe(data)
        if not buf.c_contiguous:
            raise ValueError("blob data must be contiguous")
        check(_lib.lib().shardpoint_writer_add_bytes(self._raw(), _lib.encode(fqn, "fqn"), buf.ptr or None, buf.nbytes))
        return self._new_item("bytes", None, buf)

    def plan_tensor(self, fqn: str, dtype: DTypeArg, global_shape: Indices, offsets: Indices, sizes: Indices) -> int:
        """Declares the chunk at `offsets` of `sizes` of tensor `fqn` (dtype, global_shape) whose
        memory comes later (bind_tensor); returns its item number."""
        dt = to_dtype(dtype)
        global_shape = _indices(global_shape, len(global_shape), "global_shape")
        offsets = _indices(offsets, len(global_shape), "offsets")
        sizes = _indices(sizes, len(global_shape), "sizes")
        check(_lib.require("shardpoint_writer_plan_tensor")(
            self._raw(), _lib.encode(fqn, "fqn"), int(dt), len(global_shape),
            _lib.u64_array(global_shape), _lib.u64_array(offsets), _lib.u64_array(sizes)))
        return self._new_item("tensor", sizes, None)

    def plan_bytes(self, fqn: str) -> int:
        """Declares blob `fqn` whose bytes (and length) come later (bind_bytes); returns its number."""
        check(_lib.require("shardpoint_writer_plan_bytes")(self._raw(), _lib.encode(fqn, "fqn")))
        return self._new_item("bytes", None, None)

    def set_metadata(self, key: str, value: str) -> None:
        """A user key/value pair (the coordinator's are kept)."""
        check(_lib.lib().shardpoint_writer_set_metadata(
            self._raw(), _lib.encode(key, "metadata key"), _lib.encode(value, "metadata value")))

    def set_framework_metadata(self, key: str, value: str) -> None:
        """Framework metadata stored in the checkpoint (the coordinator's are kept), readable with
        Reader.framework_metadata(key)."""
        check(_lib.require("shardpoint_writer_set_framework_metadata")(
            self._raw(), _lib.encode(key, "framework metadata key"), _lib.encode(value, "framework metadata value")))

    def _box(self, shape: Shape, offsets: Indices | None, global_shape: Indices | None) -> tuple[Shape, Shape]:
        if offsets is None and global_shape is None:
            return (0,) * len(shape), tuple(shape)
        if global_shape is None:
            raise ValueError("offsets given without global_shape")
        if offsets is None:
            offsets = (0,) * len(shape)
        return _indices(offsets, len(shape), "offsets"), _indices(global_shape, len(shape), "global_shape")

    def _new_item(self, kind: str, sizes: Shape | None, borrowed: object) -> int:
        index = len(self._items)
        self._items.append((kind, None if sizes is None else tuple(sizes)))
        if borrowed is not None:
            self._borrowed[index] = borrowed
        return index

    # --- phases ---------------------------------------------------------------------------------

    def local_plan(self) -> bytes:
        """This rank's local plan (bytes), for the coordinator."""
        ptr, length = ctypes.c_void_p(), ctypes.c_uint64()
        check(_lib.lib().shardpoint_writer_local_plan(self._raw(), ctypes.byref(ptr), ctypes.byref(length)))
        return _take(ptr, length)

    def global_plan(self, local_plans: Iterable[Buffer]) -> None:
        """Coordinator: every rank's local plan, in rank order."""
        count, ptrs, lens, _keep = _message_array(local_plans)
        check(_lib.lib().shardpoint_writer_global_plan(self._raw(), count, ptrs, lens))

    def final_plan(self, rank: int) -> bytes:
        """Coordinator, after global_plan: rank `rank`'s final plan (bytes)."""
        ptr, length = ctypes.c_void_p(), ctypes.c_uint64()
        check(_lib.lib().shardpoint_writer_final_plan(self._raw(), int(rank), ctypes.byref(ptr), ctypes.byref(length)))
        return _take(ptr, length)

    def assigned(self, final_plan: Buffer) -> list[int]:
        """The item numbers this rank's final plan tells it to write, as a list."""
        data = bytes(final_plan)
        buf = ctypes.create_string_buffer(data, len(data)) if data else None
        items, count = ctypes.POINTER(ctypes.c_uint32)(), ctypes.c_uint64()
        check(_lib.require("shardpoint_writer_assigned")(
            self._raw(), buf, len(data), ctypes.byref(items), ctypes.byref(count)))
        return [int(items[k]) for k in range(count.value)]

    def bind_tensor(self, item: int, data: object) -> None:
        """Gives planned tensor item `item` its memory (any strides; shape = the planned sizes).
        `data` as for add_tensor, or a TensorBuffer. Read during write()."""
        kind, sizes = self._planned(item, "tensor")
        buf = describe(data)
        if tuple(buf.shape) != sizes:
            raise ValueError(f"item {item} was planned with sizes {sizes}, the data has shape {tuple(buf.shape)}")
        check(_lib.require("shardpoint_writer_bind_tensor")(
            self._raw(), int(item), buf.ptr or None, _lib.i64_array(buf.c_strides())))
        self._borrowed[item] = buf

    def bind_bytes(self, item: int, data: object) -> None:
        """Gives planned bytes item `item` its bytes (a contiguous buffer). Read during write()."""
        self._planned(item, "bytes")
        buf = describe(data)
        if not buf.c_contiguous:
            raise ValueError("blob data must be contiguous")
        check(_lib.require("shardpoint_writer_bind_bytes")(self._raw(), int(item), buf.ptr or None, buf.nbytes))
        self._borrowed[item] = buf

    def _planned(self, item: int, kind: str) -> tuple[str, Shape | None]:
        if not 0 <= int(item) < len(self._items):
            raise IndexError(f"item {item} was never added or planned ({len(self._items)} items)")
        entry = self._items[int(item)]
        if entry[0] != kind:
            raise TypeError(f"item {item} is a {entry[0]} item, not a {kind} item")
        return entry

    def write(self, final_plan: Buffer) -> bytes:
        """Writes what this rank's final plan assigns it; returns the write results (bytes)."""
        data = bytes(final_plan)
        buf = ctypes.create_string_buffer(data, len(data)) if data else None
        ptr, length = ctypes.c_void_p(), ctypes.c_uint64()
        try:
            check(_lib.lib().shardpoint_writer_write(self._raw(), buf, len(data), ctypes.byref(ptr), ctypes.byref(length)))
        finally:
            self._borrowed.clear()  # the library no longer reads them
        return _take(ptr, length)

    def write_bound(self, final_plan: Buffer) -> None:
        """Writes the items bound so far and not yet written (bounded memory: bind a batch,
        write it, drop it, bind the next); write() then writes the rest and returns the results
        of all. Every call of one save passes the same final plan."""
        data = bytes(final_plan)
        buf = ctypes.create_string_buffer(data, len(data)) if data else None
        try:
            check(_lib.require("shardpoint_writer_write_bound")(self._raw(), buf, len(data)))
        finally:
            self._borrowed.clear()  # the library no longer reads them

    def finish(self, write_results: Iterable[Buffer]) -> None:
        """Coordinator: every rank's write results, in rank order (b"" for a rank that wrote
        nothing); builds and commits the metadata."""
        count, ptrs, lens, _keep = _message_array(write_results)
        check(_lib.lib().shardpoint_writer_finish(self._raw(), count, ptrs, lens))

    def abort(self) -> None:
        """Removes this rank's files of this save (nothing once the coordinator committed)."""
        check(_lib.lib().shardpoint_writer_abort(self._raw()))

    @property
    def committed(self) -> bool:
        """True once finish() published the metadata (even if it then raised NotDurableError)."""
        out = ctypes.c_int32()
        check(_lib.lib().shardpoint_writer_committed(self._raw(), ctypes.byref(out)))
        return bool(out.value)

    def close(self) -> None:
        """Frees the writer (releases the coordinator's save lock). Does not abort."""
        super().close()
        self._borrowed.clear()
