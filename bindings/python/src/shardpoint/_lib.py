"""Loading libshardpoint and declaring its C ABI (capi/include/shardpoint.h) for ctypes.

Everything here mirrors the header one to one; the rest of the package only calls `lib()`.

For type checkers, the functions of `lib()` are untyped (ctypes sets their prototypes at run time:
they take what their argtypes convert and return what their restype makes); the structs declare
the Python types of their fields.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import threading
from typing import TYPE_CHECKING, Callable, List, Optional, Sequence, Tuple, cast, overload

from ctypes import (
    CFUNCTYPE,
    POINTER,
    Structure,
    c_char_p,
    c_int,
    c_int32,
    c_int64,
    c_size_t,
    c_uint32,
    c_uint64,
    c_void_p,
)

if TYPE_CHECKING:
    from ._typing import PathArg

# The ABI this binding was written against (shardpoint.h).
ABI_VERSION_MAJOR = 0
ABI_VERSION_MINOR = 1
SONAME = "libshardpoint.so.0"

SAVE_OVERWRITE = 0x1
SAVE_FSYNC = 0x2  # accepted by the library, means nothing: saves are durable by default
SAVE_NO_FSYNC = 0x4
SAVE_ALLOW_PARTIAL = 0x8
LOAD_NO_VERIFY = 0x1
LOAD_ALLOW_PARTIAL = 0x2
ENTRY_TENSOR = 0
ENTRY_BYTES = 1
TRANSFORM_NONE = 0
TRANSFORM_DEFLATE = 1
TRANSFORM_ZLIB_BLOCKS = 2
TRANSFORM_ZSTD_BLOCKS = 3
CODEC_DEFAULT = 0
CODEC_DEFLATE_STREAM = 1
CODEC_ZLIB = 2
CODEC_ZSTD = 3
FILTER_SHUFFLE = 0x1
MANAGER_CREATE = 0x1
MANAGER_OPTIONS_VERSION = 1
METRIC_MIN = 0
METRIC_MAX = 1
STEP_COMMITTED = 0
STEP_PARTIAL = 1
STEP_DAMAGED = 2
RETENTION_DRY_RUN = 0x1
GC_DRY_RUN = 0x1
CONVERT_OVERWRITE = 0x1
CONVERT_SKIP_BYTES = 0x2
CONVERT_NO_FSYNC = 0x4
MAX_NDIM = 32

COMM_CALLBACKS_VERSION = 1
SAVE_OPTIONS_VERSION = 2
LOAD_OPTIONS_VERSION = 1
CONVERT_OPTIONS_VERSION = 1

u64_p = POINTER(c_uint64)
i64_p = POINTER(c_int64)

GatherFn = CFUNCTYPE(c_int, c_void_p, c_void_p, c_uint64, c_void_p)
BroadcastFn = CFUNCTYPE(c_int, c_void_p, c_void_p, c_uint64)
DestroyFn = CFUNCTYPE(None, c_void_p)
ProgressFn = CFUNCTYPE(c_int, c_void_p, c_int32, c_uint64, c_uint64)
RetentionFn = CFUNCTYPE(c_int, c_void_p, c_uint64, c_uint64)
GcFn = CFUNCTYPE(c_int, c_void_p, c_char_p, c_uint64)


class CommCallbacks(Structure):
    _fields_ = [
        ("version", c_uint32),
        ("rank", c_int32),
        ("size", c_int32),
        ("user", c_void_p),
        ("gather", GatherFn),
        ("broadcast", BroadcastFn),
        ("destroy", DestroyFn),
    ]
    version: int
    rank: int
    size: int
    user: int | None
    gather: Callable[..., int]  # instances of GatherFn, BroadcastFn, DestroyFn
    broadcast: Callable[..., int]
    destroy: Callable[..., None]


class SaveOptions(Structure):
    _fields_ = [
        ("version", c_uint32),
        ("flags", c_uint32),
        ("compression_level", c_int32),
        ("io_threads", c_uint32),
        ("alignment", c_uint64),
        ("checkpoint_id", c_char_p),
        ("codec", c_uint32),
        ("filters", c_uint32),
    ]
    version: int
    flags: int
    compression_level: int
    io_threads: int
    alignment: int
    checkpoint_id: bytes | None
    codec: int
    filters: int


class TensorChunk(Structure):
    """shardpoint_tensor_chunk (one element of shardpoint_save_add_tensors' array)."""
    _fields_ = [
        ("fqn", c_void_p),
        ("dtype", c_int32),
        ("ndim", c_uint32),
        ("global_shape", c_void_p),
        ("chunk_offsets", c_void_p),
        ("chunk_sizes", c_void_p),
        ("data", c_void_p),
        ("strides", c_void_p),
    ]
    # Pointers are addresses (int; None is NULL).
    fqn: int | None
    dtype: int
    ndim: int
    global_shape: int | None
    chunk_offsets: int | None
    chunk_sizes: int | None
    data: int | None
    strides: int | None


class TensorRequest(Structure):
    """shardpoint_tensor_request (one element of shardpoint_load_add_tensors' array)."""
    _fields_ = [
        ("fqn", c_void_p),
        ("dtype", c_int32),
        ("ndim", c_uint32),
        ("box_offsets", c_void_p),
        ("box_sizes", c_void_p),
        ("dst", c_void_p),
        ("strides", c_void_p),
    ]
    fqn: int | None
    dtype: int
    ndim: int
    box_offsets: int | None
    box_sizes: int | None
    dst: int | None
    strides: int | None


class LoadOptions(Structure):
    _fields_ = [
        ("version", c_uint32),
        ("flags", c_uint32),
        ("io_threads", c_uint32),
    ]
    version: int
    flags: int
    io_threads: int


class ConvertOptions(Structure):
    """shardpoint_convert_options."""
    _fields_ = [
        ("version", c_uint32),
        ("flags", c_uint32),
        ("max_shard_size", c_uint64),
        ("buffer_size", c_uint64),
        ("save_options", POINTER(SaveOptions)),
        ("progress", ProgressFn),
        ("progress_user", c_void_p),
        ("io_threads", c_uint32),
        ("reserved", c_uint32),
    ]
    version: int
    flags: int
    max_shard_size: int
    buffer_size: int
    save_options: ctypes._Pointer[SaveOptions]
    progress: Callable[..., int]  # a ProgressFn instance (NULL when unset)
    progress_user: int | None
    io_threads: int
    reserved: int


class StorageInfo(Structure):
    _fields_ = [
        ("checkpoint_id", c_char_p),
        ("save_id", c_char_p),
        ("library_version", c_char_p),
        ("created_unix_ns", c_int64),
        ("world_size", c_int32),
        ("format_major", c_uint32),
        ("format_minor", c_uint32),
        ("alignment", c_uint32),
        ("file_count", c_uint64),
        ("total_stored_bytes", c_uint64),
    ]
    # The library's strings are never NULL.
    checkpoint_id: bytes
    save_id: bytes
    library_version: bytes
    created_unix_ns: int
    world_size: int
    format_major: int
    format_minor: int
    alignment: int
    file_count: int
    total_stored_bytes: int


class EntryInfo(Structure):
    _fields_ = [
        ("fqn", c_char_p),
        ("kind", c_int32),
        ("dtype", c_int32),
        ("ndim", c_uint32),
        ("reserved", c_uint32),
        ("shape", u64_p),
        ("chunk_count", c_uint64),
        ("numel", c_uint64),
        ("nbytes", c_uint64),
        ("stored_bytes", c_uint64),
        ("covered_numel", c_uint64),
    ]
    fqn: bytes
    kind: int
    dtype: int
    ndim: int
    reserved: int
    shape: ctypes._Pointer[c_uint64]  # NULL (falsy) when ndim is 0
    chunk_count: int
    numel: int
    nbytes: int
    stored_bytes: int
    covered_numel: int


class ChunkInfo(Structure):
    _fields_ = [
        ("offsets", u64_p),
        ("sizes", u64_p),
        ("file", c_char_p),
        ("file_offset", c_uint64),
        ("stored_length", c_uint64),
        ("raw_length", c_uint64),
        ("crc32", c_uint32),
        ("transform", c_int32),
        ("writer_rank", c_int32),
        ("shuffle_width", c_uint32),
    ]
    offsets: ctypes._Pointer[c_uint64]
    sizes: ctypes._Pointer[c_uint64]
    file: bytes
    file_offset: int
    stored_length: int
    raw_length: int
    crc32: int
    transform: int
    writer_rank: int
    shuffle_width: int


class ManagerOptions(Structure):
    """shardpoint_manager_options."""
    _fields_ = [
        ("version", c_uint32),
        ("flags", c_uint32),
        ("keep_last", c_uint64),
        ("keep_every", c_uint64),
        ("keep_best", c_uint64),
        ("best_metric", c_char_p),
        ("best_mode", c_int32),
        ("reserved", c_uint32),
    ]
    version: int
    flags: int
    keep_last: int
    keep_every: int
    keep_best: int
    best_metric: bytes | None
    best_mode: int
    reserved: int


class StepInfo(Structure):
    """shardpoint_step_info."""
    _fields_ = [
        ("step", c_uint64),
        ("state", c_int32),
        ("busy", c_int32),
        ("path", c_char_p),
        ("bytes", c_uint64),
        ("disk_bytes", c_uint64),
        ("file_count", c_uint64),
        ("time_unix_ns", c_int64),
        ("metric", c_char_p),
        ("message", c_char_p),
    ]
    # (the strings first: below, the field `bytes` hides the type for type checkers)
    path: bytes
    metric: bytes | None
    message: bytes
    step: int
    state: int
    busy: int
    bytes: int
    disk_bytes: int
    file_count: int
    time_unix_ns: int


_handle_p = POINTER(c_void_p)

# A function's (restype, argtypes), as ctypes takes them.
_Prototype = Tuple[Optional[type], List[type]]

# name: (restype, argtypes)
_PROTOTYPES: dict[str, _Prototype] = {
    "shardpoint_version_number": (c_uint32, []),
    "shardpoint_version_string": (c_char_p, []),
    "shardpoint_last_error": (c_char_p, []),
    "shardpoint_last_error_code": (c_int, []),
    "shardpoint_error_name": (c_char_p, [c_int]),
    "shardpoint_dtype_size": (c_uint32, [c_int32]),
    "shardpoint_dtype_name": (c_char_p, [c_int32]),
    "shardpoint_dtype_from_name": (c_int, [c_char_p, POINTER(c_int32)]),
    "shardpoint_comm_new_single": (c_int, [_handle_p]),
    "shardpoint_comm_callbacks_init": (c_int, [POINTER(CommCallbacks), c_uint32]),
    "shardpoint_comm_new_callbacks": (c_int, [_handle_p, POINTER(CommCallbacks)]),
    "shardpoint_comm_rank": (c_int, [c_void_p, POINTER(c_int32)]),
    "shardpoint_comm_size": (c_int, [c_void_p, POINTER(c_int32)]),
    "shardpoint_comm_free": (None, [c_void_p]),
    "shardpoint_save_options_init": (c_int, [POINTER(SaveOptions), c_uint32]),
    "shardpoint_save_new": (c_int, [_handle_p, c_char_p, c_void_p, POINTER(SaveOptions)]),
    "shardpoint_save_add_tensor": (
        c_int,
        [c_void_p, c_char_p, c_int32, c_uint32, u64_p, u64_p, u64_p, c_void_p, i64_p],
    ),
    "shardpoint_save_add_tensors": (c_int, [c_void_p, POINTER(TensorChunk), c_uint64, c_size_t]),
    "shardpoint_save_add_bytes": (c_int, [c_void_p, c_char_p, c_void_p, c_uint64]),
    "shardpoint_save_set_metadata": (c_int, [c_void_p, c_char_p, c_char_p]),
    "shardpoint_save_commit": (c_int, [c_void_p]),
    "shardpoint_save_free": (None, [c_void_p]),
    "shardpoint_load_options_init": (c_int, [POINTER(LoadOptions), c_uint32]),
    "shardpoint_reader_open": (c_int, [_handle_p, c_char_p, POINTER(LoadOptions)]),
    "shardpoint_reader_open_shared": (c_int, [_handle_p, c_char_p, POINTER(LoadOptions), c_void_p]),
    "shardpoint_reader_free": (None, [c_void_p]),
    "shardpoint_reader_storage_info": (c_int, [c_void_p, POINTER(StorageInfo)]),
    "shardpoint_reader_entry_count": (c_int, [c_void_p, u64_p]),
    "shardpoint_reader_entry_info": (c_int, [c_void_p, c_uint64, POINTER(EntryInfo)]),
    "shardpoint_reader_find": (c_int, [c_void_p, c_char_p, u64_p]),
    "shardpoint_reader_chunk_info": (c_int, [c_void_p, c_uint64, c_uint64, POINTER(ChunkInfo)]),
    "shardpoint_reader_metadata_count": (c_int, [c_void_p, u64_p]),
    "shardpoint_reader_metadata_at": (c_int, [c_void_p, c_uint64, POINTER(c_char_p), POINTER(c_char_p)]),
    "shardpoint_reader_metadata_get": (c_int, [c_void_p, c_char_p, POINTER(c_char_p)]),
    "shardpoint_reader_verify": (c_int, [c_void_p]),
    "shardpoint_save_set_progress": (c_int, [c_void_p, ProgressFn, c_void_p]),
    "shardpoint_staging_new": (c_int, [_handle_p, c_uint64]),
    "shardpoint_staging_capacity": (c_int, [c_void_p, u64_p]),
    "shardpoint_staging_free": (None, [c_void_p]),
    "shardpoint_save_staging_size": (c_int, [c_void_p, u64_p]),
    "shardpoint_save_commit_async": (c_int, [c_void_p, c_void_p]),
    "shardpoint_save_wait": (c_int, [c_void_p]),
    "shardpoint_save_poll": (c_int, [c_void_p, POINTER(c_int32)]),
    "shardpoint_save_cancel": (c_int, [c_void_p]),
    "shardpoint_load_set_progress": (c_int, [c_void_p, ProgressFn, c_void_p]),
    "shardpoint_reader_set_progress": (c_int, [c_void_p, ProgressFn, c_void_p]),
    "shardpoint_writer_set_progress": (c_int, [c_void_p, ProgressFn, c_void_p]),
    "shardpoint_load_new": (c_int, [_handle_p, c_void_p, c_void_p]),
    "shardpoint_load_add_tensor": (
        c_int,
        [c_void_p, c_char_p, c_int32, c_uint32, u64_p, u64_p, c_void_p, i64_p],
    ),
    "shardpoint_load_add_tensors": (c_int, [c_void_p, POINTER(TensorRequest), c_uint64, c_size_t]),
    "shardpoint_load_add_bytes": (c_int, [c_void_p, c_char_p, c_void_p, c_uint64]),
    "shardpoint_load_skipped_count": (c_int, [c_void_p, u64_p]),
    "shardpoint_load_execute": (c_int, [c_void_p]),
    "shardpoint_load_free": (None, [c_void_p]),
    "shardpoint_reader_read_tensor": (
        c_int,
        [c_void_p, c_char_p, c_int32, c_uint32, u64_p, u64_p, c_void_p, i64_p],
    ),
    "shardpoint_reader_read_bytes": (c_int, [c_void_p, c_char_p, c_void_p, c_uint64, u64_p]),
    # Conversion to and from safetensors.
    "shardpoint_convert_options_init": (c_int, [POINTER(ConvertOptions), c_uint32]),
    "shardpoint_convert_to_safetensors": (c_int, [c_char_p, c_char_p, POINTER(ConvertOptions)]),
    "shardpoint_convert_from_safetensors": (c_int, [c_char_p, c_char_p, POINTER(ConvertOptions)]),
    "shardpoint_parse_size": (c_int, [c_char_p, u64_p]),
    # The checkpoint manager: steps under a root, retention.
    "shardpoint_manager_options_init": (c_int, [POINTER(ManagerOptions), c_uint32]),
    "shardpoint_manager_open": (c_int, [_handle_p, c_char_p, c_void_p, POINTER(ManagerOptions)]),
    "shardpoint_manager_free": (None, [c_void_p]),
    "shardpoint_manager_step_path": (c_int, [c_void_p, c_uint64, POINTER(c_char_p)]),
    "shardpoint_manager_save_new": (c_int, [_handle_p, c_void_p, c_uint64, POINTER(SaveOptions)]),
    "shardpoint_manager_latest_step": (c_int, [c_void_p, u64_p]),
    "shardpoint_manager_list": (c_int, [c_void_p, u64_p]),
    "shardpoint_manager_step_info": (c_int, [c_void_p, c_uint64, POINTER(StepInfo)]),
    "shardpoint_manager_delete_step": (c_int, [c_void_p, c_uint64]),
    "shardpoint_manager_apply_retention": (c_int, [c_void_p, c_uint32, RetentionFn, c_void_p, u64_p]),
    "shardpoint_manager_gc": (c_int, [c_void_p, c_uint32, GcFn, c_void_p, u64_p, u64_p]),
    "shardpoint_checkpoint_delete": (c_int, [c_char_p]),
    # The storage layer: StorageWriter phases.
    "shardpoint_writer_new": (c_int, [_handle_p, c_char_p, POINTER(SaveOptions)]),
    "shardpoint_writer_free": (None, [c_void_p]),
    "shardpoint_writer_set_up": (c_int, [c_void_p, c_int32, c_int32]),
    "shardpoint_writer_add_tensor": (
        c_int,
        [c_void_p, c_char_p, c_int32, c_uint32, u64_p, u64_p, u64_p, c_void_p, i64_p],
    ),
    "shardpoint_writer_add_bytes": (c_int, [c_void_p, c_char_p, c_void_p, c_uint64]),
    "shardpoint_writer_set_metadata": (c_int, [c_void_p, c_char_p, c_char_p]),
    "shardpoint_writer_local_plan": (c_int, [c_void_p, POINTER(c_void_p), u64_p]),
    "shardpoint_writer_global_plan": (c_int, [c_void_p, c_uint32, POINTER(c_void_p), u64_p]),
    "shardpoint_writer_final_plan": (c_int, [c_void_p, c_uint32, POINTER(c_void_p), u64_p]),
    "shardpoint_writer_write": (c_int, [c_void_p, c_void_p, c_uint64, POINTER(c_void_p), u64_p]),
    "shardpoint_writer_finish": (c_int, [c_void_p, c_uint32, POINTER(c_void_p), u64_p]),
    "shardpoint_writer_abort": (c_int, [c_void_p]),
    "shardpoint_writer_committed": (c_int, [c_void_p, POINTER(c_int32)]),
    # The storage layer: StorageReader (host-planned reads).
    "shardpoint_reader_find_chunk": (c_int, [c_void_p, c_uint64, c_uint32, u64_p, u64_p]),
    "shardpoint_load_add_chunk": (
        c_int,
        [c_void_p, c_char_p, c_int32, c_uint64, c_uint32, u64_p, u64_p, c_void_p, i64_p],
    ),
}

# Declared when the loaded library has them (added after 0.1.0 within the same minor version);
# `require(name)` turns a missing one into a clear LibraryNotFoundError at the point of use.
_OPTIONAL_PROTOTYPES: dict[str, _Prototype] = {
    # Planned items whose data comes later (torch DCP resolves data only in write_data).
    "shardpoint_writer_plan_tensor": (c_int, [c_void_p, c_char_p, c_int32, c_uint32, u64_p, u64_p, u64_p]),
    "shardpoint_writer_plan_bytes": (c_int, [c_void_p, c_char_p]),
    "shardpoint_writer_assigned": (
        c_int, [c_void_p, c_void_p, c_uint64, POINTER(POINTER(c_uint32)), u64_p]),
    "shardpoint_writer_bind_tensor": (c_int, [c_void_p, c_uint64, c_void_p, i64_p]),
    "shardpoint_writer_bind_bytes": (c_int, [c_void_p, c_uint64, c_void_p, c_uint64]),
    "shardpoint_writer_write_bound": (c_int, [c_void_p, c_void_p, c_uint64]),
    # Framework metadata stored in the checkpoint format (shardpoint.torch keeps "torch.dcp" there).
    "shardpoint_writer_set_framework_metadata": (c_int, [c_void_p, c_char_p, c_char_p]),
    "shardpoint_reader_framework_metadata_get": (c_int, [c_void_p, c_char_p, POINTER(c_char_p)]),
    # Bulk metadata (one call for all names, one per entry for its chunk boxes).
    "shardpoint_reader_entry_names": (c_int, [c_void_p, POINTER(c_void_p), u64_p]),
    "shardpoint_reader_chunk_boxes": (c_int, [c_void_p, c_uint64, c_uint64, c_uint64, u64_p, u64_p]),
}


class LibraryNotFoundError(OSError):
    """libshardpoint could not be loaded (or is an incompatible version)."""


_lock = threading.Lock()
_lib: ctypes.CDLL | None = None


# Where a wheel built by pip (pyproject.toml) carries its own copy of the library.
BUNDLED = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_native", SONAME)


def _candidates() -> list[str]:
    explicit = os.environ.get("SHARDPOINT_LIBRARY")
    if explicit:
        # An explicit path is used alone: silently falling back to another copy would hide mistakes.
        return [explicit]
    if os.path.exists(BUNDLED):
        return [BUNDLED]  # the package's own build: the library it was built and tested with
    names = [SONAME]
    found = ctypes.util.find_library("shardpoint")
    if found and found != SONAME:
        names.append(found)
    return names


def _open() -> ctypes.CDLL:
    errors: list[str] = []
    for name in _candidates():
        try:
            dll = ctypes.CDLL(name)
        except OSError as exc:
            errors.append(f"{name}: {exc}")
            continue
        for fname, (restype, argtypes) in _PROTOTYPES.items():
            try:
                fn = getattr(dll, fname)
            except AttributeError:
                raise LibraryNotFoundError(f"{name} lacks the symbol {fname}; is it libshardpoint?") from None
            fn.restype = restype
            fn.argtypes = argtypes
        for fname, (restype, argtypes) in _OPTIONAL_PROTOTYPES.items():
            fn = getattr(dll, fname, None)
            if fn is not None:
                fn.restype = restype
                fn.argtypes = argtypes
        number: int = dll.shardpoint_version_number()
        major, minor = number // 10000, (number // 100) % 100
        # Same SONAME major; an older minor may lack what this binding declares.
        if major != ABI_VERSION_MAJOR or minor < ABI_VERSION_MINOR:
            raise LibraryNotFoundError(
                f"{name} is libshardpoint {dll.shardpoint_version_string().decode()}, "
                f"this binding needs {ABI_VERSION_MAJOR}.{ABI_VERSION_MINOR}.x"
            )
        return dll
    hint = ("install the package with pip (which builds the library into it), set SHARDPOINT_LIBRARY to the full "
            "path of libshardpoint.so, or add its directory to LD_LIBRARY_PATH")
    raise LibraryNotFoundError("cannot load libshardpoint (" + "; ".join(errors) + "); " + hint)


def lib() -> ctypes.CDLL:
    """The loaded library, loaded on first use."""
    global _lib
    if _lib is None:
        with _lock:
            if _lib is None:
                _lib = _open()
    return _lib


def require(name: str) -> Callable[..., int]:
    """The library's function `name`, or LibraryNotFoundError when this libshardpoint predates it."""
    dll = lib()
    if name in _OPTIONAL_PROTOTYPES and getattr(dll, name, None) is None:
        raise LibraryNotFoundError(
            f"libshardpoint {dll.shardpoint_version_string().decode()} ({dll._name}) lacks {name}: "
            "it is older than this binding's storage-layer API (shardpoint.torch needs it)"
        )
    return cast("Callable[..., int]", getattr(dll, name))  # every optional function returns an error code


def has(name: str) -> bool:
    """True when the loaded library exports `name`."""
    return getattr(lib(), name, None) is not None


class Batch:
    """The shapes, offsets, strides and names of a batched add packed into a few arrays, so that
    the structs of the batch can point into them; kept alive until the call returns."""

    def __init__(self) -> None:
        self.dims: list[int] = []      # every uint64 value of every item, concatenated
        self.strides: list[int] = []   # every int64 stride
        self.names: list[bytes] = []   # NUL-terminated UTF-8 names

    def add_dims(self, values: Sequence[int] | None) -> int | None:
        """Position of `values` in the uint64 block, or None for none (the C ABI's NULL)."""
        if not values:
            return None
        at = len(self.dims)
        self.dims.extend(values)
        return at

    def add_strides(self, values: Sequence[int] | None) -> int | None:
        if not values:
            return None
        at = len(self.strides)
        self.strides.extend(values)
        return at

    def add_name(self, name: str) -> int:
        self.names.append(encode(name, "fqn"))
        return len(self.names) - 1

    def freeze(self) -> tuple[int, int, list[int]]:
        """Packs the blocks; returns (dims address, strides address, name addresses)."""
        self._dims = (c_uint64 * max(1, len(self.dims)))(*self.dims)
        self._strides = (c_int64 * max(1, len(self.strides)))(*self.strides)
        self._names = b"\0".join(self.names) + b"\0"
        # (the address of a non-empty bytes object is never NULL)
        base = cast(int, ctypes.cast(ctypes.c_char_p(self._names), c_void_p).value)
        self._keep_names = self._names  # the c_char_p above points into this object
        starts: list[int] = []
        at = 0
        for n in self.names:
            starts.append(base + at)
            at += len(n) + 1
        return ctypes.addressof(self._dims), ctypes.addressof(self._strides), starts


def u64_array(values: Sequence[int]) -> ctypes.Array[c_uint64] | None:
    """A ctypes uint64 array for a shape/offset tuple, or None for ndim 0 (the C ABI accepts NULL)."""
    if not values:
        return None
    return (c_uint64 * len(values))(*values)


def i64_array(values: Sequence[int] | None) -> ctypes.Array[c_int64] | None:
    if values is None or len(values) == 0:
        return None
    return (c_int64 * len(values))(*values)


def encode(text: str, what: str = "string") -> bytes:
    """UTF-8 for the C ABI; an embedded NUL would silently truncate the string, so refuse it."""
    if not isinstance(text, str):
        raise TypeError(f"{what} must be str, not {type(text).__name__}")
    if "\0" in text:
        raise ValueError(f"{what} must not contain NUL characters")
    return text.encode("utf-8")


def encode_path(path: PathArg) -> bytes:
    data = os.fsencode(path)
    if b"\0" in data:
        raise ValueError("path must not contain NUL characters")
    return data


@overload
def decode(data: bytes) -> str: ...
@overload
def decode(data: bytes | None) -> str | None: ...
def decode(data: bytes | None) -> str | None:
    return None if data is None else data.decode("utf-8", errors="replace")
