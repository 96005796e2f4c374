"""Batched adds of plain numpy arrays take a column-by-column fast path (shardpoint._buffer.
pack_whole); these tests pin that it is taken, and that it behaves exactly as the general path:
same bytes, same errors, same lifetimes, and a fall back for anything it does not handle."""

import gc
import importlib

import numpy as np
import pytest

import shardpoint as sp
from shardpoint import _buffer

# The modules themselves: the package's `save` and `load` names are its functions.
save_module = importlib.import_module("shardpoint.save")
reader_module = importlib.import_module("shardpoint.reader")


@pytest.fixture
def packs(monkeypatch):
    """Counts the batches packed by the fast path, in Save and in Load."""
    calls = []
    real = _buffer.pack_whole

    def counting(struct, names, *args):
        calls.append((struct.__name__, len(names)))
        return real(struct, names, *args)

    monkeypatch.setattr(save_module, "pack_whole", counting)
    monkeypatch.setattr(reader_module, "pack_whole", counting)
    return calls


def plain_state(rng):
    state = {f"layers.{i}.w": rng.standard_normal((i % 5 + 1, 3)).astype(np.float32) for i in range(40)}
    state["scalar"] = np.array(3.25)  # 0-d
    state["empty"] = np.zeros((0, 4), np.int16)  # no bytes at all
    state["ids"] = np.arange(17, dtype=np.int64)
    state["mask"] = rng.integers(0, 2, 9).astype(np.bool_)
    state["readonly"] = np.frombuffer(b"\x01\x02\x03\x04\x05\x06\x07\x08", np.uint16)
    state["naïve.ünïcode"] = np.ones(2, np.complex64)
    return state


def test_plain_arrays_round_trip_through_the_fast_path(ckpt, rng, packs):
    state = plain_state(rng)
    assert not state["readonly"].flags.writeable
    sp.save(ckpt, state)
    assert packs == [("TensorChunk", len(state))]
    back = sp.load(ckpt)
    assert packs[1] == ("TensorRequest", len(state))
    assert sorted(back) == sorted(state)
    for k, v in state.items():
        assert back[k].dtype == v.dtype and back[k].shape == v.shape, k
        assert back[k].tobytes() == v.tobytes(), k


def test_fast_path_save_matches_the_general_path(tmp_path, rng, packs):
    state = plain_state(rng)
    sp.save(tmp_path / "fast", state)
    with sp.Save(tmp_path / "general") as s:
        for k, v in state.items():
            s.add_tensor(k, v)
    assert len(packs) == 1
    with sp.Reader(tmp_path / "fast") as a, sp.Reader(tmp_path / "general") as b:
        assert [(e.fqn, e.dtype, e.shape, e.nbytes) for e in a.entries()] == \
               [(e.fqn, e.dtype, e.shape, e.nbytes) for e in b.entries()]
        for e in a.entries():
            assert [c.crc32 for c in a.chunks(e.fqn)] == [c.crc32 for c in b.chunks(e.fqn)]


def test_sources_without_other_references_stay_alive_until_commit(ckpt, packs):
    with sp.Save(ckpt) as s:
        s.add_tensors({f"t{i}": np.full(1000, i, np.float64) for i in range(20)})
        gc.collect()
        for i in range(20):  # reuse the freed memory, if any had been freed
            np.full(1000, -1.0)
        s.commit()
    back = sp.load(ckpt)
    for i in range(20):
        assert (back[f"t{i}"] == i).all()


def test_fast_path_errors_name_the_item_and_keep_nothing(ckpt, packs):
    good = np.arange(4, dtype=np.float32)
    with sp.Save(ckpt) as s:
        with pytest.raises(sp.ConflictError, match="item 2 of the batch"):
            s.add_tensors([("a", good), ("b", good), ("a", good)])
        with pytest.raises(TypeError, match="fqn must be str"):
            s.add_tensors([("a", good), (7, good)])
        with pytest.raises(ValueError, match="NUL"):
            s.add_tensors([("a\0b", good)])
        s.add_tensors({"a": good})
    with sp.Reader(ckpt) as reader:
        assert list(reader.keys()) == ["a"]


def test_other_values_fall_back_to_the_general_path(ckpt, rng, packs):
    """A strided array, a big-endian one, a Chunk or a non-numpy buffer in the batch: the whole
    batch goes the general way, which describes (or refuses) each as before."""
    base = rng.standard_normal((6, 4)).astype(np.float32)
    with sp.Save(ckpt) as s:
        s.add_tensors({"plain": base, "strided": base.T})
        s.add_tensors({"chunk": sp.Chunk(np.arange(3, dtype=np.uint16), dtype="bf16")})
        s.add_tensors({"memoryview": memoryview(bytearray(b"abcd")).cast("B")})
        with pytest.raises(ValueError, match="big-endian"):
            s.add_tensors({"be": np.arange(3, dtype=">i4")})
    assert packs == []
    back = sp.load(ckpt)
    np.testing.assert_array_equal(back["strided"], base.T)
    assert back["chunk"].dtype == np.uint16 and back["memoryview"].tobytes() == b"abcd"


def test_load_fast_path_checks_like_the_general_path(ckpt, packs):
    sp.save(ckpt, {"a": np.arange(6, dtype=np.int32).reshape(2, 3), "raw": np.arange(4, dtype=np.uint16)})
    del packs[:]
    with sp.Reader(ckpt) as reader:
        reader.entries()  # listed: the fast path knows every shape and dtype
        with reader.load() as batch:
            with pytest.raises(sp.ShapeError):
                batch.add_tensors({"a": np.zeros(6, np.int32)})  # right size, wrong shape
            with pytest.raises(sp.DtypeError):
                batch.add_tensors({"a": np.zeros((2, 3), np.float32)})  # no implicit cast
            read_only = np.zeros((2, 3), np.int32)
            read_only.flags.writeable = False
            with pytest.raises(TypeError, match="read-only"):
                batch.add_tensors({"a": read_only})
            assert packs == []  # all of those went the general way
            out = {"a": np.zeros((2, 3), np.int32), "raw": np.zeros(4, np.uint16)}
            batch.add_tensors(out)
            assert packs == [("TensorRequest", 2)]
            batch.execute()
    np.testing.assert_array_equal(out["a"], np.arange(6).reshape(2, 3))
    np.testing.assert_array_equal(out["raw"], np.arange(4))


def test_bf16_carriers_take_the_fast_path_on_load(ckpt, packs):
    bits = np.array([0x3F80, 0x4000, 0xC040], np.uint16)  # 1.0, 2.0, -3.0 in bf16
    with sp.Save(ckpt) as s:
        s.add_tensor("w", bits, dtype="bf16")
        s.add_tensor("f", np.ones(2, np.float32))
    del packs[:]
    back = sp.load(ckpt)
    assert packs == [("TensorRequest", 2)]
    assert back["w"].dtype == np.uint16 and back["w"].tolist() == bits.tolist()
    with sp.Reader(ckpt) as reader:
        assert reader.entry("w").dtype == sp.DType.BF16
