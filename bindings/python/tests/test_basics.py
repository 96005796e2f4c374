"""Library loading, versions, dtypes, errors and the buffer path (no checkpoint I/O)."""

import array
import os
import re
import subprocess
import sys

import numpy as np
import pytest

import shardpoint as sp
from shardpoint import errors
from shardpoint.dtypes import to_dtype


def loaded_library_file():
    sp.library_version()  # make sure it is loaded
    with open("/proc/self/maps") as maps:
        for line in maps:
            if "libshardpoint" in line:
                return line.split()[-1]
    raise AssertionError("libshardpoint is not mapped")


def test_library_version_matches_header():
    assert re.fullmatch(r"0\.\d+\.\d+", sp.library_version())


def test_library_found_by_env_var(tmp_path):
    path = loaded_library_file()
    env = dict(os.environ, SHARDPOINT_LIBRARY=path)
    env.pop("LD_LIBRARY_PATH", None)
    out = subprocess.run(
        [sys.executable, "-c", "import shardpoint; print(shardpoint.library_path(), shardpoint.library_version())"],
        env=env, capture_output=True, text=True, check=True,
    ).stdout.split()
    assert out == [path, sp.library_version()]


def test_bad_env_var_is_a_clear_error():
    env = dict(os.environ, SHARDPOINT_LIBRARY="/nonexistent/libshardpoint.so")
    proc = subprocess.run(
        [sys.executable, "-c", "import shardpoint\ntry:\n shardpoint.Comm.single()\n"
         "except shardpoint.LibraryNotFoundError as e:\n print('LNF', e)"],
        env=env, capture_output=True, text=True, check=True,
    )
    assert proc.stdout.startswith("LNF ") and "/nonexistent/libshardpoint.so" in proc.stdout


@pytest.mark.parametrize("dtype", list(sp.DType))
def test_dtype_sizes_names_and_numpy_carriers(dtype):
    assert dtype.itemsize == dtype.numpy_dtype.itemsize
    assert to_dtype(dtype.canonical_name) is dtype
    assert dtype.canonical_name == str(dtype)
    if not dtype.is_raw:
        assert to_dtype(dtype.numpy_dtype) is dtype


def test_dtype_from_numpy_types():
    assert to_dtype(np.float32) is sp.DType.F32
    assert to_dtype(np.complex128) is sp.DType.COMPLEX128
    assert to_dtype(np.bool_) is sp.DType.BOOL
    with pytest.raises(TypeError):
        to_dtype(np.dtype(">f4"))
    with pytest.raises(TypeError):
        to_dtype(np.dtype("datetime64[s]"))


def test_unknown_dtype_name_carries_einval():
    with pytest.raises(sp.InvalidArgumentError) as info:
        to_dtype("f128")
    err = info.value
    assert err.code == errors.EINVAL == -1
    assert err.name == "SHARDPOINT_EINVAL"
    assert isinstance(err, ValueError) and isinstance(err, sp.ShardpointError)
    assert str(err).startswith("SHARDPOINT_EINVAL")


def test_every_error_class_matches_its_c_name():
    for code, cls in errors._BY_CODE.items():
        name = errors.error_name(code)
        assert name.startswith("SHARDPOINT_E") and name != "SHARDPOINT_UNKNOWN", (code, name)
    assert errors.error_name(-12345) == "SHARDPOINT_UNKNOWN"


# --- the buffer path -------------------------------------------------------------------------


def test_describe_contiguous_numpy_is_zero_copy():
    arr = np.arange(12, dtype=np.float32).reshape(3, 4)
    buf = sp.describe(arr)
    assert buf.ptr == arr.ctypes.data
    assert (buf.dtype, buf.shape, buf.strides) == (sp.DType.F32, (3, 4), (4, 1))
    assert buf.c_contiguous and buf.c_strides() is None and buf.owner is arr


def test_describe_strided_views_use_element_strides():
    arr = np.arange(60, dtype=np.int16).reshape(6, 10)
    view = arr[1::2, ::-3]
    buf = sp.describe(view)
    assert buf.ptr == view.ctypes.data
    assert buf.shape == (3, 4) and buf.strides == (20, -3)
    assert not buf.c_contiguous and buf.c_strides() == (20, -3)
    assert sp.describe(arr.T).strides == (1, 10)


def test_describe_buffer_protocol_objects():
    ro = sp.describe(b"abcdef")
    assert (ro.dtype, ro.shape, ro.readonly) == (sp.DType.U8, (6,), True)
    doubles = array.array("d", [1.0, 2.0, 3.0])
    buf = sp.describe(doubles)
    assert buf.dtype is sp.DType.F64 and buf.ptr == doubles.buffer_info()[0]
    strided = sp.describe(memoryview(bytearray(10))[::2])
    assert strided.shape == (5,) and strided.strides == (2,)
    with pytest.raises(TypeError):
        sp.describe(b"abc", writable=True)
    with pytest.raises(TypeError):
        sp.describe([1, 2, 3])
    with pytest.raises(ValueError):
        sp.describe(np.zeros(3, dtype=">f8"))


def test_describe_holds_the_exporter():
    data = bytearray(16)
    buf = sp.describe(data)
    with pytest.raises(BufferError):
        data.extend(b"x")  # the memory may not move while described
    del buf
    data.extend(b"x")


class DLPackOnly:
    """Speaks only DLPack, like a torch tensor does."""

    def __init__(self, arr):
        self._arr = arr

    def __dlpack__(self, **kwargs):
        return self._arr.__dlpack__(**kwargs)

    def __dlpack_device__(self):
        return self._arr.__dlpack_device__()


def test_describe_dlpack_borrows_memory():
    arr = np.arange(24, dtype=np.float64).reshape(4, 6)[:, 1::2]
    buf = sp.describe(DLPackOnly(arr))
    assert buf.ptr == arr.ctypes.data
    assert (buf.dtype, buf.shape, buf.strides) == (sp.DType.F64, (4, 3), (6, 2))
    frozen = np.arange(3, dtype=np.int32)
    frozen.flags.writeable = False
    assert sp.describe(DLPackOnly(frozen)).readonly
    with pytest.raises((TypeError, BufferError)):
        sp.describe(DLPackOnly(frozen), writable=True)
