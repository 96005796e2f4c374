"""shardpoint: distributed checkpoints (save shards from many ranks, load any box into any number
of ranks), a ctypes binding of libshardpoint's C ABI.

    import numpy as np, shardpoint
    shardpoint.save("/tmp/ckpt", {"w": np.arange(12.0).reshape(3, 4)}, metadata={"step": "7"})
    with shardpoint.Reader("/tmp/ckpt") as r:
        w = r.read_tensor("w", offsets=(1, 0))

libshardpoint is found through the SHARDPOINT_LIBRARY environment variable (a full path), else in
the package itself (shardpoint/_native/, where `pip install` builds it), else as libshardpoint.so.0
through the dynamic loader.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping, TypeVar, cast, overload

import numpy as np

from . import _lib
from . import state as _state
from ._buffer import TensorBuffer, describe
from ._lib import LibraryNotFoundError
from .comm import Collectives, Comm, LocalGroup, MPICollectives
from .convert import convert_from_safetensors, convert_to_safetensors
from .dtypes import DType
from .progress import Progress, ProgressCallback
from .errors import (
    ChecksumError,
    CommError,
    ConflictError,
    DtypeError,
    ExistsError,
    FormatError,
    InternalError,
    InvalidArgumentError,
    IoError,
    KindError,
    NoSpaceError,
    NotDurableError,
    CanceledError,
    NotFoundError,
    OutOfMemoryError,
    PathError,
    RangeError,
    RankError,
    ShapeError,
    ShardpointError,
    StateError,
    TruncatedError,
    UncoveredError,
    VersionError,
)
from .manager import CheckpointManager, Garbage, StepInfo, StepState, delete_checkpoint
from .reader import ChunkInfo, EntryInfo, EntryKind, Load, Reader, StorageInfo, TensorSlice, Transform
from .save import Blob, Chunk, Save, Staging, save, save_async, save_flags
from .writer import Writer

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from ._typing import Array, PathArg, ReaderKwargs, State

_S = TypeVar("_S", bound="State")

__version__ = "0.1.0"

FORMAT_MAJOR = 1  # written unless a save asks for block compression (then 2)
FORMAT_MAJOR_MAX = 2  # the newest major version this library reads


def library_version() -> str:
    """The version string of the loaded libshardpoint ("0.1.0")."""
    version: bytes = _lib.lib().shardpoint_version_string()
    return _lib.decode(version)


def library_path() -> str:
    """The file name libshardpoint was loaded from (as given to the loader)."""
    return _lib.lib()._name


# Without `into` the result is shaped as the checkpoint (known at run time only), hence Any.
@overload
def load(path: PathArg, *, comm: Comm | None = None, into: None = None, progress: ProgressCallback | None = None,
         **reader_options: Unpack[ReaderKwargs]) -> Any: ...
@overload
def load(path: PathArg, *, comm: Comm | None = None, into: _S, progress: ProgressCallback | None = None,
         **reader_options: Unpack[ReaderKwargs]) -> _S: ...


def load(path: PathArg, *, comm: Comm | None = None, into: State | None = None,
         progress: ProgressCallback | None = None, **reader_options: Unpack[ReaderKwargs]) -> Any:
    """Reads every entry of the checkpoint at `path`: tensors as numpy arrays, blobs as bytes.

    Returns a dict {fqn: value}, or, for a checkpoint saved from a nested state (see save()), that
    state rebuilt: its dicts, lists, tuples and plain values. With `into` (a state of the same
    shape, e.g. the one training holds), arrays of `into` whose dtype and shape match are filled
    in place, other values are set into its containers, and `into` is returned; a mismatched
    array raises ShapeError or DtypeError. Single-process convenience; for partial or sharded
    loads use Reader and Load. `progress` is Load.execute's.
    """
    with Reader(path, **reader_options) as reader:
        text = reader.get_metadata(_state.TREE_KEY)
        tree = _state.tree_of(text) if text is not None else None
        if tree is not None:
            wanted = _state.leaf_fqns(tree)
        else:
            wanted = [(e.fqn, "tensor" if e.is_tensor else "bytes", False) for e in reader.entries()]
        in_place: dict[str, Array]
        if into is None:
            in_place = {}
        elif tree is not None:
            in_place = _state.destinations(tree, into)
        else:
            # (a flat checkpoint: `into` is a mapping)
            in_place = {k: v for k, v in cast("Mapping[str, object]", into).items() if type(v) is np.ndarray}
        values: dict[str, object] = {}
        with reader.load(comm) as batch:
            tensors: dict[str, Array] = {}
            for fqn, kind, _ in wanted:
                if kind == "bytes":
                    values[fqn] = batch.add_bytes(fqn)
                    continue
                out = in_place.get(fqn)
                if out is None:
                    entry = reader.entry(fqn)
                    if not entry.is_tensor:  # (stored as a blob after all: load what is stored)
                        values[fqn] = batch.add_bytes(fqn)
                        continue
                    out = np.empty(entry.shape, cast(DType, entry.dtype).array_dtype)
                tensors[fqn] = values[fqn] = out
            batch.add_tensors(tensors)
            batch.execute(progress=progress)
        values = {k: (bytes(v) if isinstance(v, bytearray) else v) for k, v in values.items()}
        loaded = _state.build(tree, values.__getitem__) if tree is not None else values
        return loaded if into is None else _state.fill(into, loaded)


__all__ = [
    "CheckpointManager", "Garbage", "StepInfo", "StepState", "delete_checkpoint",
    "Blob", "ChecksumError", "Chunk", "ChunkInfo", "Collectives", "Comm", "CommError", "ConflictError",
    "convert_from_safetensors", "convert_to_safetensors",
    "DType", "DtypeError", "EntryInfo", "EntryKind", "ExistsError", "FormatError", "InternalError",
    "InvalidArgumentError", "IoError", "KindError", "LibraryNotFoundError", "Load", "LocalGroup",
    "MPICollectives", "NoSpaceError", "NotDurableError", "CanceledError", "Staging", "save_async", "Progress", "ProgressCallback", "NotFoundError", "OutOfMemoryError",
    "PathError", "RangeError", "RankError", "Reader", "Save", "ShapeError", "ShardpointError",
    "StateError", "StorageInfo", "TensorBuffer", "TensorSlice", "Transform", "TruncatedError", "UncoveredError",
    "VersionError", "Writer", "describe", "library_path", "library_version", "load", "save", "save_flags",
]
