"""Loads are exact: a destination has the shape of what it receives, never merely room for it."""

import numpy as np
import pytest

import shardpoint as sp
from shardpoint import errors

W = np.arange(6 * 8, dtype=np.float32).reshape(6, 8)


@pytest.fixture
def saved(ckpt):
    sp.save(ckpt, {"w": W, "v": np.arange(5, dtype=np.int64), "blob": b"abc"})
    return ckpt


WRONG_SHAPES = {
    "too small": (6, 7),
    "too large": (6, 9),
    "more rows": (7, 8),
    "transposed": (8, 6),
    "flat": (48,),
    "extra dimension": (6, 8, 1),
}


@pytest.mark.parametrize("shape", WRONG_SHAPES.values(), ids=WRONG_SHAPES.keys())
def test_whole_tensor_into_another_shape_is_a_shape_error(saved, shape):
    with sp.Reader(saved) as reader:
        out = np.full(shape, -1, np.float32)
        with pytest.raises(sp.ShapeError) as info:
            reader.read_tensor("w", out)
        err = info.value
        assert (err.code, err.name) == (errors.ESHAPE, "SHARDPOINT_ESHAPE")
        assert err.message == f"destination has shape {shape} but 'w' is (6, 8)"
        assert (out == -1).all()  # nothing was read
        with reader.load() as batch:
            with pytest.raises(sp.ShapeError, match=r"destination has shape .* but 'w' is \(6, 8\)"):
                batch.add_tensor("w", out)


def test_the_message_names_both_shapes(saved):
    with sp.Reader(saved) as reader, pytest.raises(sp.ShapeError) as info:
        reader.read_tensor("w", np.empty((6, 7), np.float32))
    assert str(info.value) == "SHARDPOINT_ESHAPE: destination has shape (6, 7) but 'w' is (6, 8)"


def test_whole_tensor_of_the_right_shape_loads(saved):
    with sp.Reader(saved) as reader:
        out = np.empty((6, 8), np.float32)
        assert reader.read_tensor("w", out) is out
        assert np.array_equal(out, W)
        transposed = np.empty((8, 6), np.float32).T  # shape (6, 8), strided
        reader.read_tensor("w", transposed)
        assert np.array_equal(transposed, W)
        with reader.load() as batch:
            v = batch.add_tensor("v", np.zeros(5, np.int64))
            batch.execute()
        assert v.tolist() == [0, 1, 2, 3, 4]


def test_wrong_dtype_destination(saved):
    with sp.Reader(saved) as reader:
        for wrong in (np.float64, np.int32, np.uint32, np.float16):
            with pytest.raises(sp.DtypeError):
                reader.read_tensor("w", np.empty((6, 8), wrong))
        with pytest.raises(sp.DtypeError):
            reader.read_tensor("w", np.empty((2, 8), np.int32), offsets=(0, 0))
        with reader.load() as batch, pytest.raises(sp.DtypeError):
            batch.add_tensor("w", np.empty((6, 8), np.float64))


def test_an_explicit_box_still_loads_part_of_a_tensor(saved):
    with sp.Reader(saved) as reader:
        out = np.empty((6, 7), np.float32)
        reader.read_tensor("w", out, offsets=(0, 1))  # asked for: columns 1..7
        assert np.array_equal(out, W[:, 1:])
        box = np.empty((2, 3), np.float32)
        reader.read_tensor("w", box, offsets=(3, 4), sizes=(2, 3))
        assert np.array_equal(box, W[3:5, 4:7])
        reader.read_tensor("w", box, sizes=(2, 3))  # at the origin
        assert np.array_equal(box, W[:2, :3])
        assert np.array_equal(reader.read_tensor("w", offsets=(4, 0)), W[4:])
        with reader.load() as batch:
            rows = batch.add_tensor("w", np.empty((3, 8), np.float32), offsets=(1, 0))
            batch.execute()
        assert np.array_equal(rows, W[1:4])


def test_sizes_must_match_the_destination(saved):
    with sp.Reader(saved) as reader:
        with pytest.raises(sp.ShapeError, match=r"destination has shape \(2, 3\) but the requested box"):
            reader.read_tensor("w", np.empty((2, 3), np.float32), offsets=(0, 0), sizes=(2, 4))
        with pytest.raises(sp.ShapeError):  # an explicit box past the end: the library's check
            reader.read_tensor("w", np.empty((2, 8), np.float32), offsets=(5, 0))


def test_missing_and_bytes_entries_keep_their_errors(saved):
    with sp.Reader(saved) as reader:
        with pytest.raises(sp.NotFoundError):
            reader.read_tensor("nope", np.empty((6, 7), np.float32))
        with pytest.raises(sp.KindError):
            reader.read_tensor("blob", np.empty(3, np.uint8))
    with sp.Reader(saved, allow_partial=True) as reader, reader.load() as batch:
        batch.add_tensor("nope", np.empty((6, 7), np.float32))  # skipped, whatever its shape
        assert batch.skipped_count == 1
