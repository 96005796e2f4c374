"""The storage-layer phases (Writer) driven by hand, as a host framework drives them, and
host-planned reads (Reader.find_chunk, Load.add_chunk)."""

import numpy as np
import pytest

import shardpoint as sp


def two_rank_save(path, w, blob, *, fail_rank=None):
    """Rank 0 offers rows 0..1 with data; rank 1 plans rows 2..3 and binds them when assigned.
    Both plan the blob (replicated: one of them writes it). Returns the two writers."""
    writers = [sp.Writer(path, overwrite=True), sp.Writer(path, overwrite=True)]
    for rank, writer in enumerate(writers):
        writer.set_up(rank, 2)
    assert writers[0].add_tensor("w", w[0:2], offsets=(0, 0), global_shape=w.shape) == 0
    assert writers[0].plan_bytes("blob") == 1
    assert writers[1].plan_tensor("w", "f32", w.shape, (2, 0), (2, w.shape[1])) == 0
    assert writers[1].plan_bytes("blob") == 1
    writers[0].set_framework_metadata("test.framework", '{"a": 1}')
    plans = [writer.local_plan() for writer in writers]
    writers[0].global_plan(plans)
    finals = [writers[0].final_plan(r) for r in range(2)]
    results = []
    for rank, writer in enumerate(writers):
        assigned = writer.assigned(finals[rank])
        if rank == 1:
            assert 0 in assigned  # only rank 1 has rows 2..3
            writer.bind_tensor(0, w[2:4])
        if 1 in assigned:
            writer.bind_bytes(1, blob)
        if rank == fail_rank:
            raise RuntimeError("failing on purpose")
        results.append(writer.write(finals[rank]))
    writers[0].finish(results)
    return writers


def test_phases_by_hand(tmp_path):
    w = np.arange(32, dtype=np.float32).reshape(4, 8)
    blob = b"\x01\x02\x03 framework state"
    writers = two_rank_save(tmp_path / "c", w, blob)
    assert writers[0].committed
    for writer in writers:
        writer.close()
    with sp.Reader(tmp_path / "c") as reader:
        reader.verify()
        assert np.array_equal(reader.read_tensor("w"), w)
        assert reader.read_bytes("blob") == blob
        assert reader.framework_metadata("test.framework") == '{"a": 1}'
        assert reader.framework_metadata("absent") is None
        assert reader.metadata == {}
        # Host-planned reads: a box inside one saved chunk, into a strided destination.
        chunk = reader.find_chunk("w", (2, 0))
        assert reader.chunks("w")[chunk].offsets == (2, 0)
        with pytest.raises(sp.NotFoundError):
            reader.find_chunk("w", (1, 0))
        out = np.zeros((8, 2), np.float32).T  # (2, 8) with strides
        part = np.zeros((1, 3), np.float32)
        with reader.load() as load:
            load.add_chunk("w", chunk, out)
            load.add_chunk("w", chunk, part, storage_offsets=(1, 5))
            load.execute()
    assert np.array_equal(out, w[2:4])
    assert np.array_equal(part, w[3:4, 5:8])


def test_bind_checks_what_was_planned(tmp_path):
    writer = sp.Writer(tmp_path / "b")
    writer.set_up(0, 1)
    item = writer.plan_tensor("t", "i32", (3, 3), (0, 0), (3, 3))
    with pytest.raises(ValueError, match="planned with sizes"):
        writer.bind_tensor(item, np.zeros((3, 2), np.int32))
    with pytest.raises(TypeError, match="tensor item"):
        writer.bind_bytes(item, b"x")
    with pytest.raises(IndexError):
        writer.bind_tensor(5, np.zeros((3, 3), np.int32))
    writer.close()


def test_abort_leaves_the_previous_checkpoint(tmp_path):
    w = np.arange(32, dtype=np.float32).reshape(4, 8)
    for writer in two_rank_save(tmp_path / "c", w, b"one"):
        writer.close()
    before = sorted(p.name for p in (tmp_path / "c").iterdir())
    # A second save: rank 0 writes, rank 1 fails before writing; every rank aborts.
    writers = [sp.Writer(tmp_path / "c", overwrite=True), sp.Writer(tmp_path / "c", overwrite=True)]
    for rank, writer in enumerate(writers):
        writer.set_up(rank, 2)
        writer.add_tensor("w", (w * 2)[2 * rank:2 * rank + 2], offsets=(2 * rank, 0), global_shape=w.shape)
    writers[0].global_plan([writer.local_plan() for writer in writers])
    writers[0].write(writers[0].final_plan(0))
    assert len(list((tmp_path / "c").iterdir())) == len(before) + 1  # rank 0's new data file
    for writer in writers:
        writer.abort()
        assert not writer.committed
        writer.close()
    assert sorted(p.name for p in (tmp_path / "c").iterdir()) == before
    with sp.Reader(tmp_path / "c") as reader:
        assert np.array_equal(reader.read_tensor("w"), w)
        assert reader.read_bytes("blob") == b"one"


def test_write_bound_in_batches(tmp_path):
    """Bind a batch, write it, overwrite its memory, bind the next: the checkpoint holds what
    was bound (write_bound wrote it and the library never read it again)."""
    w = np.arange(6 * 5, dtype=np.float32).reshape(6, 5)
    writer = sp.Writer(tmp_path / "c")
    writer.set_up(0, 1)
    for row in range(6):
        assert writer.plan_tensor("w", "f32", w.shape, (row, 0), (1, 5)) == row
    writer.global_plan([writer.local_plan()])
    final = writer.final_plan(0)
    scratch = np.empty((1, 5), np.float32)
    for row in writer.assigned(final):
        scratch[:] = w[row]
        writer.bind_tensor(row, scratch)
        writer.write_bound(final)
        scratch[:] = -1  # reused for the next row
    with pytest.raises(sp.errors.StateError, match="planned without data"):
        writer.bind_tensor(0, scratch)  # written: no longer bindable
    writer.finish([writer.write(final)])
    writer.close()
    with sp.Reader(tmp_path / "c") as reader:
        reader.verify()
        assert np.array_equal(reader.read_tensor("w"), w)
