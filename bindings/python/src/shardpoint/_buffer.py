"""From a Python object to (pointer, dtype, shape, element strides), without copying.

This is the one tensor path of the binding, used for save sources and load destinations alike.
It understands, in this order:
  1. `__array_interface__` (numpy arrays and the many types that speak it),
  2. `__dlpack__` (torch tensors, JAX, CuPy host arrays, numpy, ...; CPU memory only),
  3. the buffer protocol (bytes, bytearray, memoryview, array.array, mmap, ...), viewed through
     numpy so strided memoryviews keep their strides.
The returned TensorBuffer holds a reference (`owner`) that keeps the memory alive: callers keep the
TensorBuffer until the C library has finished with the pointer.
"""

from __future__ import annotations

import ctypes
import math
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping, Sequence, TypeVar, cast

import numpy as np

from . import _lib
from . import dtypes as _dt
from .dtypes import DType

if TYPE_CHECKING:
    from typing_extensions import Buffer

    from ._typing import DTypeArg, Shape

_S = TypeVar("_S", bound=ctypes.Structure)


class TensorBuffer:
    """Raw description of caller memory. Strides are in elements (the C ABI's unit)."""

    __slots__ = ("ptr", "dtype", "itemsize", "shape", "strides", "readonly", "owner")

    ptr: int
    dtype: DType | None
    itemsize: int
    shape: Shape
    strides: Shape
    readonly: bool
    owner: object

    def __init__(self, ptr: int, dtype: DType | None, itemsize: int, shape: Shape, strides: Shape, readonly: bool,
                 owner: object) -> None:
        self.ptr = ptr
        self.dtype = dtype  # DType, or None when the source's element type has no shardpoint name
        self.itemsize = itemsize
        self.shape = shape
        self.strides = strides
        self.readonly = readonly
        self.owner = owner

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    @property
    def nbytes(self) -> int:
        return self.numel * self.itemsize

    @property
    def c_contiguous(self) -> bool:
        if self.numel == 0:
            return True
        expected = 1
        for size, stride in zip(reversed(self.shape), reversed(self.strides)):
            if size != 1 and stride != expected:
                return False
            expected *= size
        return True

    def c_strides(self) -> Shape | None:
        """Strides for the C ABI: None (C order) when contiguous, else the element strides."""
        return None if self.c_contiguous else self.strides

    def with_dtype(self, dtype: DTypeArg | None) -> DType:
        """The shardpoint dtype to use: `dtype` if given (must match the element size), else ours."""
        if dtype is None:
            if self.dtype is None:
                raise TypeError("the buffer's element type has no shardpoint dtype; pass dtype=")
            return self.dtype
        dt = _dt.to_dtype(dtype)
        if dt.itemsize != self.itemsize:
            raise ValueError(f"dtype {dt} has {dt.itemsize}-byte elements, the buffer has {self.itemsize}-byte ones")
        return dt


def describe(obj: object, *, writable: bool = False) -> TensorBuffer:
    """Describes `obj`'s memory. With writable=True the memory must be writable (load destinations)."""
    if isinstance(obj, TensorBuffer):
        buf = obj
    elif isinstance(obj, np.generic):
        if writable:
            raise TypeError("a numpy scalar is immutable; read into a 0-d array instead")
        arr = np.asarray(obj)  # a scalar is a tiny copy we own
        buf = _from_array_interface(arr, arr.__array_interface__, arr.dtype.name)
    elif type(obj) is np.ndarray:  # the common case, first: no attribute probing
        buf = _from_array_interface(obj, obj.__array_interface__, _dtype_name(obj.dtype))
    elif hasattr(obj, "__array_interface__"):
        iface = obj.__array_interface__
        dtype = getattr(obj, "dtype", None)
        buf = _from_array_interface(obj, iface, _dtype_name(dtype) if isinstance(dtype, np.dtype) else getattr(dtype, "name", None))
    elif hasattr(obj, "__dlpack__"):
        buf = _from_dlpack(obj, writable)
    else:
        try:
            view = memoryview(cast("Buffer", obj))  # memoryview() itself checks: TypeError
        except TypeError:
            raise TypeError(
                f"{type(obj).__name__} exposes no memory (needs __array_interface__, __dlpack__ or the buffer protocol)"
            ) from None
        if writable and view.readonly:
            raise TypeError(f"{type(obj).__name__} is read-only and cannot be a load destination")
        arr = np.asarray(view)  # a view of the exporter's memory, never a copy
        buf = _from_array_interface(arr, arr.__array_interface__, arr.dtype.name)
    if writable and buf.readonly:
        raise TypeError(f"{type(obj).__name__} is read-only and cannot be a load destination")
    return buf


_dtype_names: dict[np.dtype[Any], str] = {}


def _dtype_name(dtype: np.dtype[Any]) -> str:
    """numpy's dtype.name, remembered per dtype (computing it costs microseconds)."""
    name = _dtype_names.get(dtype)
    if name is None:
        name = _dtype_names[dtype] = dtype.name
    return name


def _from_array_interface(owner: object, iface: Mapping[str, Any], dtype_name: str | None) -> TensorBuffer:
    data = iface.get("data")
    if not isinstance(data, tuple):
        # Version 3 lets `data` be a buffer object; numpy resolves that case into a view for us.
        arr = np.asarray(owner)
        return _from_array_interface(arr, arr.__array_interface__, dtype_name)
    ptr, readonly = data
    typestr = iface["typestr"]
    itemsize = int(typestr[2:])
    if typestr[0] == ">" and itemsize > 1:
        raise ValueError("big-endian data: shardpoint stores little-endian; convert with .astype(dtype.newbyteorder('<'))")
    shape = tuple(int(s) for s in iface["shape"])
    byte_strides = iface.get("strides")
    if byte_strides is None:
        strides = _c_order(shape)
    else:
        if any(s % itemsize for s in byte_strides):
            raise ValueError("strides are not a multiple of the element size")
        strides = tuple(int(s) // itemsize for s in byte_strides)
    dtype = _dt.from_typestr(typestr, dtype_name)
    return TensorBuffer(ptr or 0, dtype, itemsize, shape, strides, bool(readonly), owner)


def _c_order(shape: Shape) -> Shape:
    strides: list[int] = []
    step = 1
    for size in reversed(shape):
        strides.append(step)
        step *= max(size, 1)
    return tuple(reversed(strides))


# --- DLPack (dlpack.h) ---------------------------------------------------------------------------

_KDL_CPU = 1
_KDL_CUDA_HOST = 3  # pinned host memory: ordinary CPU memory for us
_FLAG_READ_ONLY = 1
_FLAG_IS_COPIED = 2

_DL_DTYPES = {
    (0, 8): DType.I8, (0, 16): DType.I16, (0, 32): DType.I32, (0, 64): DType.I64,
    (1, 8): DType.U8, (1, 16): DType.U16, (1, 32): DType.U32, (1, 64): DType.U64,
    (2, 16): DType.F16, (2, 32): DType.F32, (2, 64): DType.F64,
    (4, 16): DType.BF16,
    (5, 64): DType.COMPLEX64, (5, 128): DType.COMPLEX128,
    (6, 8): DType.BOOL,
    (10, 8): DType.F8_E4M3FN, (12, 8): DType.F8_E5M2,
}


class _DLDevice(ctypes.Structure):
    _fields_ = [("device_type", ctypes.c_int32), ("device_id", ctypes.c_int32)]


class _DLDataType(ctypes.Structure):
    _fields_ = [("code", ctypes.c_uint8), ("bits", ctypes.c_uint8), ("lanes", ctypes.c_uint16)]


class _DLTensor(ctypes.Structure):
    _fields_ = [
        ("data", ctypes.c_void_p),
        ("device", _DLDevice),
        ("ndim", ctypes.c_int32),
        ("dtype", _DLDataType),
        ("shape", ctypes.POINTER(ctypes.c_int64)),
        ("strides", ctypes.POINTER(ctypes.c_int64)),
        ("byte_offset", ctypes.c_uint64),
    ]


class _DLManagedTensor(ctypes.Structure):
    _fields_ = [("dl_tensor", _DLTensor), ("manager_ctx", ctypes.c_void_p), ("deleter", ctypes.c_void_p)]


class _DLPackVersion(ctypes.Structure):
    _fields_ = [("major", ctypes.c_uint32), ("minor", ctypes.c_uint32)]


class _DLManagedTensorVersioned(ctypes.Structure):
    _fields_ = [
        ("version", _DLPackVersion),
        ("manager_ctx", ctypes.c_void_p),
        ("deleter", ctypes.c_void_p),
        ("flags", ctypes.c_uint64),
        ("dl_tensor", _DLTensor),
    ]


_capsule_valid = ctypes.pythonapi.PyCapsule_IsValid
_capsule_valid.argtypes = [ctypes.py_object, ctypes.c_char_p]
_capsule_valid.restype = ctypes.c_int
_capsule_pointer = ctypes.pythonapi.PyCapsule_GetPointer
_capsule_pointer.argtypes = [ctypes.py_object, ctypes.c_char_p]
_capsule_pointer.restype = ctypes.c_void_p


def _from_dlpack(obj: Any, writable: bool) -> TensorBuffer:
    # obj: a DLPack producer (checked by describe); the signature of its __dlpack__ depends on
    # the DLPack version it speaks, hence Any.
    if hasattr(obj, "__dlpack_device__"):
        device_type = int(obj.__dlpack_device__()[0])
        if device_type not in (_KDL_CPU, _KDL_CUDA_HOST):
            raise ValueError(f"shardpoint reads and writes CPU memory only (DLPack device type {device_type})")
    try:
        # copy=False: a copy would silently drop writes into a load destination.
        capsule = obj.__dlpack__(max_version=(1, 0), copy=False)
    except TypeError:  # a producer from before DLPack 1.0
        capsule = obj.__dlpack__()
    # We borrow the tensor and never rename the capsule: while we hold the capsule the memory is
    # alive, and when it is collected the producer's capsule destructor calls the deleter.
    managed: _DLManagedTensorVersioned | _DLManagedTensor
    if _capsule_valid(capsule, b"dltensor_versioned"):
        managed = _DLManagedTensorVersioned.from_address(_capsule_pointer(capsule, b"dltensor_versioned"))
        if managed.version.major != 1:
            raise BufferError(f"unsupported DLPack major version {managed.version.major}")
        readonly = bool(managed.flags & _FLAG_READ_ONLY)
        if writable and managed.flags & _FLAG_IS_COPIED:
            raise BufferError("the DLPack producer returned a copy; writes into it would be lost")
    elif _capsule_valid(capsule, b"dltensor"):
        managed = _DLManagedTensor.from_address(_capsule_pointer(capsule, b"dltensor"))
        readonly = False  # legacy DLPack cannot say
    else:
        raise TypeError("__dlpack__ did not return a DLPack capsule")
    t = managed.dl_tensor
    if t.device.device_type not in (_KDL_CPU, _KDL_CUDA_HOST):
        raise ValueError("shardpoint reads and writes CPU memory only")
    if t.dtype.lanes != 1 or t.dtype.bits % 8:
        raise TypeError("DLPack vector or sub-byte dtypes are not supported")
    ndim = int(t.ndim)
    shape = tuple(int(t.shape[i]) for i in range(ndim))
    if ndim and t.strides:
        strides = tuple(int(t.strides[i]) for i in range(ndim))
    else:
        strides = _c_order(shape)
    ptr = (t.data or 0) + int(t.byte_offset)
    dtype = _DL_DTYPES.get((int(t.dtype.code), int(t.dtype.bits)))
    return TensorBuffer(ptr, dtype, t.dtype.bits // 8, shape, strides, readonly, (obj, capsule))


# --- The fast path of batched adds: many whole, contiguous numpy arrays ---------------------------
#
# A training state has thousands of small tensors; describing each through TensorBuffer costs
# microseconds apiece. When every array of a batch is a plain C-contiguous numpy array of a
# shardpoint dtype, the batch is described column by column instead and packed into the C ABI's
# struct array with numpy. Anything else takes the general path above.

_plain_codes: dict[np.dtype[Any], int] = {}  # numpy dtype -> shardpoint dtype code (little-endian or single-byte only)


def _plain_code(dtype: np.dtype[Any]) -> int | None:
    code = _plain_codes.get(dtype)
    if code is None:
        found = _dt.from_typestr(dtype.str, dtype.name)
        if found is None or (dtype.str[0] == ">" and dtype.itemsize > 1):
            return None
        code = _plain_codes[dtype] = int(found)
    return code


def plain_arrays(values: Iterable[object], writable: bool = False) -> tuple[list[int], list[int], list[Shape]] | None:
    """(data pointers, dtype codes, shapes) when every value is a C-contiguous numpy ndarray of a
    shardpoint dtype (writable, with writable=True); None otherwise."""
    ptrs: list[int] = []
    codes: list[int] = []
    shapes: list[Shape] = []
    # ctypes' buffer export is the cheapest way to an array's address (a fifth of
    # __array_interface__); it takes writable C-contiguous arrays of at least one byte. (numpy's
    # stubs do not declare the buffer protocol of ndarray, hence the cast.)
    char_at = cast("Callable[[np.ndarray[Any, Any]], ctypes.c_char]", ctypes.c_char.from_buffer)
    address = ctypes.addressof
    for v in values:
        if type(v) is not np.ndarray:
            return None
        code = _plain_codes.get(v.dtype)
        if code is None:
            code = _plain_code(v.dtype)
            if code is None:
                return None
        try:
            ptr = address(char_at(v))
        except (TypeError, ValueError, BufferError):  # read-only, not C-contiguous, or empty
            iface = v.__array_interface__
            ptr, readonly = iface["data"]
            if iface["strides"] is not None or (writable and readonly):  # strides None: C-contiguous
                return None
        ptrs.append(ptr)
        codes.append(code)
        shapes.append(v.shape)
    return ptrs, codes, shapes


def pack_whole(struct: type[_S], names: Sequence[str], codes: Sequence[int], shapes: Sequence[Shape], ptrs: Sequence[int],
               shape_field: str | None, data_field: str) -> tuple[ctypes._Pointer[_S], tuple[object, ...]]:
    """The ctypes struct array `struct` (shardpoint_tensor_chunk or _request) of whole-tensor
    items: fqn, dtype, ndim, the shape in `shape_field` (None: no shape), the pointer in
    `data_field`; every other pointer NULL. Returns (pointer to the first struct, objects to keep alive until the call returns)."""
    n = len(names)
    formats: dict[type, type[np.integer[Any]]] = {ctypes.c_void_p: np.uint64, ctypes.c_int32: np.int32,
                                                  ctypes.c_uint32: np.uint32}
    fields = cast("list[tuple[str, type]]", struct._fields_)  # (name, type) pairs: no bit fields
    rows = np.zeros(max(1, n), dtype=np.dtype({
        "names": [name for name, _ in fields],
        "formats": [formats[ctype] for _, ctype in fields],
        "offsets": [getattr(struct, name).offset for name, _ in fields],
        "itemsize": ctypes.sizeof(struct)}))
    encoded = [_lib.encode(name, "fqn") for name in names]
    blob = b"\0".join(encoded) + b"\0"
    blob_at = cast(int, ctypes.cast(ctypes.c_char_p(blob), ctypes.c_void_p).value)  # never NULL: not empty
    lengths = np.fromiter(map(len, encoded), dtype=np.uint64, count=n)
    ndims = np.fromiter(map(len, shapes), dtype=np.uint32, count=n)
    dims = np.fromiter((d for shape in shapes for d in shape), dtype=np.uint64, count=int(ndims.sum()))
    name_at = np.zeros(n, dtype=np.uint64)
    dims_at = np.zeros(n, dtype=np.uint64)
    if n > 1:
        np.cumsum(lengths[:-1] + 1, out=name_at[1:])
        np.cumsum(ndims[:-1].astype(np.uint64) * 8, out=dims_at[1:])
    if n:
        rows["fqn"][:n] = name_at + blob_at
        rows["dtype"][:n] = codes
        rows["ndim"][:n] = ndims
        if shape_field:  # ndim 0: a NULL shape (the C ABI reads no values)
            rows[shape_field][:n] = np.where(ndims > 0, dims_at + np.uint64(dims.ctypes.data if dims.size else 0), 0)
        rows[data_field][:n] = ptrs
    return ctypes.cast(rows.ctypes.data, ctypes.POINTER(struct)), (rows, blob, dims)
