"""Inspecting checkpoints (entries, chunks, storage info), box reads, verify and save options."""

import os
import time
import zlib

import numpy as np
import pytest

import shardpoint as sp
from helpers import chunk_file_bytes


def save_two_chunks(path, data, **options):
    """One rank offering a tensor as two row chunks, split after row 3."""
    with sp.Save(path, **options) as s:
        s.add_tensor("t", data[:3], offsets=(0, 0), global_shape=data.shape)
        s.add_tensor("t", data[3:], offsets=(3, 0), global_shape=data.shape)
        s.add_bytes("blob", b"abc" * 100)


def test_entries_are_sorted_and_described(ckpt):
    sp.save(ckpt, {"zeta": np.zeros((2, 3), np.float32), "alpha": b"12345", "mid.x": np.zeros(7, np.int8)})
    with sp.Reader(ckpt) as reader:
        assert len(reader) == 3
        assert list(reader) == ["alpha", "mid.x", "zeta"]
        assert "zeta" in reader and "nope" not in reader
        alpha, mid, zeta = reader.entries()
        assert (alpha.kind, alpha.numel, alpha.nbytes, alpha.shape, alpha.is_tensor) == (sp.EntryKind.BYTES, 5, 5, (), False)
        assert (mid.dtype, mid.shape, mid.numel, mid.nbytes) == (sp.DType.I8, (7,), 7, 7)
        assert (zeta.dtype, zeta.shape, zeta.numel, zeta.nbytes, zeta.chunk_count) == (sp.DType.F32, (2, 3), 6, 24, 1)
        assert zeta.covered_numel == 6 and zeta.stored_bytes == 24
        assert reader.info("zeta") == zeta and [e.index for e in reader.entries()] == [0, 1, 2]


def test_chunks_describe_the_files(ckpt):
    data = np.arange(6 * 4, dtype=np.float64).reshape(6, 4)
    save_two_chunks(ckpt, data)
    with sp.Reader(ckpt) as reader:
        chunks = sorted(reader.chunks("t"), key=lambda c: c.offsets)
        assert [(c.offsets, c.sizes) for c in chunks] == [((0, 0), (3, 4)), ((3, 0), (3, 4))]
        alignment = reader.storage_info.alignment
        for c, rows in zip(chunks, (data[:3], data[3:])):
            assert c.transform == sp.Transform.NONE and c.writer_rank == 0
            assert c.raw_length == c.stored_length == 3 * 4 * 8
            assert c.file_offset % (alignment if c.stored_length >= alignment else min(alignment, 64)) == 0  # packed
            stored = chunk_file_bytes(ckpt, c)
            assert stored == rows.tobytes()  # raw little-endian C order
            assert zlib.crc32(stored) == c.crc32
        (blob,) = reader.chunks("blob")
        assert blob.offsets == () and blob.sizes == () and chunk_file_bytes(ckpt, blob) == b"abc" * 100
        # The bulk form (one call per entry) gives the same boxes, in the entry's chunk order.
        assert reader.chunk_boxes("t") == [(c.offsets, c.sizes) for c in reader.chunks("t")]
        assert reader.chunk_boxes(reader.entry("t")) == reader.chunk_boxes(reader.entry("t").index)
        assert reader.chunk_boxes("blob") == [((), ())]
        with pytest.raises(sp.NotFoundError):
            reader.chunk_boxes("nope")


def test_box_reads_spanning_chunks(ckpt):
    data = np.arange(6 * 5, dtype=np.int32).reshape(6, 5)
    save_two_chunks(ckpt, data)
    with sp.Reader(ckpt) as reader:
        box = reader.read_tensor("t", offsets=(1, 1), sizes=(4, 3))  # rows 1..4 cross the split at 3
        assert np.array_equal(box, data[1:5, 1:4])
        tail = reader.read_tensor("t", offsets=(2, 0))
        assert np.array_equal(tail, data[2:])
        one = reader.read_tensor("t", offsets=(3, 4), sizes=(1, 1))
        assert one.tolist() == [[data[3, 4]]]


def test_partly_saved_tensor(ckpt):
    data = np.arange(6 * 5, dtype=np.int32).reshape(6, 5)
    with sp.Save(ckpt, allow_partial=True) as s:  # only rows 0..1 of 6, on purpose
        s.add_tensor("t", data[:2], offsets=(0, 0), global_shape=(6, 5))
    with sp.Reader(ckpt) as reader:
        entry = reader.entry("t")
        assert (entry.numel, entry.covered_numel, entry.chunk_count) == (30, 10, 1)
        assert np.array_equal(reader.read_tensor("t", sizes=(2, 5)), data[:2])
        with pytest.raises(sp.UncoveredError) as info:
            reader.read_tensor("t", offsets=(1, 0), sizes=(2, 5))
        assert info.value.code == sp.errors.EUNCOVERED


def test_storage_info(ckpt):
    before = time.time_ns()
    sp.save(ckpt, {"x": np.zeros(10)})
    with sp.Reader(ckpt) as reader:
        info = reader.storage_info
        first_save_id = info.save_id
    assert info.checkpoint_id == os.path.basename(ckpt)
    assert info.world_size == 1 and info.format_major == sp.FORMAT_MAJOR
    assert info.library_version == sp.library_version()
    assert info.file_count >= 1 and info.total_stored_bytes == 80
    assert before - 10**9 <= info.created_unix_ns <= time.time_ns() + 10**9
    sp.save(ckpt, {"x": np.ones(10)}, overwrite=True, checkpoint_id="run-42")
    with sp.Reader(ckpt) as reader:
        info = reader.storage_info
        assert info.checkpoint_id == "run-42" and info.save_id != first_save_id
        assert reader.read_tensor("x").tolist() == [1.0] * 10


def test_verify_passes_on_a_good_checkpoint(ckpt):
    save_two_chunks(ckpt, np.arange(24.0).reshape(6, 4))
    with sp.Reader(ckpt) as reader:
        reader.verify()


def test_compression(ckpt):
    data = np.zeros((64, 64), dtype=np.float32)
    data[::7] = 3.0  # compressible
    sp.save(ckpt, {"z": data, "blob": b"a" * 5000}, compression=6)
    with sp.Reader(ckpt) as reader:
        (chunk,) = reader.chunks("z")
        assert chunk.transform == sp.Transform.DEFLATE
        assert chunk.raw_length == data.nbytes and chunk.stored_length < data.nbytes // 4
        assert zlib.decompress(chunk_file_bytes(ckpt, chunk)) == data.tobytes()
        assert reader.entry("z").stored_bytes == chunk.stored_length
        assert np.array_equal(reader.read_tensor("z", offsets=(5, 3), sizes=(10, 20)), data[5:15, 3:23])
        assert reader.read_bytes("blob") == b"a" * 5000
        reader.verify()


@pytest.mark.parametrize("codec", ["zstd", "zlib"])
def test_block_compression(tmp_path, codec):
    rng = np.random.default_rng(7)
    weights = rng.normal(0, 0.02, size=(300, 500)).astype(np.float32)  # 600 KB: ten blocks
    half = (weights.view(np.uint32) >> 16).astype(np.uint16)  # the bf16 bits of the same values (stored as u16)
    sizes = {}
    for shuffle in (False, True):
        path = tmp_path / f"{codec}-{shuffle}"
        sp.save(path, {"w": weights, "h": half,
                       "blob": b"a" * 5000}, compression=codec, shuffle=shuffle)
        with sp.Reader(path) as reader:
            assert reader.storage_info.format_major == 2
            (chunk,) = reader.chunks("w")
            want = sp.Transform.ZSTD_BLOCKS if codec == "zstd" else sp.Transform.ZLIB_BLOCKS
            assert chunk.transform == want
            assert chunk.shuffle_width == (4 if shuffle else 0)
            assert reader.chunks("blob")[0].shuffle_width == 0  # bytes are never shuffled
            sizes[shuffle] = chunk.stored_length
            assert np.array_equal(reader.read_tensor("w"), weights)
            assert np.array_equal(reader.read_tensor("w", offsets=(17, 333), sizes=(250, 101)), weights[17:267, 333:434])
            assert np.array_equal(reader.read_tensor("h").view(np.uint16), half)
            assert reader.read_bytes("blob") == b"a" * 5000
            reader.verify()
    assert sizes[True] < 0.95 * weights.nbytes  # shuffled floats compress (random mantissas: not much)
    assert sizes[True] < sizes[False]


def test_compression_options_are_checked(tmp_path):
    with pytest.raises(ValueError, match="unknown compression"):
        sp.Save(tmp_path / "a", compression="lz4")
    with pytest.raises(sp.InvalidArgumentError, match="shuffle"):
        sp.Save(tmp_path / "b", shuffle=True)
    with pytest.raises(sp.InvalidArgumentError, match="level 20"):
        sp.Save(tmp_path / "c", compression="zstd", compression_level=20)
    sp.save(tmp_path / "d", {"x": np.arange(100.0)}, compression="deflate")
    with sp.Reader(tmp_path / "d") as reader:
        assert reader.storage_info.format_major == 1 and reader.chunks("x")[0].transform == sp.Transform.DEFLATE


@pytest.mark.parametrize("options", [{"durable": False}, {"io_threads": 1}, {"alignment": 65536}, {"alignment": 64}])
def test_save_options(ckpt, options):
    data = np.arange(1000, dtype=np.int16)
    with sp.Save(ckpt, **options) as s:
        s.add_tensor("a", data[:300], offsets=(0,), global_shape=(1000,))
        s.add_tensor("a", data[300:], offsets=(300,), global_shape=(1000,))
        s.add_tensor("b", data[::3])
    with sp.Reader(ckpt, io_threads=1) as reader:
        alignment = options.get("alignment", 4096)
        assert reader.storage_info.alignment == alignment
        # FORMAT.md section 4: extents shorter than the alignment are packed at min(alignment, 64).
        for c in reader.chunks("a") + reader.chunks("b"):
            assert c.file_offset % (alignment if c.stored_length >= alignment else min(alignment, 64)) == 0
        assert np.array_equal(reader.read_tensor("a"), data)
        assert np.array_equal(reader.read_tensor("b"), data[::3])
        reader.verify()


def test_bad_alignment_is_rejected(ckpt):
    with pytest.raises(sp.InvalidArgumentError):
        with sp.Save(ckpt, alignment=3000) as s:
            s.add_tensor("x", np.zeros(3))
