"""Save and load back: dtypes, strided sources and destinations, blobs, metadata, helpers."""

import array

import numpy as np
import pytest

import shardpoint as sp

NUMPY_DTYPES = [
    (sp.DType.BOOL, np.bool_), (sp.DType.U8, np.uint8), (sp.DType.I8, np.int8), (sp.DType.I16, np.int16),
    (sp.DType.I32, np.int32), (sp.DType.I64, np.int64), (sp.DType.U16, np.uint16), (sp.DType.U32, np.uint32),
    (sp.DType.U64, np.uint64), (sp.DType.F16, np.float16), (sp.DType.F32, np.float32),
    (sp.DType.F64, np.float64), (sp.DType.COMPLEX64, np.complex64), (sp.DType.COMPLEX128, np.complex128),
]


def random_array(rng, npdtype, shape):
    raw = rng.integers(0, 256, size=int(np.prod(shape)) * np.dtype(npdtype).itemsize, dtype=np.uint8)
    if npdtype is np.bool_:
        raw %= 2
    return raw.view(npdtype).reshape(shape)


@pytest.mark.parametrize("dtype,npdtype", NUMPY_DTYPES, ids=[str(d) for d, _ in NUMPY_DTYPES])
def test_roundtrip_numpy_dtypes(ckpt, rng, dtype, npdtype):
    data = random_array(rng, npdtype, (5, 7))
    sp.save(ckpt, {"t": data})
    with sp.Reader(ckpt) as reader:
        entry = reader.entry("t")
        assert (entry.kind, entry.dtype, entry.shape) == (sp.EntryKind.TENSOR, dtype, (5, 7))
        back = reader.read_tensor("t")
    assert back.dtype == np.dtype(npdtype)
    assert back.tobytes() == data.tobytes()  # bytes: NaN payloads must survive too


@pytest.mark.parametrize("name,carrier", [("bf16", np.uint16), ("f8_e4m3fn", np.uint8), ("f8_e5m2", np.uint8)])
def test_raw_dtypes_need_an_explicit_dtype(ckpt, rng, name, carrier):
    raw = random_array(rng, carrier, (4, 6))
    with sp.Save(ckpt) as s:
        s.add_tensor("raw", raw, dtype=name)
        s.add_tensor("plain", raw)
    with sp.Reader(ckpt) as reader:
        assert reader.entry("raw").dtype is sp.DType[name.upper()]
        assert reader.entry("plain").dtype is sp.DType(sp.describe(raw).dtype)
        back = reader.read_tensor("raw")
        assert back.dtype == np.dtype(carrier) and np.array_equal(back, raw)
        out = np.zeros((2, 6), dtype=carrier)  # the raw carrier is accepted as a destination
        reader.read_tensor("raw", out, offsets=(2, 0))
        assert np.array_equal(out, raw[2:])


def test_explicit_dtype_must_match_element_size(ckpt):
    with sp.Save(ckpt) as s:
        with pytest.raises(ValueError, match="element"):
            s.add_tensor("x", np.zeros(4, dtype=np.float32), dtype="bf16")
        s.add_tensor("y", np.zeros(4, dtype=np.float32), dtype="i32")  # same size: a reinterpretation
    with sp.Reader(ckpt) as reader:
        assert reader.entry("y").dtype is sp.DType.I32


def test_scalar_and_empty_tensors(ckpt):
    sp.save(ckpt, {"step": np.int64(1234), "zero_d": np.array(2.5), "empty": np.zeros((0, 4), np.float32)})
    with sp.Reader(ckpt) as reader:
        assert reader.entry("step").shape == () and reader.entry("step").numel == 1
        assert reader.read_tensor("step")[()] == 1234
        assert reader.read_tensor("zero_d")[()] == 2.5
        empty = reader.entry("empty")
        assert empty.shape == (0, 4) and empty.numel == 0 and empty.nbytes == 0
        assert reader.read_tensor("empty").shape == (0, 4)


STRIDED_VIEWS = {
    "step_slices": lambda a: a[::2, 1::3],
    "transposed": lambda a: a.T,
    "negative": lambda a: a[::-1, ::-2],
    "broadcast": lambda a: np.broadcast_to(a[0], (4, 8)),
    "column": lambda a: a[:, 5],
}


@pytest.mark.parametrize("name", list(STRIDED_VIEWS))
def test_non_contiguous_sources_are_saved_in_place(ckpt, name):
    base = np.arange(48, dtype=np.float64).reshape(6, 8)
    view = STRIDED_VIEWS[name](base)
    if name != "broadcast":
        assert not view.flags.c_contiguous
    sp.save(ckpt, {"v": view})
    with sp.Reader(ckpt) as reader:
        assert np.array_equal(reader.read_tensor("v"), view)


def test_source_memory_is_borrowed_not_copied(ckpt):
    data = np.zeros((3, 3), dtype=np.int32)
    view = data[:, ::2]
    with sp.Save(ckpt) as s:
        s.add_tensor("whole", data)
        s.add_tensor("view", view)
        data[1, :] = 7  # after add_tensor, before commit: the commit must see it
    with sp.Reader(ckpt) as reader:
        assert reader.read_tensor("whole")[1].tolist() == [7, 7, 7]
        assert reader.read_tensor("view")[1].tolist() == [7, 7]


def test_strided_destinations(ckpt):
    data = np.arange(4 * 5, dtype=np.float32).reshape(4, 5)
    sp.save(ckpt, {"d": data})
    big = np.zeros((8, 10), dtype=np.float32)
    dest = big[1::2, ::-2]
    with sp.Reader(ckpt) as reader:
        assert reader.read_tensor("d", dest) is dest
        fortran = np.zeros((4, 5), dtype=np.float32, order="F")
        reader.read_tensor("d", fortran)
    assert np.array_equal(dest, data) and np.array_equal(fortran, data)
    untouched = np.ones(big.shape, bool)
    untouched[1::2, ::-2] = False
    assert not big[untouched].any()  # nothing outside the view was written


def test_buffer_protocol_sources_and_destinations(ckpt):
    doubles = array.array("d", [0.5, 1.5, 2.5, 3.5])
    every_other = memoryview(bytearray(range(10)))[::2]
    sp.save(ckpt, {"doubles": doubles, "every_other": sp.Chunk(every_other, (0,), (5,))})
    with sp.Reader(ckpt) as reader:
        assert reader.entry("doubles").dtype is sp.DType.F64
        assert reader.read_tensor("doubles").tolist() == [0.5, 1.5, 2.5, 3.5]
        assert reader.read_tensor("every_other").tolist() == [0, 2, 4, 6, 8]
        dest = array.array("d", [0.0] * 2)
        reader.read_tensor("doubles", dest, offsets=(2,))
        assert dest.tolist() == [2.5, 3.5]
        raw = bytearray(5)
        reader.read_tensor("every_other", raw)
        assert list(raw) == [0, 2, 4, 6, 8]


class DLPackOnly:
    def __init__(self, arr):
        self.arr = arr

    def __dlpack__(self, **kwargs):
        return self.arr.__dlpack__(**kwargs)

    def __dlpack_device__(self):
        return self.arr.__dlpack_device__()


def test_dlpack_sources_and_destinations(ckpt):
    data = np.arange(30, dtype=np.int64).reshape(5, 6)
    sp.save(ckpt, {"t": DLPackOnly(data[:, ::2])})
    dest = np.zeros((5, 6), dtype=np.int64)
    with sp.Reader(ckpt) as reader:
        reader.read_tensor("t", DLPackOnly(dest[:, 1::2]))
    assert np.array_equal(dest[:, 1::2], data[:, ::2]) and not dest[:, ::2].any()


def test_bytes_entries(ckpt):
    blob = bytes(range(256)) * 3
    sp.save(ckpt, {
        "b.bytes": blob,
        "b.bytearray": bytearray(b"hello"),
        "b.array": sp.Blob(np.arange(4, dtype=np.uint32)),
        "b.empty": b"",
    })
    with sp.Reader(ckpt) as reader:
        entry = reader.entry("b.bytes")
        assert (entry.kind, entry.dtype, entry.nbytes, entry.chunk_count) == (sp.EntryKind.BYTES, None, 768, 1)
        assert reader.read_bytes("b.bytes") == blob
        assert reader.read_bytes("b.bytearray") == b"hello"
        assert reader.read_bytes("b.array") == np.arange(4, dtype=np.uint32).tobytes()
        assert reader.read_bytes("b.empty") == b""
        out = bytearray(800)
        assert reader.read_bytes("b.bytes", out) == 768
        assert out[:768] == blob and not any(out[768:])


def test_user_metadata(ckpt):
    with sp.Save(ckpt) as s:
        s.add_tensor("x", np.zeros(1))
        s.set_metadata("step", "1")
        s.set_metadata("step", "2")  # the last value wins
        s.set_metadata("note", "grüße ✓")
        s.set_metadata("empty", "")
    with sp.Reader(ckpt) as reader:
        assert reader.metadata == {"step": "2", "note": "grüße ✓", "empty": ""}
        assert reader.get_metadata("note") == "grüße ✓"
        assert reader.get_metadata("missing", "dflt") == "dflt"


def test_save_and_load_helpers(ckpt):
    w = np.arange(12, dtype=np.float32).reshape(3, 4)
    sp.save(ckpt, {"w": w, "half": sp.Chunk(w[:1], (0, 0), (2, 4)), "blob": b"xyz"}, metadata={"k": "v"},
            allow_partial=True)
    with pytest.raises(sp.UncoveredError):
        sp.load(ckpt)  # "half" has only its first row saved
    with sp.Reader(ckpt) as reader:
        entry = reader.entry("half")
        assert (entry.numel, entry.covered_numel) == (8, 4)
        assert reader.metadata == {"k": "v"}
    sp.save(ckpt, {"w": w, "blob": b"xyz"}, overwrite=True)
    everything = sp.load(ckpt)
    assert set(everything) == {"w", "blob"}
    assert np.array_equal(everything["w"], w) and everything["blob"] == b"xyz"


def test_context_manager_commits_only_on_success(ckpt):
    with pytest.raises(RuntimeError):
        with sp.Save(ckpt) as s:
            s.add_tensor("x", np.ones(3))
            raise RuntimeError("stop")
    with pytest.raises(sp.NotFoundError):
        sp.Reader(ckpt)
    with sp.Save(ckpt) as s:
        s.add_tensor("x", np.ones(3))
    assert s.committed and s.closed
    with sp.Reader(ckpt) as reader:
        assert reader.read_tensor("x").tolist() == [1.0, 1.0, 1.0]


def test_load_batches_requests(ckpt):
    a = np.arange(20, dtype=np.int32).reshape(4, 5)
    b = np.linspace(0, 1, 7)
    sp.save(ckpt, {"a": a, "b": b, "blob": b"0123456789"})
    with sp.Reader(ckpt) as reader, reader.load() as batch:
        top = np.zeros((2, 5), dtype=np.int32)
        assert batch.add_tensor("a", top, offsets=(0, 0)) is top  # a box: asked for explicitly
        corner = batch.add_tensor("a", offsets=(2, 3))
        whole_b = batch.add_tensor("b")
        blob = batch.add_bytes("blob")
        blob_out = bytearray(12)
        batch.add_bytes("blob", blob_out)
        assert not top.any() and not any(blob_out)  # nothing is read before execute
        batch.execute()
        assert batch.executed and batch.skipped_count == 0
    assert np.array_equal(top, a[:2]) and np.array_equal(corner, a[2:, 3:])
    assert np.array_equal(whole_b, b)
    assert blob == b"0123456789" and blob_out[:10] == b"0123456789"


def test_contiguous_memory_is_never_copied_by_the_binding(ckpt):
    import tracemalloc

    data = np.arange(4 << 20, dtype=np.float64)  # 32 MiB
    dest = np.zeros_like(data)
    tracemalloc.start()  # numpy reports its allocations to tracemalloc; the C library's are not traced
    try:
        with sp.Save(ckpt) as s:
            s.add_tensor("big", data)
            s.add_bytes("big.blob", data)
        with sp.Reader(ckpt) as reader:
            reader.read_tensor("big", dest)
            reader.read_bytes("big.blob", dest)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < data.nbytes // 8, peak
    assert np.array_equal(dest, data)


def test_batched_adds_round_trip(ckpt, rng):
    """Save.add_tensors / Load.add_tensors: whole tensors, a Chunk, strided and 0-d sources and
    destinations, bf16 through a uint16 carrier, in one library call each."""
    tensors = {f"layer{i}.w": random_array(rng, np.float32, (3, 4)) for i in range(50)}
    tensors["transposed"] = random_array(rng, np.int64, (4, 6)).T
    tensors["scalar"] = np.array(7.5)
    tensors["bf16"] = sp.Chunk(np.arange(6, dtype=np.uint16), dtype="bf16")
    with sp.Save(ckpt) as s:
        s.add_tensors(tensors)
        s.add_tensors([("halves", sp.Chunk(np.full((2, 3), 1, np.int8), offsets=(0, 0), global_shape=(4, 3))),
                       ("halves", sp.Chunk(np.full((2, 3), 2, np.int8), offsets=(2, 0), global_shape=(4, 3)))])
        s.add_tensors({})
    with sp.Reader(ckpt, allow_partial=True) as reader:  # skips what was not saved
        assert reader.entry("bf16").dtype == sp.DType.BF16
        assert reader.entry("halves").chunk_count == 2
        out = {k: np.zeros_like(v) for k, v in tensors.items() if not isinstance(v, sp.Chunk)}
        out["transposed"] = np.zeros((4, 6), np.int64).T  # a strided (6, 4) destination
        out["bf16"] = np.zeros(6, np.uint16)
        out["not.saved"] = np.zeros(2)
        out["halves"] = np.zeros((4, 3), np.int8)
        with reader.load() as batch:
            batch.add_tensors(out)
            assert batch.skipped_count == 1
            batch.execute()
        for k, v in tensors.items():
            expected = v.data if isinstance(v, sp.Chunk) else v
            np.testing.assert_array_equal(out[k], expected)
        np.testing.assert_array_equal(out["halves"], np.repeat([[1], [2]], 6).reshape(4, 3))


def test_batched_add_is_all_or_nothing(ckpt):
    good = np.arange(3, dtype=np.int32)
    with sp.Save(ckpt) as s:
        with pytest.raises(sp.ConflictError, match="item 2 of the batch"):
            s.add_tensors([("a", good), ("b", good), ("a", good)])
        s.add_tensors({"a": good, "b": good})  # nothing of the refused batch was kept
    with sp.Reader(ckpt) as reader:
        assert sorted(reader.keys()) == ["a", "b"]
        dst = {"a": np.full(3, -1, np.int32), "b": np.full(3, -1, np.int32)}
        with reader.load() as batch:
            with pytest.raises(sp.DtypeError, match="item 1 of the batch"):
                batch.add_tensors([("a", dst["a"]), ("b", np.zeros(3, np.float32))])
            batch.execute()
        np.testing.assert_array_equal(dst["a"], [-1, -1, -1])  # its request was not kept either
        with pytest.raises(sp.ShapeError):
            reader.load().add_tensors({"a": np.zeros(2, np.int32)})
