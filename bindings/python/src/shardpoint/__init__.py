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

import numpy as np

from . import _lib
from ._buffer import TensorBuffer, describe
from ._lib import LibraryNotFoundError
from .comm import Collectives, Comm, LocalGroup, MPICollectives
from .dtypes import DType
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
from .reader import ChunkInfo, EntryInfo, EntryKind, Load, Reader, StorageInfo, TensorSlice, Transform
from .save import Blob, Chunk, Save, save, save_flags
from .writer import Writer

__version__ = "0.1.0"

FORMAT_MAJOR = 1  # written unless a save asks for block compression (then 2)
FORMAT_MAJOR_MAX = 2  # the newest major version this library reads


def library_version():
    """The version string of the loaded libshardpoint ("0.1.0")."""
    return _lib.decode(_lib.lib().shardpoint_version_string())


def library_path():
    """The file name libshardpoint was loaded from (as given to the loader)."""
    return _lib.lib()._name


def load(path, *, comm=None, **reader_options):
    """Reads every entry of the checkpoint at `path` into a dict: tensors as numpy arrays, blobs as
    bytes. Single-process convenience; for partial or sharded loads use Reader and Load."""
    with Reader(path, **reader_options) as reader:
        result = {}
        with reader.load(comm) as batch:
            tensors = {}
            for entry in reader.entries():
                if entry.is_tensor:
                    tensors[entry.fqn] = result[entry.fqn] = np.empty(entry.shape, entry.dtype.numpy_dtype)
                else:
                    result[entry.fqn] = batch.add_bytes(entry.fqn)
            batch.add_tensors(tensors)
            batch.execute()
        return {k: (bytes(v) if isinstance(v, bytearray) else v) for k, v in result.items()}


__all__ = [
    "Blob", "ChecksumError", "Chunk", "ChunkInfo", "Collectives", "Comm", "CommError", "ConflictError",
    "DType", "DtypeError", "EntryInfo", "EntryKind", "ExistsError", "FormatError", "InternalError",
    "InvalidArgumentError", "IoError", "KindError", "LibraryNotFoundError", "Load", "LocalGroup",
    "MPICollectives", "NoSpaceError", "NotDurableError", "NotFoundError", "OutOfMemoryError",
    "PathError", "RangeError", "RankError", "Reader", "Save", "ShapeError", "ShardpointError",
    "StateError", "StorageInfo", "TensorBuffer", "TensorSlice", "Transform", "TruncatedError", "UncoveredError",
    "VersionError", "Writer", "describe", "library_path", "library_version", "load", "save", "save_flags",
]
