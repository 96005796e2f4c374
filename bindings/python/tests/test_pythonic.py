"""The everyday Python surface: reader["w"] as a lazy slice (numpy indexing semantics, checked
against numpy itself), reader.info, reprs, and the warning for a Save dropped without commit."""

import gc
import warnings

import numpy as np
import pytest

import shardpoint as sp


@pytest.fixture
def saved(tmp_path, rng):
    w = rng.standard_normal((7, 5, 3)).astype(np.float32)
    path = tmp_path / "ckpt"
    sp.save(path, {"w": w, "scalar": np.array(2.5), "blob": b"abc", "empty": np.zeros((0, 4), np.int8)})
    with sp.Reader(path) as reader:
        yield reader, w


def random_key(rng, shape):
    parts = []
    for n in shape[: rng.integers(0, len(shape) + 1)]:
        kind = rng.integers(0, 4)
        if kind == 0:
            parts.append(int(rng.integers(-n, n)))
        elif kind == 1:
            parts.append(slice(None))
        else:
            start, stop = (int(v) if rng.random() < 0.8 else None for v in rng.integers(-n - 2, n + 2, 2))
            step = int(rng.choice([1, 1, 2, 3, -1, -2])) if kind == 3 else None
            parts.append(slice(start, stop, step))
    if parts and rng.random() < 0.2:
        parts.insert(int(rng.integers(0, len(parts) + 1)), Ellipsis)
    return tuple(parts) if len(parts) != 1 or rng.random() < 0.5 else parts[0]


def test_slices_read_what_numpy_indexing_gives(saved, rng):
    reader, w = saved
    lazy = reader["w"]
    assert (lazy.shape, lazy.dtype, lazy.ndim, len(lazy)) == ((7, 5, 3), sp.DType.F32, 3, 7)
    for _ in range(300):
        key = random_key(rng, w.shape)
        try:
            want = w[key]
        except IndexError:  # (an ellipsis moved an integer onto a shorter dimension)
            with pytest.raises(IndexError):
                lazy[key]
            continue
        got = lazy[key]
        assert got.shape == want.shape and np.array_equal(got, want), key


def test_whole_reads_and_conversions(saved):
    reader, w = saved
    np.testing.assert_array_equal(np.asarray(reader["w"]), w)
    np.testing.assert_array_equal(reader["w"][...], w)
    assert np.asarray(reader["w"], dtype=np.float64).dtype == np.float64
    assert reader["scalar"][()] == 2.5 and reader["scalar"].shape == ()
    with pytest.raises(TypeError):
        len(reader["scalar"])
    assert reader["empty"][:, 1:3].shape == (0, 2)
    assert reader["blob"] == b"abc"  # blobs read whole


def test_bad_indices_are_clear_errors(saved):
    reader, _ = saved
    lazy = reader["w"]
    with pytest.raises(IndexError, match="out of bounds"):
        lazy[7]
    with pytest.raises(IndexError, match="too many indices"):
        lazy[0, 0, 0, 0]
    with pytest.raises(IndexError, match="single ellipsis"):
        lazy[..., ...]
    with pytest.raises(TypeError, match="integers, slices"):
        lazy[[0, 1]]
    with pytest.raises(KeyError):
        reader["missing"]


def test_info_and_reprs(saved):
    reader, _ = saved
    info = reader.info("w")
    assert info == reader.entry("w") and info.shape == (7, 5, 3) and info.dtype == sp.DType.F32
    assert repr(reader["w"]) == "<TensorSlice 'w' f32 (7, 5, 3)>"
    assert repr(reader).endswith("4 entries>")


def test_a_save_dropped_without_commit_warns(tmp_path):
    def drop():
        s = sp.Save(tmp_path / "dropped")
        s.add_tensor("w", np.zeros(3))
        # neither commit() nor close(): the Save is garbage-collected

    with pytest.warns(ResourceWarning, match="without commit"):
        drop()
        gc.collect()
    assert not (tmp_path / "dropped" / "shardpoint.meta").exists()


def test_committed_closed_and_with_saves_do_not_warn(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("error", ResourceWarning)
        s = sp.Save(tmp_path / "a")
        s.add_tensor("w", np.zeros(3))
        s.commit()
        assert repr(s) == f"<Save {str(tmp_path / 'a')!r} committed>"
        del s
        aborted = sp.Save(tmp_path / "b")
        aborted.close()  # a deliberate abort
        assert repr(aborted).endswith("closed>")
        del aborted
        with sp.Save(tmp_path / "c") as s:
            s.add_tensor("w", np.zeros(3))
        del s
        sp.save(tmp_path / "d", {"w": np.zeros(3)})
        gc.collect()
