"""One rank of a multi-process DCP job (gloo over 127.0.0.1, a FileStore rendezvous).

    python dcp_job.py SCENARIO RANK WORLD STORE_FILE DIR

Scenarios:
  save_rows  4 ranks save a row-sharded (Shard(0)) DTensor state, a replicated tensor, an optimizer-like
             nested dict and non-tensor values into DIR
  load_cols  any number of ranks load DIR into column-sharded (Shard(1)) DTensors and check every value
  replicated ranks save only replicated values: shardpoint picks one writer per item, so some rank
             writes nothing (its empty write results reach the coordinator); every rank loads them back
  sharded    a ShardedTensor: saved row-wise (ChunkShardingSpec dim 0) into DIR by the ranks of the
             first run, loaded column-wise (dim 1) by the ranks of a second run ("sharded_load")
  fail       ranks save a good checkpoint into DIR, then a save whose rank 1 raises in write_data:
             every rank must fail, DIR must still hold the first checkpoint; then the same writer saves
             again (the failed save's lock and files released) and a failed save into a fresh directory
             leaves no metadata
Prints "ok RANK" on success; any failure is an exception (non-zero exit).
"""

import os
import sys

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint.api import CheckpointException
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.tensor import Replicate, Shard, distribute_tensor

import shardpoint as sp
from shardpoint.torch import StorageReader, StorageWriter

SHAPES = {"model.w": ((12, 10), torch.float32), "model.e": ((10, 6), torch.bfloat16),
          "optim.state.0.exp_avg": ((12, 10), torch.float32)}


def full(name, shape, dtype, salt=0):
    """Deterministic values, exact in every dtype used (small integers and halves)."""
    n = 1
    for s in shape:
        n *= s
    seed = sum(ord(c) for c in name) + 97 * salt
    values = ((torch.arange(n, dtype=torch.int64) * 7 + seed) % 201 - 100).to(torch.float64) / 2
    return values.reshape(shape).to(dtype)


def state(mesh, placement, salt=0, zeros=False):
    def dt(name):
        shape, dtype = SHAPES[name]
        value = torch.zeros(shape, dtype=dtype) if zeros else full(name, shape, dtype, salt)
        return distribute_tensor(value, mesh, [placement])

    bias = torch.zeros(10) if zeros else full("model.b", (10,), torch.float32, salt)
    return {
        "model": {"w": dt("model.w"), "e": dt("model.e"), "b": bias},
        "optim": {"state": {0: {"exp_avg": dt("optim.state.0.exp_avg"), "step": torch.tensor(0.0 if zeros else 5.0 + salt)}},
                  "param_groups": [{"lr": 0.0 if zeros else 0.01, "params": [0]}]},
        "step": 0 if zeros else 100 + salt,
    }


def check(sd, salt=0):
    for key, name in (("w", "model.w"), ("e", "model.e")):
        shape, dtype = SHAPES[name]
        got = sd["model"][key].full_tensor()
        assert torch.equal(got, full(name, shape, dtype, salt)), name
    assert torch.equal(sd["model"]["b"], full("model.b", (10,), torch.float32, salt))
    got = sd["optim"]["state"][0]["exp_avg"].full_tensor()
    assert torch.equal(got, full("optim.state.0.exp_avg", (12, 10), torch.float32, salt))
    assert sd["optim"]["state"][0]["step"].item() == 5.0 + salt
    assert sd["optim"]["param_groups"] == [{"lr": 0.01, "params": [0]}], sd["optim"]["param_groups"]
    assert sd["step"] == 100 + salt, sd["step"]


def main():
    scenario, rank, world, store, directory = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)
    try:
        mesh = init_device_mesh("cpu", (world,))
        if scenario == "save_rows":
            dcp.save(state(mesh, Shard(0)), storage_writer=StorageWriter(directory))
        elif scenario == "load_cols":
            sd = state(mesh, Shard(1), zeros=True)
            dcp.load(sd, storage_reader=StorageReader(directory))
            # The local shard is exactly this rank's columns.
            w = sd["model"]["w"].to_local()
            cols = torch.arange(10).chunk(world)[rank]  # DTensor shards as torch.chunk does
            assert torch.equal(w, full("model.w", (12, 10), torch.float32)[:, cols]), "local columns"
            check(sd)
        elif scenario == "replicated":
            sd = {"x": full("x", (4, 4), torch.float64), "meta": {"epoch": 9}}
            dcp.save(sd, storage_writer=StorageWriter(directory))
            loaded = {"x": torch.zeros(4, 4, dtype=torch.float64), "meta": {"epoch": 0}}
            dcp.load(loaded, storage_reader=StorageReader(directory))
            assert torch.equal(loaded["x"], sd["x"]) and loaded["meta"]["epoch"] == 9
            if rank == 0:
                with sp.Reader(directory) as reader:
                    writers = {c.writer_rank for e in reader.entries() for c in reader.chunks(e.fqn)}
                    assert len(writers) < world and reader.storage_info.file_count == len(writers), writers
        elif scenario in ("sharded", "sharded_load"):
            from torch.distributed._shard import sharded_tensor
            from torch.distributed._shard.sharding_spec import ChunkShardingSpec

            expected = full("st", (12, 10), torch.float32)
            dim = 0 if scenario == "sharded" else 1
            spec = ChunkShardingSpec(dim=dim, placements=[f"rank:{r}/cpu" for r in range(world)])
            st = sharded_tensor.zeros(spec, 12, 10)

            def box(shard):
                o, z = shard.metadata.shard_offsets, shard.metadata.shard_sizes
                return expected[o[0]:o[0] + z[0], o[1]:o[1] + z[1]]

            if scenario == "sharded":
                for shard in st.local_shards():
                    shard.tensor.copy_(box(shard))
                dcp.save({"st": st}, storage_writer=StorageWriter(directory))
            else:
                dcp.load({"st": st}, storage_reader=StorageReader(directory))
                for shard in st.local_shards():
                    assert torch.equal(shard.tensor, box(shard)), shard.metadata
        elif scenario == "fail":
            fail_scenario(mesh, rank, world, directory)
        else:
            raise SystemExit(f"unknown scenario {scenario}")
        dist.barrier()
    finally:
        dist.destroy_process_group()
    print("ok", rank, flush=True)
    # torch's gloo threads can still be winding down at interpreter teardown and abort the
    # process ("terminate called without an active exception", seen once in ~30 jobs); the job's
    # work is done and checked here, so skip the teardown.
    sys.stdout.flush()
    os._exit(0)


def fail_scenario(mesh, rank, world, directory):
    writer = StorageWriter(directory)
    dcp.save(state(mesh, Shard(0), salt=1), storage_writer=writer)
    before = sorted(os.listdir(directory))

    original = StorageWriter.write_data

    def failing(self, plan, planner):
        if dist.get_rank() == 1:
            raise RuntimeError("rank 1 fails on purpose")
        return original(self, plan, planner)

    StorageWriter.write_data = failing
    try:
        try:
            dcp.save(state(mesh, Shard(0), salt=2), storage_writer=writer)
        except CheckpointException as e:
            assert "rank 1 fails on purpose" in str(e), str(e)
        else:
            raise AssertionError("the save with a failing rank succeeded")
        dist.barrier()
        # The previous checkpoint is intact and still the committed one.
        if rank == 0:
            with sp.Reader(directory) as reader:
                reader.verify()
        sd = state(mesh, Shard(1), zeros=True)
        dcp.load(sd, storage_reader=StorageReader(directory))
        check(sd, salt=1)
        # A failed save into a new directory commits nothing.
        fresh = directory + "-fresh"
        try:
            dcp.save(state(mesh, Shard(0), salt=3), storage_writer=StorageWriter(fresh))
        except CheckpointException:
            pass
        else:
            raise AssertionError("the save with a failing rank succeeded")
        dist.barrier()
        assert not os.path.exists(os.path.join(fresh, "shardpoint.meta"))
    finally:
        StorageWriter.write_data = original
    dist.barrier()
    # The same writer saves again: the failed save released the directory's lock and its files.
    dcp.save(state(mesh, Shard(0), salt=2), storage_writer=writer)
    dist.barrier()
    sd = state(mesh, Replicate(), zeros=True)
    dcp.load(sd, storage_reader=StorageReader(directory))
    check(sd, salt=2)
    if rank == 0:
        after = sorted(os.listdir(directory))
        # The successful save replaced the first one and removed the failed save's debris.
        assert len(after) == len(before) and not set(after) & (set(before) - {"shardpoint.meta"}), (before, after)


if __name__ == "__main__":
    main()
