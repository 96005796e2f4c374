"""Several ranks in one process (LocalGroup): sharded saves, resharded loads, failures."""

import threading

import numpy as np
import pytest

import shardpoint as sp
from helpers import part, run_ranks

W = np.arange(9 * 6, dtype=np.float32).reshape(9, 6)
C = np.arange(4 * 10, dtype=np.int64).reshape(4, 10) * 3
R = np.linspace(-1, 1, 5)
BLOB = bytes(range(200))


def save_sharded(path, world, **options):
    def rank_main(rank, comm):
        assert (comm.rank, comm.size) == (rank, world)
        with sp.Save(path, comm, **options) as s:
            lo, hi = part(9, rank, world)
            s.add_tensor("w", W[lo:hi], offsets=(lo, 0), global_shape=W.shape)
            lo, hi = part(10, rank, world)
            s.add_tensor("c", C[:, lo:hi], offsets=(0, lo), global_shape=C.shape)  # a strided view
            s.add_tensor("r", R)  # replicated
            if rank == 0:
                s.add_bytes("blob", BLOB)
            s.set_metadata("world", str(world))
        return rank

    assert run_ranks(world, rank_main) == list(range(world))


def test_three_ranks_save_one_checkpoint(ckpt):
    save_sharded(ckpt, 3)
    with sp.Reader(ckpt) as reader:
        assert reader.storage_info.world_size == 3
        assert reader.metadata == {"world": "3"}
        w_chunks = reader.chunks("w")
        assert sorted((c.offsets, c.sizes, c.writer_rank) for c in w_chunks) == [
            ((0, 0), (3, 6), 0), ((3, 0), (3, 6), 1), ((6, 0), (3, 6), 2)]
        assert len(reader.chunks("r")) == 1  # the replicated tensor is written once
        assert reader.entry("c").chunk_count == 3
        assert np.array_equal(reader.read_tensor("w"), W)
        assert np.array_equal(reader.read_tensor("c"), C)
        assert np.array_equal(reader.read_tensor("r"), R)
        assert reader.read_bytes("blob") == BLOB
        reader.verify()


def test_resharded_load_with_two_ranks(ckpt):
    save_sharded(ckpt, 3)

    def rank_main(rank, comm):
        with sp.Reader(ckpt) as reader, sp.Load(reader, comm) as batch:
            lo, hi = part(9, rank, 2)
            w = batch.add_tensor("w", offsets=(lo, 0), sizes=(hi - lo, 6))
            lo, hi = part(10, rank, 2)
            c = np.zeros((10, 4), dtype=np.int64).T  # a Fortran-order destination
            c = c[:, : hi - lo]
            batch.add_tensor("c", c, offsets=(0, lo))
            r = batch.add_tensor("r")
            blob = batch.add_bytes("blob")
            batch.execute()
        return w, c, r, bytes(blob)

    results = run_ranks(2, rank_main)
    for rank, (w, c, r, blob) in enumerate(results):
        lo, hi = part(9, rank, 2)
        assert np.array_equal(w, W[lo:hi])
        lo, hi = part(10, rank, 2)
        assert np.array_equal(c, C[:, lo:hi])
        assert np.array_equal(r, R) and blob == BLOB


def test_shared_open_reads_metadata_once_and_shares_its_errors(ckpt):
    save_sharded(ckpt, 3)

    def rank_main(rank, comm):
        with sp.Reader(ckpt, comm=comm) as reader:
            lo, hi = part(9, rank, 2)
            return reader.read_tensor("w", offsets=(lo, 0), sizes=(hi - lo, 6))

    for rank, w in enumerate(run_ranks(2, rank_main)):
        lo, hi = part(9, rank, 2)
        assert np.array_equal(w, W[lo:hi])

    meta = ckpt / "shardpoint.meta"
    damaged = bytearray(meta.read_bytes())
    damaged[40] ^= 0xFF
    meta.write_bytes(bytes(damaged))

    def damaged_open(rank, comm):
        with pytest.raises(sp.ChecksumError) as caught:
            sp.Reader(ckpt, comm=comm)
        return str(caught.value)

    messages = run_ranks(3, damaged_open)
    assert all("rank 0 reading the metadata" in m for m in messages[1:]), messages
    assert "rank 0" not in messages[0]


def test_replicated_identical_chunks_and_overwrite(ckpt):
    save_sharded(ckpt, 2)
    save_sharded(ckpt, 3, overwrite=True, compression=1)
    with sp.Reader(ckpt) as reader:
        assert reader.storage_info.world_size == 3
        assert np.array_equal(reader.read_tensor("c"), C)


def test_a_rank_failing_before_commit_fails_every_rank(ckpt):
    def rank_main(rank, comm):
        with sp.Save(ckpt, comm) as s:
            s.add_tensor("x", np.zeros(2), offsets=(2 * rank,), global_shape=(6,))
            if rank == 1:
                raise KeyError("rank 1 gives up")

    outcomes = run_ranks(3, rank_main, return_exceptions=True)
    assert isinstance(outcomes[1], KeyError)
    assert all(isinstance(outcomes[r], sp.CommError) for r in (0, 2)), outcomes
    with pytest.raises(KeyError):
        run_ranks(3, rank_main)  # run() re-raises the root cause, not the echoes
    with pytest.raises(sp.NotFoundError):
        sp.Reader(ckpt)


def test_conflict_between_ranks_is_reported_everywhere(ckpt):
    def rank_main(rank, comm):
        with sp.Save(ckpt, comm) as s:  # rows 0..3 and 2..5 overlap but differ
            s.add_tensor("x", np.full((3, 2), rank), offsets=(2 * rank, 0), global_shape=(7, 2))

    outcomes = run_ranks(3, rank_main, return_exceptions=True)
    # The coordinator finds the conflict in the global plan and broadcasts it: the library fails
    # the commit on every rank with that same error (no rank may see a CommError echo instead).
    assert all(isinstance(o, sp.ConflictError) for o in outcomes), outcomes
    with pytest.raises(sp.NotFoundError):
        sp.Reader(ckpt)


def test_dtype_conflict_is_the_error_of_every_rank(tmp_path):
    # Regression: run() aborted the group as soon as the first rank raised the library's
    # ConflictError, which failed the final broadcast of ranks still leaving it (CommError).
    # The race hit most runs; several rounds make a regression show up reliably.
    world = 4
    full = np.arange(8 * 3, dtype=np.float32).reshape(8, 3)
    for attempt in range(3):
        for bad in range(world):
            path = tmp_path / f"bad{bad}-{attempt}"

            def rank_main(rank, comm):
                lo, hi = part(8, rank, world)
                mine = full[lo:hi].view(np.int32) if rank == bad else full[lo:hi]  # same bytes
                with sp.Save(path, comm) as s:
                    s.add_tensor("x", mine, offsets=(lo, 0), global_shape=full.shape)

            outcomes = run_ranks(world, rank_main, return_exceptions=True)
            names = [type(o).__name__ for o in outcomes]
            assert names == ["ConflictError"] * world, f"rank {bad} offering i32: {outcomes}"
            assert all("x" in o.message for o in outcomes)
            with pytest.raises(sp.NotFoundError):
                sp.Reader(path)


def test_abort_spares_a_round_that_completed():
    # Rank 0 finishes a broadcast and leaves (abort) at once; rank 1, released by that same round
    # but maybe not yet awake, must still get the data rather than a broken barrier.
    from shardpoint.comm import _LocalRank

    for _ in range(100):
        group = sp.LocalGroup(2, timeout=10)
        root, other = _LocalRank(group, 0), _LocalRank(group, 1)
        got = []

        def rank1():
            buf = bytearray(2)
            try:
                other.broadcast(memoryview(buf))
                got.append(bytes(buf))
            except BaseException as exc:
                got.append(exc)

        thread = threading.Thread(target=rank1)
        thread.start()
        root.broadcast(memoryview(bytearray(b"hi")))
        group.abort()
        thread.join()
        assert got == [b"hi"]


def test_abort_fails_a_rank_waiting_for_one_that_left():
    from shardpoint.comm import _LocalRank

    group = sp.LocalGroup(2, timeout=10)
    got = []

    def rank1():
        try:
            _LocalRank(group, 1).broadcast(memoryview(bytearray(2)))
            got.append(None)
        except threading.BrokenBarrierError as exc:
            got.append(exc)

    thread = threading.Thread(target=rank1)
    thread.start()
    group.abort()  # before, or while, rank 1 waits: it can never be served
    thread.join(timeout=10)
    assert not thread.is_alive()
    assert isinstance(got[0], threading.BrokenBarrierError), got
    with pytest.raises(threading.BrokenBarrierError):  # and so does every later collective
        _LocalRank(group, 0).broadcast(memoryview(bytearray(2)))


def test_existing_checkpoint_fails_every_rank(ckpt):
    save_sharded(ckpt, 2)
    with pytest.raises(sp.ExistsError):
        save_sharded(ckpt, 2)
    with sp.Reader(ckpt) as reader:
        assert reader.storage_info.world_size == 2


def test_single_rank_group_and_explicit_single_comm(ckpt, tmp_path):
    save_sharded(ckpt, 1)
    with sp.Comm.single() as comm:
        assert (comm.rank, comm.size) == (0, 1)
        sp.save(tmp_path / "single", {"w": W}, comm=comm)
        with sp.Reader(tmp_path / "single") as reader, reader.load(comm) as batch:
            w = batch.add_tensor("w")
            batch.execute()
    assert np.array_equal(w, W)


def test_mpi_communicator_of_one_process(ckpt):
    mpi4py = pytest.importorskip("mpi4py")  # optional dependency
    del mpi4py
    with sp.Comm.mpi() as comm:
        sp.save(ckpt, {"w": W}, comm=comm)
    with sp.Reader(ckpt) as reader:
        assert np.array_equal(reader.read_tensor("w"), W)
