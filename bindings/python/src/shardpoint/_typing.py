"""Type aliases of the package's annotations.

The modules import this one under `typing.TYPE_CHECKING` only, so it costs nothing at run time
(numpy.typing is not otherwise imported); it stays importable for code that wants the aliases.
"""

from __future__ import annotations

import os
import sys
from typing import Any, Dict, List, Mapping, Optional, Sequence, SupportsIndex, Tuple, TypedDict, Union

import numpy.typing as npt

from .dtypes import DType

if sys.version_info >= (3, 10):
    from types import EllipsisType
else:  # pragma: no cover - Python 3.9
    EllipsisType = type(Ellipsis)

# An array of any dtype: what reads allocate (the dtype is the stored one, known at run time only).
Array = npt.NDArray[Any]

# Shapes, offsets and sizes as the binding returns them, and as it accepts them (Python or numpy ints).
Shape = Tuple[int, ...]
Indices = Sequence[SupportsIndex]

# A checkpoint directory, as os.fsencode accepts it.
PathArg = Union[str, bytes, "os.PathLike[str]", "os.PathLike[bytes]"]

# What dtype= arguments accept: a DType, its int value, a canonical name ("bf16"), or anything
# numpy.dtype() accepts (np.float32, "f4", an np.dtype).
DTypeArg = Union[DType, int, str, npt.DTypeLike]

# One index of a TensorSlice: integers, slices and a single `...` (no newaxis, no arrays).
IndexItem = Union[SupportsIndex, slice, EllipsisType]
TensorIndex = Union[IndexItem, Tuple[IndexItem, ...]]

# A nested training state as save() takes it: dicts (str or int keys), lists and tuples of arrays,
# blobs and plain values. Lists are invariant, hence Any for their items.
State = Union[Mapping[Any, object], List[Any], Tuple[object, ...]]

# A node of the JSON description of a state's tree (state.py): a JSON object.
Node = Dict[str, Any]


class SaveKwargs(TypedDict, total=False):
    """The keyword options of Save, as save() passes them on."""

    overwrite: bool
    durable: bool
    allow_partial: bool
    compression: Union[int, str]
    compression_level: int
    shuffle: bool
    io_threads: int
    alignment: int
    checkpoint_id: Optional[str]
    fsync: Optional[bool]


class ReaderKwargs(TypedDict, total=False):
    """The keyword options of Reader, as load() passes them on (comm is load()'s own)."""

    verify_checksums: bool
    allow_partial: bool
    io_threads: int
