"""Reading: Reader (an open checkpoint: inspect, verify, read) and Load (batched read requests)."""

from __future__ import annotations

import ctypes
import enum
from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterable, Iterator, Mapping, Sequence, TypeVar, cast, overload

import numpy as np

from . import _lib
from .progress import ProgressCallback, install
from ._buffer import describe, pack_whole, plain_arrays
from ._handle import Handle
from .dtypes import DType, to_dtype
from .errors import EKIND, KindError, NotFoundError, check, error_for, error_name, shape_error
from .save import _comm_ptr, _raise

if TYPE_CHECKING:
    import numpy.typing as npt
    from typing_extensions import Buffer

    from ._buffer import TensorBuffer
    from ._typing import Array, DTypeArg, Indices, PathArg, Shape, TensorIndex
    from .comm import Comm

_T = TypeVar("_T")
_D = TypeVar("_D")


class EntryKind(enum.IntEnum):
    TENSOR = _lib.ENTRY_TENSOR
    BYTES = _lib.ENTRY_BYTES

    def __str__(self) -> str:
        return self.name.lower()


class Transform(enum.IntEnum):
    NONE = _lib.TRANSFORM_NONE
    DEFLATE = _lib.TRANSFORM_DEFLATE
    ZLIB_BLOCKS = _lib.TRANSFORM_ZLIB_BLOCKS
    ZSTD_BLOCKS = _lib.TRANSFORM_ZSTD_BLOCKS

    def __str__(self) -> str:
        return self.name.lower()


@dataclass(frozen=True)
class StorageInfo:
    checkpoint_id: str
    save_id: str
    library_version: str
    created_unix_ns: int
    world_size: int
    format_major: int
    format_minor: int
    alignment: int
    file_count: int
    total_stored_bytes: int


@dataclass(frozen=True)
class EntryInfo:
    fqn: str
    index: int
    kind: EntryKind
    dtype: DType | None  # None for bytes entries
    shape: Shape  # () for bytes entries and 0-d tensors
    chunk_count: int
    numel: int  # bytes entries: the length
    nbytes: int
    stored_bytes: int
    covered_numel: int  # < numel when only part of the tensor was saved

    @property
    def is_tensor(self) -> bool:
        return self.kind == EntryKind.TENSOR


@dataclass(frozen=True)
class ChunkInfo:
    offsets: Shape
    sizes: Shape
    file: str
    file_offset: int
    stored_length: int
    raw_length: int
    crc32: int
    transform: Transform | int  # int for a transform newer than this binding
    writer_rank: int
    shuffle_width: int = 0  # block transforms: element size of the byte shuffle (0: none)


_ENTRY_KINDS = {int(k): k for k in EntryKind}
_DTYPES = {int(d): d for d in DType}
_DTYPES_OF_NUMPY = {np.dtype(np.uint8): DType.U8, np.dtype(np.uint16): DType.U16}


class TensorSlice:
    """A saved tensor, read lazily: `reader["w"][10:20, :]` reads only that box (as safetensors'
    `safe_open(...).get_slice`). Integer indices drop their dimension, slices may have steps
    (the covering box is read, then stepped through), `...` fills dimensions; `np.asarray(s)`
    and `s[...]` read the whole tensor. Arrays come back as read_tensor returns them (raw
    uint16/uint8 carriers for bf16/f8)."""

    __slots__ = ("reader", "info")

    reader: Reader
    info: EntryInfo

    def __init__(self, reader: Reader, info: EntryInfo) -> None:
        self.reader = reader
        self.info = info

    @property
    def shape(self) -> Shape:
        return self.info.shape

    @property
    def dtype(self) -> DType:
        return cast(DType, self.info.dtype)  # a TensorSlice is of a tensor entry

    @property
    def ndim(self) -> int:
        return len(self.info.shape)

    def __len__(self) -> int:
        if not self.info.shape:
            raise TypeError("len() of a 0-d tensor")
        return self.info.shape[0]

    def __getitem__(self, key: TensorIndex) -> Array:
        offsets, sizes, within = _box_of_index(self.info.shape, key)
        if 0 in sizes:
            box = np.empty(sizes, dtype=cast(DType, self.info.dtype).array_dtype)
        else:
            box = self.reader.read_tensor(self.info.fqn, offsets=offsets, sizes=sizes)
        return box[within]

    def __array__(self, dtype: npt.DTypeLike | None = None, copy: bool | None = None) -> Array:
        whole = self[...]
        return whole if dtype is None else whole.astype(dtype, copy=False)

    def __repr__(self) -> str:
        return f"<TensorSlice {self.info.fqn!r} {self.info.dtype} {self.info.shape}>"


def _box_of_index(shape: Shape, index: TensorIndex) -> tuple[Shape, Shape, tuple[int | slice, ...]]:
    """(offsets, sizes) of the box a numpy-style index of `shape` touches, and the index that
    picks the result out of that box."""
    key: tuple[object, ...] = index if isinstance(index, tuple) else (index,)
    if sum(k is Ellipsis for k in key) > 1:
        raise IndexError("an index can only have a single ellipsis ('...')")
    if Ellipsis in key:
        at = key.index(Ellipsis)
        key = key[:at] + (slice(None),) * (len(shape) - len(key) + 1) + key[at + 1:]
    if len(key) > len(shape):
        raise IndexError(f"too many indices: the tensor has {len(shape)} dimensions, {len(key)} were given")
    key = key + (slice(None),) * (len(shape) - len(key))
    offsets: list[int] = []
    sizes: list[int] = []
    within: list[int | slice] = []
    for dim, (k, n) in enumerate(zip(key, shape)):
        if isinstance(k, (int, np.integer)) and not isinstance(k, (bool, np.bool_)):
            i = int(k) + n if int(k) < 0 else int(k)
            if not 0 <= i < n:
                raise IndexError(f"index {int(k)} is out of bounds for dimension {dim} of size {n}")
            offsets.append(i)
            sizes.append(1)
            within.append(0)
        elif isinstance(k, slice):
            picked = range(*k.indices(n))
            if not picked:
                offsets.append(0)
                sizes.append(0)
                within.append(slice(None))
                continue
            lo, hi = min(picked), max(picked) + 1
            offsets.append(lo)
            sizes.append(hi - lo)
            last = picked[-1] - lo + (1 if picked.step > 0 else -1)
            within.append(slice(picked[0] - lo, None if last < 0 else last, picked.step))
        else:
            raise TypeError(f"tensor indices must be integers, slices or '...', not {type(k).__name__}")
    return tuple(offsets), tuple(sizes), tuple(within)


def _tuple(pointer: ctypes._Pointer[ctypes.c_uint64], count: int) -> Shape:
    return tuple(pointer[:count]) if count else ()  # slicing a ctypes pointer: one call, ints


def _kind_error(fqn: str, what: str) -> KindError:
    # Raised before calling C (we cannot size a destination for the wrong kind); carries EKIND.
    return KindError(EKIND, error_name(EKIND), f"{fqn!r} is {what}")


class Reader(Handle):
    """An open checkpoint: validated metadata plus the directory of its data files.

    With `comm` (a Comm) opening is collective: rank 0 alone reads the metadata file and
    broadcasts it, and every rank fails with rank 0's error when it cannot.
    Query functions are thread-safe. Close it (or use `with`) when done; Loads made from it are
    closed with it.
    """

    _free_name = "shardpoint_reader_free"

    def __init__(self, path: PathArg, *, verify_checksums: bool = True, allow_partial: bool = False, io_threads: int = 0,
                 comm: Comm | None = None) -> None:
        dll = _lib.lib()
        options = _lib.LoadOptions()
        check(dll.shardpoint_load_options_init(ctypes.byref(options), _lib.LOAD_OPTIONS_VERSION))
        options.flags = (0 if verify_checksums else _lib.LOAD_NO_VERIFY) | (_lib.LOAD_ALLOW_PARTIAL if allow_partial else 0)
        options.io_threads = int(io_threads)
        out = ctypes.c_void_p()
        # With `comm` the open is collective: rank 0 reads the metadata and broadcasts it.
        code = dll.shardpoint_reader_open_shared(ctypes.byref(out), _lib.encode_path(path), ctypes.byref(options), _comm_ptr(comm))
        if code != 0:
            _raise(code, comm)
        self._adopt(out.value)
        self.path = path
        self.allow_partial = bool(allow_partial)
        self._entries: dict[str, EntryInfo] = {}  # fqn -> EntryInfo: an open reader's metadata never changes

    def __repr__(self) -> str:
        if self.closed:
            return f"<Reader {str(self.path)!r} closed>"
        return f"<Reader {str(self.path)!r} {len(self)} entries>"

    # --- inspection -----------------------------------------------------------------------------

    @property
    def storage_info(self) -> StorageInfo:
        info = _lib.StorageInfo()
        check(_lib.lib().shardpoint_reader_storage_info(self._raw(), ctypes.byref(info)))
        return StorageInfo(
            checkpoint_id=_lib.decode(info.checkpoint_id),
            save_id=_lib.decode(info.save_id),
            library_version=_lib.decode(info.library_version),
            created_unix_ns=info.created_unix_ns,
            world_size=info.world_size,
            format_major=info.format_major,
            format_minor=info.format_minor,
            alignment=info.alignment,
            file_count=info.file_count,
            total_stored_bytes=info.total_stored_bytes,
        )

    def __len__(self) -> int:
        out = ctypes.c_uint64()
        check(_lib.lib().shardpoint_reader_entry_count(self._raw(), ctypes.byref(out)))
        return out.value

    def _entry_at(self, index: int, info: _lib.EntryInfo | None = None) -> EntryInfo:
        info = info or _lib.EntryInfo()
        check(_lib.lib().shardpoint_reader_entry_info(self._raw(), index, ctypes.byref(info)))
        kind = _ENTRY_KINDS.get(info.kind)
        if kind is None:
            kind = EntryKind(info.kind)  # raises: a kind newer than this binding
        dtype: DType | None = None
        if kind is EntryKind.TENSOR:
            dtype = _DTYPES.get(info.dtype)
            if dtype is None:
                dtype = DType(info.dtype)
        entry = object.__new__(EntryInfo)
        # Filled through __dict__: a frozen dataclass's __init__ costs ~2.5 us per entry, which is
        # most of listing a checkpoint of tens of thousands of small tensors.
        entry.__dict__.update(
            fqn=_lib.decode(info.fqn),
            index=index,
            kind=kind,
            dtype=dtype,
            shape=_tuple(info.shape, info.ndim),
            chunk_count=info.chunk_count,
            numel=info.numel,
            nbytes=info.nbytes,
            stored_bytes=info.stored_bytes,
            covered_numel=info.covered_numel,
        )
        return entry

    def _find(self, fqn: str) -> int:
        out = ctypes.c_uint64()
        check(_lib.lib().shardpoint_reader_find(self._raw(), _lib.encode(fqn, "fqn"), ctypes.byref(out)))
        return out.value

    def entries(self) -> list[EntryInfo]:
        """Every entry, sorted by fqn (byte order)."""
        info = _lib.EntryInfo()
        entries = [self._entry_at(i, info) for i in range(len(self))]
        self._entries.update((e.fqn, e) for e in entries)
        return entries

    def entry(self, fqn: str) -> EntryInfo:
        """The entry named `fqn`; raises NotFoundError."""
        info = self._entries.get(fqn)
        if info is None:
            info = self._entries[fqn] = self._entry_at(self._find(fqn))
        return info

    def info(self, fqn: str) -> EntryInfo:
        """The EntryInfo of `fqn` (kind, dtype, shape, chunk count, sizes); raises NotFoundError."""
        return self.entry(fqn)

    def __getitem__(self, fqn: str) -> TensorSlice | bytes:
        """reader["w"]: a TensorSlice of tensor `fqn` (nothing is read until it is indexed or
        converted), or the bytes of blob `fqn`. Raises NotFoundError (also a KeyError)."""
        entry = self.entry(fqn)
        if not entry.is_tensor:
            return self.read_bytes(fqn)
        return TensorSlice(self, entry)

    def __contains__(self, fqn: str) -> bool:
        try:
            self._find(fqn)
        except NotFoundError:
            return False
        return True

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys())

    def keys(self) -> list[str]:
        """Every entry's fqn, sorted (byte order): one call for all of them."""
        names, length = ctypes.c_void_p(), ctypes.c_uint64()
        check(_lib.require("shardpoint_reader_entry_names")(self._raw(), ctypes.byref(names), ctypes.byref(length)))
        if not length.value:
            return []
        return ctypes.string_at(cast(int, names.value), length.value)[:-1].decode("utf-8", errors="replace").split("\0")

    def chunk_boxes(self, entry: int | str | EntryInfo) -> list[tuple[Shape, Shape]]:
        """The (offsets, sizes) of every saved chunk of an entry (an index, fqn or EntryInfo of
        this reader), in one call; () for each chunk of a bytes entry or a 0-d tensor."""
        if isinstance(entry, EntryInfo):
            info = entry
        else:
            info = self._entry_at(entry if isinstance(entry, int) else self._find(entry))
        ndim, count = len(info.shape), info.chunk_count
        if ndim == 0:
            return [((), ())] * count
        offsets_out, sizes_out = (ctypes.c_uint64 * (count * ndim))(), (ctypes.c_uint64 * (count * ndim))()
        check(_lib.require("shardpoint_reader_chunk_boxes")(self._raw(), info.index, 0, count, offsets_out, sizes_out))
        offsets: list[int] = list(offsets_out)
        sizes: list[int] = list(sizes_out)
        return [(tuple(offsets[k:k + ndim]), tuple(sizes[k:k + ndim])) for k in range(0, count * ndim, ndim)]

    def chunks(self, fqn: str) -> list[ChunkInfo]:
        """The saved chunks of entry `fqn` (a bytes entry has one, with empty offsets/sizes)."""
        return self.chunks_of(self.entry(fqn))

    def chunks_of(self, entry: EntryInfo) -> list[ChunkInfo]:
        """The saved chunks of an EntryInfo of this reader (as chunks(), without a name lookup)."""
        ndim = len(entry.shape)
        result: list[ChunkInfo] = []
        for c in range(entry.chunk_count):
            info = _lib.ChunkInfo()
            check(_lib.lib().shardpoint_reader_chunk_info(self._raw(), entry.index, c, ctypes.byref(info)))
            transform: Transform | int
            try:
                transform = Transform(info.transform)
            except ValueError:
                transform = info.transform
            result.append(ChunkInfo(
                offsets=_tuple(info.offsets, ndim),
                sizes=_tuple(info.sizes, ndim),
                file=_lib.decode(info.file),
                file_offset=info.file_offset,
                stored_length=info.stored_length,
                raw_length=info.raw_length,
                crc32=info.crc32,
                transform=transform,
                writer_rank=info.writer_rank,
                shuffle_width=info.shuffle_width,
            ))
        return result

    @property
    def metadata(self) -> dict[str, str]:
        """The user key/value pairs, as a new dict."""
        dll = _lib.lib()
        count = ctypes.c_uint64()
        check(dll.shardpoint_reader_metadata_count(self._raw(), ctypes.byref(count)))
        pairs: dict[str, str] = {}
        for i in range(count.value):
            key, value = ctypes.c_char_p(), ctypes.c_char_p()
            check(dll.shardpoint_reader_metadata_at(self._raw(), i, ctypes.byref(key), ctypes.byref(value)))
            pairs[_lib.decode(cast(bytes, key.value))] = _lib.decode(cast(bytes, value.value))  # never NULL
        return pairs

    @overload
    def get_metadata(self, key: str) -> str | None: ...
    @overload
    def get_metadata(self, key: str, default: _D) -> str | _D: ...

    def get_metadata(self, key: str, default: object = None) -> object:
        value = ctypes.c_char_p()
        code = _lib.lib().shardpoint_reader_metadata_get(self._raw(), _lib.encode(key, "metadata key"), ctypes.byref(value))
        if code == 0:
            return _lib.decode(value.value)
        error = error_for(code)
        if isinstance(error, NotFoundError):
            return default
        raise error

    @overload
    def framework_metadata(self, key: str) -> str | None: ...
    @overload
    def framework_metadata(self, key: str, default: _D) -> str | _D: ...

    def framework_metadata(self, key: str, default: object = None) -> object:
        """The framework metadata stored under `key` (e.g. "torch.dcp"), or `default`."""
        value = ctypes.c_char_p()
        code = _lib.require("shardpoint_reader_framework_metadata_get")(
            self._raw(), _lib.encode(key, "framework metadata key"), ctypes.byref(value))
        if code == 0:
            return _lib.decode(value.value)
        error = error_for(code)
        if isinstance(error, NotFoundError):
            return default
        raise error

    def find_chunk(self, fqn: int | str, offsets: Indices) -> int:
        """The index (for chunks() and Load.add_chunk) of the saved chunk of `fqn` whose box
        starts at `offsets`; NotFoundError when none starts there."""
        index = fqn if isinstance(fqn, int) else self._find(fqn)
        starts = tuple(int(o) for o in offsets)
        if any(o < 0 for o in starts):
            raise ValueError(f"offsets must not be negative: {starts}")
        out = ctypes.c_uint64()
        check(_lib.lib().shardpoint_reader_find_chunk(
            self._raw(), index, len(starts), _lib.u64_array(starts), ctypes.byref(out)))
        return out.value

    def verify(self, *, progress: ProgressCallback | None = None) -> None:
        """Reads every stored extent and checks its CRC-32 (ChecksumError, TruncatedError, ...).

        `progress` reports it (phase "verify") and may cancel it, as in Save.commit. The reader
        has one progress slot: verify with `progress` from one thread at a time.
        """
        raw = self._raw()
        dll = _lib.lib()
        if progress is None:
            check(dll.shardpoint_reader_verify(raw))
            return
        reporter = install(lambda f: dll.shardpoint_reader_set_progress(raw, f, None), progress)
        try:
            code = dll.shardpoint_reader_verify(raw)
        finally:
            dll.shardpoint_reader_set_progress(raw, _lib.ProgressFn(), None)  # NULL: reports off
            if reporter is not None:
                reporter.finish()
        check(code)

    # --- reading --------------------------------------------------------------------------------

    @overload
    def read_tensor(self, fqn: str, out: None = None, *, offsets: Indices | None = None, sizes: Indices | None = None,
                    dtype: DTypeArg | None = None) -> Array: ...
    @overload
    def read_tensor(self, fqn: str, out: _T, *, offsets: Indices | None = None, sizes: Indices | None = None,
                    dtype: DTypeArg | None = None) -> _T: ...

    def read_tensor(self, fqn: str, out: object = None, *, offsets: Indices | None = None,
                    sizes: Indices | None = None, dtype: DTypeArg | None = None) -> object:
        """Reads tensor `fqn`, or the box of it at `offsets` with `sizes`.

        Without `out`, returns a new C-order numpy array whose numpy dtype is DType.array_dtype
        (for bf16/f8: ml_dtypes' type when ml_dtypes is installed, else raw uint16/uint8): the whole tensor, or the box at `offsets` (default: the
        origin) of `sizes` (default: up to the end of every dimension).
        With `out` (any writable array/buffer, strides allowed), it is filled in place and
        returned. Without offsets and sizes, `out` receives the whole tensor and must have its
        shape exactly (ShapeError otherwise, naming both shapes); a box is only read when asked
        for: with `offsets` and/or `sizes` the box has out's shape (`sizes`, when given, must
        equal it). `dtype` overrides the dtype requested from the library; nothing is converted,
        so a mismatch with the stored dtype raises DtypeError.
        """
        request = _tensor_request(self, fqn, out, offsets, sizes, dtype)
        buf, dt, starts, result = request
        check(_lib.lib().shardpoint_reader_read_tensor(
            self._raw(), _lib.encode(fqn, "fqn"), int(dt), buf.ndim,
            _lib.u64_array(starts), _lib.u64_array(buf.shape), buf.ptr or None, _lib.i64_array(buf.c_strides()),
        ))
        return result

    @overload
    def read_bytes(self, fqn: str, out: None = None) -> bytes: ...
    @overload
    def read_bytes(self, fqn: str, out: Buffer) -> int: ...

    def read_bytes(self, fqn: str, out: Buffer | None = None) -> bytes | int:
        """Reads blob `fqn`: returns bytes, or, with `out` (a writable contiguous buffer of at
        least the blob's length), fills it and returns the blob's length."""
        target: object
        if out is None:
            entry = self.entry(fqn)
            target = bytearray(entry.nbytes)  # a tensor entry gets here too: the library says EKIND
        else:
            target = out
        buf = _bytes_destination(target)
        length = ctypes.c_uint64()
        check(_lib.lib().shardpoint_reader_read_bytes(
            self._raw(), _lib.encode(fqn, "fqn"), buf.ptr or None, buf.nbytes, ctypes.byref(length)))
        if out is None:
            return bytes(target)
        return length.value

    def load(self, comm: Comm | None = None) -> Load:
        """A new Load of this checkpoint (collective over `comm` when given)."""
        return Load(self, comm)


def _bytes_destination(out: object) -> TensorBuffer:
    buf = describe(out, writable=True)
    if not buf.c_contiguous:
        raise ValueError("a blob destination must be contiguous")
    return buf


def _entry_or_none(reader: Reader, fqn: str) -> EntryInfo | None:
    try:
        return reader.entry(fqn)
    except NotFoundError:
        return None


def _tensor_request(reader: Reader, fqn: str, out: object, offsets: Indices | None, sizes: Indices | None,
                    dtype: DTypeArg | None) -> tuple[TensorBuffer, DType, Shape, object]:
    """(destination buffer, dtype, offsets, object to return) for one tensor read."""
    result: object
    starts: Shape
    entry: EntryInfo | None
    if out is None:
        entry = reader.entry(fqn)
        if not entry.is_tensor:
            raise _kind_error(fqn, "a bytes entry; use read_bytes")
        dt = cast(DType, entry.dtype) if dtype is None else to_dtype(dtype)  # a tensor entry has a dtype
        shape = entry.shape
        if offsets is None:
            offsets = (0,) * len(shape)
        starts = tuple(int(o) for o in offsets)
        if sizes is None:
            sizes = tuple(max(0, s - o) for s, o in zip(shape, starts))
        result = np.empty(tuple(int(s) for s in sizes), dtype=dt.array_dtype)
        buf = describe(result, writable=True)
    else:
        buf = describe(out, writable=True)
        entry = _entry_or_none(reader, fqn)
        if dtype is not None:
            dt = buf.with_dtype(dtype)
        else:
            dt = buf.with_dtype(None)
            if dt in (DType.U8, DType.U16) and entry is not None and entry.is_tensor:
                # A raw uint8/uint16 carrier reads bf16/f8 tensors (as read_tensor returns them).
                stored = cast(DType, entry.dtype)
                if stored.is_raw and stored.numpy_dtype.itemsize == buf.itemsize:
                    dt = stored
        if offsets is None and sizes is None:
            # The whole tensor: the destination must have its shape, not merely room for it.
            # (A missing entry or a bytes entry is left to the library: ENOTFOUND, a skip under
            # allow_partial, or EKIND.)
            if entry is not None and entry.is_tensor and buf.shape != entry.shape:
                raise shape_error(f"destination has shape {buf.shape} but {fqn!r} is {entry.shape}")
            offsets = (0,) * buf.ndim
        elif sizes is not None and tuple(int(s) for s in sizes) != buf.shape:
            raise shape_error(f"destination has shape {buf.shape} but the requested box of {fqn!r} "
                              f"has sizes {tuple(int(s) for s in sizes)}")
        if offsets is None:
            offsets = (0,) * buf.ndim
        starts = tuple(int(o) for o in offsets)
        result = out
    if len(starts) != buf.ndim:
        raise ValueError(f"offsets has {len(starts)} values, the box has {buf.ndim} dimensions")
    if any(o < 0 for o in starts):
        raise ValueError(f"offsets must not be negative: {starts}")
    return buf, dt, starts, result


class Load(Handle):
    """A batch of read requests executed together (collectively when given a communicator).

    Destinations are borrowed: the Load keeps a reference to each until execute() returns (or
    the Load is closed); they must not move or be freed before.
    """

    _free_name = "shardpoint_load_free"

    def __init__(self, reader: Reader, comm: Comm | None = None) -> None:
        out = ctypes.c_void_p()
        check(_lib.lib().shardpoint_load_new(ctypes.byref(out), reader._raw(), _comm_ptr(comm)))
        self._adopt(out.value)
        self._reader = reader
        self._comm = comm
        reader._register(self)
        if comm is not None:
            comm._register(self)
        self._borrowed: list[object] = []
        self.executed = False

    @overload
    def add_tensor(self, fqn: str, out: None = None, *, offsets: Indices | None = None, sizes: Indices | None = None,
                   dtype: DTypeArg | None = None) -> Array | None: ...
    @overload
    def add_tensor(self, fqn: str, out: _T, *, offsets: Indices | None = None, sizes: Indices | None = None,
                   dtype: DTypeArg | None = None) -> _T: ...

    def add_tensor(self, fqn: str, out: object = None, *, offsets: Indices | None = None,
                   sizes: Indices | None = None, dtype: DTypeArg | None = None) -> object:
        """Requests a box of tensor `fqn` (arguments as Reader.read_tensor). Returns the
        destination, filled by execute(); None when the entry is missing and the reader allows
        partial loads (only possible without `out`)."""
        if out is None and self._reader.allow_partial and fqn not in self._reader:
            return None
        buf, dt, starts, result = _tensor_request(self._reader, fqn, out, offsets, sizes, dtype)
        check(_lib.lib().shardpoint_load_add_tensor(
            self._raw(), _lib.encode(fqn, "fqn"), int(dt), buf.ndim,
            _lib.u64_array(starts), _lib.u64_array(buf.shape), buf.ptr or None, _lib.i64_array(buf.c_strides()),
        ))
        self._borrowed.append(buf)
        return result

    def add_tensors(self, destinations: Mapping[str, object] | Iterable[tuple[str, object]]) -> None:
        """Requests many whole tensors in one call of the library: `destinations` maps fqn to a
        writable array of the tensor's shape (or is an iterable of such pairs), filled by
        execute(). The dtype is the array's, as for add_tensor (a uint8/uint16 array carries a
        bf16/f8 tensor). All or nothing: when one request is refused none of them is kept and
        the error names its position; missing entries are skipped under allow_partial.
        """
        names: list[str]
        outs: list[object]
        if hasattr(destinations, "items"):
            mapping = cast("Mapping[str, object]", destinations)  # anything with items() is taken as a mapping
            names, outs = list(mapping.keys()), list(mapping.values())
        else:
            pairs = list(destinations)
            names, outs = [p[0] for p in pairs], [p[1] for p in pairs]
        if self._add_plain(names, outs):
            return
        batch = _lib.Batch()
        bufs: list[TensorBuffer] = []
        rows: list[tuple[int, int, int, int | None, int | None, int | None, int | None]] = []
        for fqn, out in zip(names, outs):
            buf, dt, offsets, _ = _tensor_request(self._reader, fqn, out, None, None, None)
            rows.append((batch.add_name(fqn), int(dt), buf.ndim, batch.add_dims(offsets), batch.add_dims(buf.shape),
                         buf.ptr or None, batch.add_strides(buf.c_strides())))
            bufs.append(buf)
        dims, strides, name_addresses = batch.freeze()
        requests = (_lib.TensorRequest * max(1, len(rows)))()
        for request, (name, code, ndim, offsets_at, sizes_at, ptr, strides_at) in zip(requests, rows):
            request.fqn = name_addresses[name]
            request.dtype = code
            request.ndim = ndim
            # ndim 0: no sizes, and a NULL box_sizes would mean "whole": zero-length arrays say it too
            request.box_offsets = dims if offsets_at is None else dims + 8 * offsets_at
            request.box_sizes = dims if sizes_at is None else dims + 8 * sizes_at
            request.dst = ptr
            request.strides = None if strides_at is None else strides + 8 * strides_at
        check(_lib.lib().shardpoint_load_add_tensors(
            self._raw(), requests, len(rows), ctypes.sizeof(_lib.TensorRequest)))
        self._borrowed.extend(bufs)

    def _add_plain(self, names: Sequence[str], outs: Sequence[object]) -> bool:
        """The fast path of add_tensors: when every destination is a writable C-contiguous numpy
        array whose dtype and shape are those of its saved entry, the requests are packed column
        by column. Returns False (nothing added) when any of them needs the general path."""
        plain = plain_arrays(outs, writable=True)
        if plain is None:
            return False
        ptrs, codes, shapes = plain
        known = self._reader._entries
        for i, (fqn, code, shape) in enumerate(zip(names, codes, shapes)):
            entry = known.get(fqn)
            if entry is None or entry.kind is not EntryKind.TENSOR or entry.shape != shape:
                return False  # not listed yet, or an error to report: the general path
            if code != entry.dtype:
                stored = cast(DType, entry.dtype)  # a tensor entry has a dtype
                if not (stored.is_raw and code in (DType.U8, DType.U16) and
                        code == _DTYPES_OF_NUMPY.get(stored.numpy_dtype)):
                    return False  # a cast (or a mismatch to report): the general path
                codes[i] = int(stored)  # a uint8/uint16 carrier of a bf16/f8 tensor
        # No box (NULL offsets and sizes): the whole tensor, into C-order memory of its shape.
        first, keep = pack_whole(_lib.TensorRequest, names, codes, shapes, ptrs, None, "dst")
        check(_lib.lib().shardpoint_load_add_tensors(self._raw(), first, len(names), ctypes.sizeof(_lib.TensorRequest)))
        self._borrowed.extend(outs)
        return True

    @overload
    def add_bytes(self, fqn: str, out: None = None) -> bytearray | None: ...
    @overload
    def add_bytes(self, fqn: str, out: _T) -> _T: ...

    def add_bytes(self, fqn: str, out: object = None) -> object:
        """Requests blob `fqn` into `out` (default: a new bytearray of the blob's length), which is
        returned and filled by execute(); None when missing under allow_partial without `out`."""
        if out is None:
            if self._reader.allow_partial and fqn not in self._reader:
                return None
            out = bytearray(self._reader.entry(fqn).nbytes)
        buf = _bytes_destination(out)
        check(_lib.lib().shardpoint_load_add_bytes(self._raw(), _lib.encode(fqn, "fqn"), buf.ptr or None, buf.nbytes))
        self._borrowed.append(buf)
        return out

    def add_chunk(self, fqn: str, chunk: int, out: _T, *, storage_offsets: Indices | None = None,
                  dtype: DTypeArg | None = None) -> _T:
        """Requests the box of saved chunk `chunk` of tensor `fqn` that starts at `storage_offsets`
        (relative to the chunk; default its origin) and has out's shape, into `out` (any writable
        array or TensorBuffer, strides allowed). `dtype` defaults to out's; it must be the stored
        one. Returns `out`, filled by execute()."""
        buf = describe(out, writable=True)
        dt = buf.with_dtype(dtype)
        if storage_offsets is None:
            storage_offsets = (0,) * buf.ndim
        starts = tuple(int(o) for o in storage_offsets)
        if len(starts) != buf.ndim:
            raise ValueError(f"storage_offsets has {len(starts)} values, the box has {buf.ndim} dimensions")
        if any(o < 0 for o in starts):
            raise ValueError(f"storage_offsets must not be negative: {starts}")
        check(_lib.lib().shardpoint_load_add_chunk(
            self._raw(), _lib.encode(fqn, "fqn"), int(dt), int(chunk), buf.ndim,
            _lib.u64_array(starts), _lib.u64_array(buf.shape), buf.ptr or None,
            _lib.i64_array(buf.c_strides()),
        ))
        self._borrowed.append(buf)
        return out

    @property
    def skipped_count(self) -> int:
        """Requests skipped because their entry is missing (allow_partial)."""
        out = ctypes.c_uint64()
        check(_lib.lib().shardpoint_load_skipped_count(self._raw(), ctypes.byref(out)))
        return out.value

    def execute(self, *, progress: ProgressCallback | None = None) -> None:
        """Reads every requested byte into the destinations (collective with a communicator).

        `progress` reports this rank's read (phase "read") and may cancel it, as in
        Save.commit; the destinations may then hold partial data.
        """
        raw = self._raw()
        reporter = install(lambda f: _lib.lib().shardpoint_load_set_progress(raw, f, None), progress)
        try:
            code = _lib.lib().shardpoint_load_execute(raw)
        finally:
            self._borrowed.clear()
            if reporter is not None:
                reporter.finish()
        if code != 0:
            _raise(code, self._comm)
        self.executed = True

    def close(self) -> None:
        super().close()
        self._borrowed.clear()
