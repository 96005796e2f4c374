"""shardpoint dtypes and their numpy counterparts.

numpy has no bf16 or f8 types: those are carried as raw little-endian uint16 / uint8 arrays and
named with an explicit dtype argument (`dtype="bf16"`). Arrays of ml_dtypes' bfloat16 /
float8_e4m3fn / float8_e5m2 are recognised by their dtype name, without importing ml_dtypes.
"""

from __future__ import annotations

import ctypes
import enum
from typing import TYPE_CHECKING, Any

import numpy as np

from . import _lib
from .errors import check

if TYPE_CHECKING:
    from ._typing import DTypeArg


class DType(enum.IntEnum):
    """Values are those of shardpoint_dtype (and of the on-disk format)."""

    BOOL = 0
    U8 = 1
    I8 = 2
    I16 = 3
    I32 = 4
    I64 = 5
    U16 = 6
    U32 = 7
    U64 = 8
    F16 = 9
    BF16 = 10
    F32 = 11
    F64 = 12
    COMPLEX64 = 13
    COMPLEX128 = 14
    F8_E4M3FN = 15
    F8_E5M2 = 16

    @property
    def itemsize(self) -> int:
        return int(_lib.lib().shardpoint_dtype_size(int(self)))

    @property
    def canonical_name(self) -> str:
        """The library's name: "f32", "bf16", "f8_e4m3fn", ..."""
        name: bytes = _lib.lib().shardpoint_dtype_name(int(self))  # NULL only for unknown values
        return _lib.decode(name)

    @property
    def numpy_dtype(self) -> np.dtype[Any]:
        """The numpy dtype arrays of this dtype are read into (raw carrier for bf16 / f8)."""
        return _NUMPY[self]

    @property
    def array_dtype(self) -> np.dtype[Any]:
        """The numpy dtype of the arrays reads allocate: ml_dtypes' bfloat16 / float8 types for
        bf16 / f8 when ml_dtypes is installed (the dtype such arrays were saved from), else
        numpy_dtype. A raw carrier array is still accepted as a destination either way."""
        if self.is_raw:
            extension = _ml_dtypes_types().get(self)
            if extension is not None:
                return extension
        return _NUMPY[self]

    @property
    def is_raw(self) -> bool:
        """True when numpy carries this dtype as raw unsigned integers of the same size."""
        return self in (DType.BF16, DType.F8_E4M3FN, DType.F8_E5M2)

    def __str__(self) -> str:
        return self.name.lower()


_NUMPY: dict[DType, np.dtype[Any]] = {
    DType.BOOL: np.dtype(np.bool_),
    DType.U8: np.dtype("u1"),
    DType.I8: np.dtype("i1"),
    DType.I16: np.dtype("<i2"),
    DType.I32: np.dtype("<i4"),
    DType.I64: np.dtype("<i8"),
    DType.U16: np.dtype("<u2"),
    DType.U32: np.dtype("<u4"),
    DType.U64: np.dtype("<u8"),
    DType.F16: np.dtype("<f2"),
    DType.BF16: np.dtype("<u2"),
    DType.F32: np.dtype("<f4"),
    DType.F64: np.dtype("<f8"),
    DType.COMPLEX64: np.dtype("<c8"),
    DType.COMPLEX128: np.dtype("<c16"),
    DType.F8_E4M3FN: np.dtype("u1"),
    DType.F8_E5M2: np.dtype("u1"),
}

# Array-interface type strings ("<f4", "|b1") without their byte-order character.
_TYPESTR: dict[str, DType] = {
    "b1": DType.BOOL,
    "u1": DType.U8,
    "i1": DType.I8,
    "i2": DType.I16,
    "i4": DType.I32,
    "i8": DType.I64,
    "u2": DType.U16,
    "u4": DType.U32,
    "u8": DType.U64,
    "f2": DType.F16,
    "f4": DType.F32,
    "f8": DType.F64,
    "c8": DType.COMPLEX64,
    "c16": DType.COMPLEX128,
}

_ML_DTYPES: dict[DType, np.dtype[Any]] | None = None


def _ml_dtypes_types() -> dict[DType, np.dtype[Any]]:
    """{DType: numpy dtype} of ml_dtypes' extension types; empty without ml_dtypes. Imported on
    first need only (and tried once)."""
    global _ML_DTYPES
    if _ML_DTYPES is None:
        try:
            import ml_dtypes
        except ImportError:
            _ML_DTYPES = {}
        else:
            _ML_DTYPES = {dt: np.dtype(getattr(ml_dtypes, name)) for name, dt in _EXTENSION_NAMES.items()}
    return _ML_DTYPES


# numpy dtype names of extension types (ml_dtypes) whose bytes are the shardpoint layout.
_EXTENSION_NAMES: dict[str, DType] = {
    "bfloat16": DType.BF16,
    "float8_e4m3fn": DType.F8_E4M3FN,
    "float8_e5m2": DType.F8_E5M2,
}


def from_typestr(typestr: str, name: str | None = None) -> DType | None:
    """The DType of an array-interface type string, or None when shardpoint has no such dtype."""
    if name in _EXTENSION_NAMES:
        return _EXTENSION_NAMES[name]
    return _TYPESTR.get(typestr[1:])


def to_dtype(value: DTypeArg) -> DType:
    """Accepts a DType, its int value, a canonical name ("bf16"), or a numpy dtype / type."""
    if isinstance(value, DType):
        return value
    if isinstance(value, bool):
        raise TypeError("a bool is not a dtype")
    if isinstance(value, int):
        return DType(value)
    if isinstance(value, str):
        out = ctypes.c_int32()
        check(_lib.lib().shardpoint_dtype_from_name(_lib.encode(value, "dtype name"), ctypes.byref(out)))
        return DType(out.value)
    try:
        npdt = np.dtype(value)
    except TypeError:
        raise TypeError(f"cannot interpret {value!r} as a shardpoint dtype") from None
    found = from_typestr(npdt.str, npdt.name)
    if found is None or (npdt.byteorder == ">" and npdt.itemsize > 1):
        raise TypeError(f"numpy dtype {npdt} has no shardpoint equivalent")
    return found
