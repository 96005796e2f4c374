#!/usr/bin/env python3
"""One checkpoint saved and loaded by real MPI processes (run under mpirun, see tests/test_mpi.py):

    mpirun -np 4 python mpi_job.py save DIR      each rank saves its shards of TENSORS and a blob
    mpirun -np 3 python mpi_job.py load DIR      each rank loads its rows; every byte is compared
    mpirun -np N python mpi_job.py conflict DIR  one rank offers another dtype: every rank must
                                                 get ConflictError, and nothing is committed

Every rank uses Comm.mpi() (mpi4py's COMM_WORLD). Rank 0 prints "mpi_job: rank R/N MODE ok" or the
problems of each rank, then "mpi_job: MODE ok (N ranks)" only if every rank succeeded; the exit
status of every rank is 0 only then. A rank that raises aborts the whole job (MPI_Abort), so no rank is left
waiting in a collective.

The data is deterministic (golden.generate), so the loading ranks need nothing from the saving ones.
"""

import sys
import traceback
from pathlib import Path

import numpy as np

import shardpoint as sp
from golden import generate
from helpers import part

# fqn -> (numpy dtype, global shape, generator seed, how the saving ranks split it)
TENSORS = {
    "model.rows": (np.float32, (103, 17), 11, "rows"),  # row shards
    "model.cols": (np.int64, (13, 58), 12, "cols"),  # column shards: strided views, saved in place
    "model.repl": (np.float64, (7, 5), 13, "replicated"),  # every rank offers the whole tensor
}
CONFLICT_FQN = "model.rows"


def expected(fqn):
    """The whole tensor `fqn` as every process of every job computes it."""
    dtype, shape, seed, _ = TENSORS[fqn]
    dtype = np.dtype(dtype)
    return generate(int(np.prod(shape)) * dtype.itemsize, seed).view(dtype).reshape(shape)


def private_blob(rank):
    """The name and bytes of the blob only `rank` saves."""
    return f"rank{rank}.private", generate(1000 + 257 * rank, 100 + rank).tobytes()


def shard(fqn, rank, world):
    """(view of the expected tensor, offsets) that `rank` of `world` saves."""
    full = expected(fqn)
    sharding = TENSORS[fqn][3]
    if sharding == "replicated":
        return full, (0,) * full.ndim
    dim = {"rows": 0, "cols": 1}[sharding]
    lo, hi = part(full.shape[dim], rank, world)
    index = [slice(None)] * full.ndim
    index[dim] = slice(lo, hi)
    offsets = [0] * full.ndim
    offsets[dim] = lo
    return full[tuple(index)], tuple(offsets)


def save(directory, comm, mpi=None):
    """Collective over `comm` (any shardpoint communicator): saves this rank's part."""
    rank, world = comm.rank, comm.size
    with sp.Save(directory, comm) as s:  # commits on leaving the block
        for fqn in TENSORS:
            data, offsets = shard(fqn, rank, world)
            s.add_tensor(fqn, data, offsets=offsets, global_shape=TENSORS[fqn][1])
        s.add_bytes(*private_blob(rank))
        s.set_metadata("world", str(world))
    return []


def compare(what, got, want, problems):
    """Appends a problem unless `got` has `want`'s dtype, shape and every byte."""
    if isinstance(want, np.ndarray):
        if got.dtype != want.dtype or got.shape != want.shape:
            problems.append(f"{what}: {got.dtype}{list(got.shape)}, want {want.dtype}{list(want.shape)}")
            return
        got, want = np.ascontiguousarray(got).tobytes(), want.tobytes()
    got, want = bytes(got), bytes(want)
    if len(got) != len(want):
        problems.append(f"{what}: {len(got)} bytes, want {len(want)}")
        return
    if got != want:
        differ = np.frombuffer(got, np.uint8) != np.frombuffer(want, np.uint8)
        problems.append(f"{what}: {int(differ.sum())} of {len(want)} bytes differ, the first at byte "
                        f"{int(np.argmax(differ))}")


def check_layout(reader, saved_world, problems):
    """The entries, dtypes, shapes and chunk writers that `saved_world` saving ranks produce."""
    blobs = [private_blob(r)[0] for r in range(saved_world)]
    names = sorted(reader.keys())
    if names != sorted(list(TENSORS) + blobs):
        problems.append(f"entries {names}, want {sorted(list(TENSORS) + blobs)}")
        return
    for fqn, (dtype, shape, _, sharding) in TENSORS.items():
        entry = reader.entry(fqn)
        if entry.kind != sp.EntryKind.TENSOR or entry.dtype.numpy_dtype != np.dtype(dtype) or entry.shape != shape:
            problems.append(f"{fqn}: {entry.kind} {entry.dtype} {entry.shape}, want tensor {np.dtype(dtype)} {shape}")
            continue
        chunks = sorted((c.writer_rank, c.offsets) for c in reader.chunks(fqn))
        if sharding == "replicated":
            if len(chunks) != 1:  # written once, by whichever rank the plan chose
                problems.append(f"{fqn}: {len(chunks)} chunks of a replicated tensor, want 1")
        else:
            want = [(r, shard(fqn, r, saved_world)[1]) for r in range(saved_world)]
            if chunks != want:
                problems.append(f"{fqn}: chunks (writer, offsets) {chunks}, want {want}")
    for rank, name in enumerate(blobs):
        writers = [c.writer_rank for c in reader.chunks(name)]
        if writers != [rank]:
            problems.append(f"{name}: written by ranks {writers}, want [{rank}]")
    if reader.metadata != {"world": str(saved_world)}:
        problems.append(f"metadata {reader.metadata}, want {{'world': '{saved_world}'}}")


def load(directory, comm, mpi=None):
    """Collective: loads this rank's rows of every tensor and every blob, compares each byte."""
    rank, world = comm.rank, comm.size
    problems = []
    with sp.Reader(directory, comm=comm) as reader:  # rank 0 reads the metadata for all
        saved_world = reader.storage_info.world_size
        check_layout(reader, saved_world, problems)
        with sp.Load(reader, comm) as batch:
            got = {}
            for fqn, (dtype, shape, _, _) in TENSORS.items():
                lo, hi = part(shape[0], rank, world)
                if fqn == "model.cols":  # a Fortran-order destination: strided writes from 4 chunks
                    out = np.zeros(shape[::-1], dtype).T[lo:hi]
                    batch.add_tensor(fqn, out, offsets=(lo, 0))
                    got[fqn] = out
                else:
                    got[fqn] = batch.add_tensor(fqn, offsets=(lo, 0), sizes=(hi - lo,) + shape[1:])
            for r in range(saved_world):
                name = private_blob(r)[0]
                got[name] = batch.add_bytes(name)
            batch.execute()
    for fqn, (_, shape, _, _) in TENSORS.items():
        lo, hi = part(shape[0], rank, world)
        compare(f"{fqn} rows {lo}..{hi}", got[fqn], expected(fqn)[lo:hi], problems)
    for r in range(saved_world):
        name, data = private_blob(r)
        compare(name, got[name], data, problems)
    return problems


def conflict(directory, comm, mpi):
    """Collective: saves in which one rank offers CONFLICT_FQN as i32 instead of f32 (same bytes,
    same element size), first a non-coordinator rank, then rank 0. Every rank must get
    ConflictError and no checkpoint may appear; then a valid save over the same comm must work."""
    rank, world = comm.rank, comm.size
    problems = []
    full = expected(CONFLICT_FQN)
    for bad in sorted({world - 1, 0}, reverse=True):
        path = directory / f"bad-rank{bad}"
        lo, hi = part(full.shape[0], rank, world)
        mine = full[lo:hi].view(np.int32) if rank == bad else full[lo:hi]
        s = sp.Save(path, comm)
        try:
            s.add_tensor(CONFLICT_FQN, mine, offsets=(lo, 0), global_shape=full.shape)
            try:
                s.commit()
                outcome = None
            except sp.ShardpointError as exc:
                outcome = exc
        finally:
            s.close()
        if not isinstance(outcome, sp.ConflictError):
            problems.append(f"rank {bad} offering i32: commit gave {outcome!r}, want ConflictError")
        elif CONFLICT_FQN not in outcome.message:
            problems.append(f"rank {bad} offering i32: the message does not name {CONFLICT_FQN}: {outcome}")
        outcomes = mpi.gather(type(outcome).__name__, root=0)
        if rank == 0:
            print(f"mpi_job: rank {bad} offering i32 -> {outcomes}", flush=True)
        mpi.Barrier()  # every rank has failed its commit before anyone looks
        try:
            sp.Reader(path).close()
            problems.append(f"{path}: a checkpoint was committed despite the conflict")
        except sp.NotFoundError:
            pass
    # The failed collectives left the ranks in step: a valid save over the same comm still works.
    after = directory / "after"
    save(after, comm)
    with sp.Reader(after) as reader:
        compare(f"{after} {CONFLICT_FQN}", reader.read_tensor(CONFLICT_FQN), full, problems)
    return problems


MODES = {"save": save, "load": load, "conflict": conflict}


def main(argv):
    if len(argv) != 3 or argv[1] not in MODES:
        print("usage: mpi_job.py save|load|conflict DIR (under mpirun)", file=sys.stderr)
        return 2
    mode, directory = argv[1], Path(argv[2])
    from mpi4py import MPI  # initializes MPI

    world = MPI.COMM_WORLD
    rank, size = world.Get_rank(), world.Get_size()
    try:
        with sp.Comm.mpi() as comm:
            if (comm.rank, comm.size) != (rank, size):
                raise RuntimeError(f"Comm.mpi() is rank {comm.rank} of {comm.size}, MPI says {rank} of {size}")
            problems = MODES[mode](directory, comm, world)
    except BaseException:  # the others may wait in a collective: take the whole job down
        print(f"mpi_job: rank {rank}/{size} {mode} raised:", file=sys.stderr)
        traceback.print_exc()
        sys.stdout.flush()
        sys.stderr.flush()
        world.Abort(1)
    # Rank 0 prints for everyone: lines written by several processes can interleave mid-line.
    reports = world.gather(problems, root=0)
    failed = world.bcast(sum(1 for p in reports if p) if rank == 0 else None, root=0)
    if rank == 0:
        for r, rank_problems in enumerate(reports):
            for problem in rank_problems:
                print(f"mpi_job: rank {r}/{size} {mode}: {problem}")
            if not rank_problems:
                print(f"mpi_job: rank {r}/{size} {mode} ok")
        if failed:
            print(f"mpi_job: {mode} FAILED on {failed} of {size} ranks")
        else:
            print(f"mpi_job: {mode} ok ({size} ranks)")
        sys.stdout.flush()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
