#!/usr/bin/env python3
"""The torch golden program (tests/golden/README.md): the golden model through
torch.distributed.checkpoint (DCP) with shardpoint.torch as its storage layer.

    golden_torch.py write DIR WORLD   WORLD processes (gloo on 127.0.0.1, a FileStore rendezvous)
                                      save the model with dcp.save(storage_writer=StorageWriter(DIR))
    golden_torch.py read DIR          dcp.load(storage_reader=StorageReader(DIR)) into fresh tensors,
                                      checks every entry bit-exact; exit status 0 only if all match

Run it with the torch venv's python and the package importable (bindings/python/golden-torch.sh
PREFIX does both). The model file is $SHARDPOINT_GOLDEN_MODEL, else tests/golden/model.txt (parsed
by the Python golden program, bindings/python/tests/golden.py).

How each kind of model entry goes through DCP:

- `rows` / `cols` tensors: a ShardedTensor made with init_from_local_shards, whose local shard on
  rank r is exactly the README's part(n, r, W) (ShardedTensor takes contiguous shards only, so a
  `cols` part is a contiguous copy). DTensor's Shard(d) cannot express these parts: it splits as
  torch.chunk does (ceil(n / W) per rank), not floor(r * n / W).
- `replicated` tensors: the whole tensor in every rank's state dict (written once);
  `rank0`: in rank 0's state dict only.
- dtypes: bool, bfloat16, float8_e4m3fn / e5m2, complex, uint16/32/64 are torch dtypes (the table
  of shardpoint.torch); values are the generator's bytes viewed as the dtype (`Tensor.view(dtype)`).
- `bytes` entries: `bytes` values. DCP itself stores every non-tensor value as a torch.save (pickle)
  payload, which no other language reads as the model's blob; StorageWriter(raw_bytes=True) stores
  bytes values as their raw bytes instead. The checkpoint's blobs are then what the C, Rust, Go and
  Python writers store, and shardpoint.torch.StorageReader loads them through a plain dcp.load
  (default planner) as `bytes` values, as it does for every checkpoint written without torch.
- `meta` pairs: DCP has no user key/value metadata, so they cannot go through dcp.save: they are
  StorageWriter(metadata=...), given on every rank (as the README says).
  The reader checks them with shardpoint.Reader(DIR).metadata: DCP's Metadata cannot carry them.

The reader: the entry set, kinds, dtypes and shapes come from the DCP Metadata that
StorageReader.read_metadata builds; every entry is loaded whole by one dcp.load into tensors freshly
allocated with the model's dtype and shape and filled with the complement of the expected bytes (so
an unwritten byte never matches); the README's box (dim 0 from floor(shape[0] / 3)) is loaded by a
second dcp.load into a ShardedTensor of one rank whose local shards are [0, lo) and [lo, n) (a
world-1 gloo group), the box being the C-order local shard [lo, n). Comparisons are on the bytes
(`.view(torch.uint8)`).
"""

import math
import os
import subprocess
import sys
import tempfile
import time
import traceback
import warnings
from datetime import timedelta
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

import golden as model_file  # noqa: E402  (bindings/python/tests/golden.py: model parsing, part())

WRITE_TIMEOUT = 240  # seconds for the whole multi-process save


def quiet():
    # DCP without a process group, ShardedTensor's deprecation and the like: not failures.
    warnings.filterwarnings("ignore", category=UserWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)


# --- the model in torch ---------------------------------------------------------------------------

def torch_dtype(record):
    import shardpoint as sp
    from shardpoint.torch import DTYPE_TO_TORCH

    return DTYPE_TO_TORCH[sp.DType[record.dtype.upper()]]


def generate(nbytes, seed, as_bool=False):
    """byte(k) = (k * 131 + seed * 17 + (k >> 11)) mod 256 (mod 2 again for bool), as uint8."""
    import torch

    k = torch.arange(nbytes, dtype=torch.int64)
    data = ((k * 131 + seed * 17 + (k >> 11)) % 256).to(torch.uint8)
    return data % 2 if as_bool else data


def expected_bytes(record):
    import torch

    dtype = torch_dtype(record)
    itemsize = torch.empty((), dtype=dtype).element_size()
    return generate(math.prod(record.shape) * itemsize, record.seed, dtype == torch.bool), dtype


def tensor_of(raw, dtype, shape):
    """A C-order tensor whose byte image is `raw` (1-d uint8)."""
    return raw.view(dtype).reshape(shape)


def bytes_of(tensor):
    import torch

    return tensor.contiguous().reshape(-1).view(torch.uint8)


# --- write ------------------------------------------------------------------------------------------

def rank_state(model, rank, world):
    from torch.distributed._shard.sharded_tensor import Shard, ShardMetadata, init_from_local_shards

    state = {}
    for record in model:
        if record.kind == "meta" or (record.sharding == "rank0" and rank != 0):
            continue
        if record.kind == "bytes":
            if record.sharding not in ("rank0", "replicated"):
                raise SystemExit(f"golden_torch: bytes {record.fqn} cannot be sharded by {record.sharding}")
            state[record.fqn] = bytes(generate(record.length, record.seed).numpy().tobytes())
            continue
        raw, dtype = expected_bytes(record)
        full = tensor_of(raw, dtype, record.shape)
        if record.sharding in ("rank0", "replicated"):
            state[record.fqn] = full
            continue
        dim = {"rows": 0, "cols": 1}.get(record.sharding)
        if dim is None or dim >= len(record.shape):
            raise SystemExit(f"golden_torch: tensor {record.fqn} cannot be sharded by {record.sharding}")
        lo, hi = model_file.part(record.shape[dim], rank, world)
        shards = []
        if lo < hi:
            offsets = [0] * len(record.shape)
            offsets[dim] = lo
            sizes = list(record.shape)
            sizes[dim] = hi - lo
            # ShardedTensor takes contiguous shards only: a column part is a copy.
            local = full.narrow(dim, lo, hi - lo).contiguous()
            shards.append(Shard(local, ShardMetadata(offsets, sizes, f"rank:{rank}/cpu")))
        state[record.fqn] = init_from_local_shards(shards, *record.shape)  # collective
    return state


def rank_main(directory, rank, world, store):
    quiet()
    import torch.distributed as dist
    import torch.distributed.checkpoint as dcp

    model = model_file.load_model()
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world,
                            timeout=timedelta(seconds=WRITE_TIMEOUT))
    try:
        from shardpoint.torch import StorageWriter

        meta = {r.fqn: r.value for r in model if r.kind == "meta"}
        writer = StorageWriter(directory, overwrite=True, metadata=meta, raw_bytes=True)
        dcp.save(rank_state(model, rank, world), storage_writer=writer)
        dist.barrier()
    finally:
        dist.destroy_process_group()
    print(f"ok {rank}", flush=True)
    return 0


def write(directory, world):
    """Runs one process per rank (this script's `_rank` command) and waits for all of them; the
    first failure stops the others."""
    if world < 1:
        raise SystemExit("golden_torch: WORLD must be at least 1")
    env = dict(os.environ, GLOO_SOCKET_IFNAME="lo", OMP_NUM_THREADS="1")
    with tempfile.TemporaryDirectory(prefix="golden-torch-") as tmp:
        store = os.path.join(tmp, "store")
        procs = []
        for rank in range(world):
            log = open(os.path.join(tmp, f"rank{rank}.log"), "w+")
            procs.append((subprocess.Popen([sys.executable, __file__, "_rank", directory, str(rank), str(world), store],
                                           stdout=log, stderr=subprocess.STDOUT, env=env), log))
        deadline = time.monotonic() + WRITE_TIMEOUT
        failed = None
        while failed is None and any(p.poll() is None for p, _ in procs):
            failed = next((r for r, (p, _) in enumerate(procs) if p.poll() not in (None, 0)), None)
            if time.monotonic() > deadline:
                failed = "timeout"
            time.sleep(0.05)
        if failed is None:
            failed = next((r for r, (p, _) in enumerate(procs) if p.returncode != 0), None)
        for p, _ in procs:
            if p.poll() is None:
                p.kill()
            p.wait()
        outputs = []
        for p, log in procs:
            log.seek(0)
            outputs.append(log.read())
            log.close()
    if failed is not None:
        for rank, ((p, _), out) in enumerate(zip(procs, outputs)):
            print(f"--- rank {rank} (exit {p.returncode}) ---\n{out.strip()}")
        print(f"golden_torch write {directory}: failed ({'timeout' if failed == 'timeout' else f'rank {failed}'})")
        return 1
    print(f"golden_torch write {directory}: {world} ranks ok")
    return 0


# --- read -------------------------------------------------------------------------------------------

def complement(raw, dtype, shape):
    """A fresh tensor of `dtype` and `shape` whose every byte differs from the expected one."""
    return tensor_of((255 - raw).clone(), dtype, shape)


def read(directory):
    quiet()
    import torch
    import torch.distributed as dist
    import torch.distributed.checkpoint as dcp
    from torch.distributed._shard.sharded_tensor import Shard, ShardMetadata, init_from_local_shards
    from torch.distributed.checkpoint.metadata import BytesStorageMetadata, TensorStorageMetadata

    import shardpoint as sp
    from shardpoint.torch import StorageReader

    model = model_file.load_model()
    failures = []

    def fail(message):
        failures.append(message)
        print(message)

    # 1. Exactly the model's entries, kinds, dtypes and shapes: DCP's view of the checkpoint.
    with StorageReader(directory) as reader:
        found = reader.read_metadata().state_dict_metadata
    wanted = {r.fqn: r for r in model if r.kind != "meta"}
    for fqn in sorted(set(found) - set(wanted)):
        fail(f"{fqn}: unexpected entry")
    expected = {}  # fqn -> (raw bytes, dtype) of the tensors
    state = {}
    for fqn, record in wanted.items():
        md = found.get(fqn)
        if md is None:
            fail(f"{fqn}: missing")
            continue
        if record.kind == "bytes":
            if not isinstance(md, BytesStorageMetadata):
                fail(f"{fqn}: {type(md).__name__}, want bytes")
                continue
            state[fqn] = None
            continue
        raw, dtype = expected_bytes(record)
        is_tensor = isinstance(md, TensorStorageMetadata)
        if not is_tensor or md.properties.dtype != dtype or tuple(md.size) != record.shape:
            what = f"tensor {md.properties.dtype} {tuple(md.size)}" if is_tensor else "bytes"
            fail(f"{fqn}: {what}, want tensor {dtype} {record.shape}")
            continue
        expected[fqn] = raw, dtype
        state[fqn] = complement(raw, dtype, record.shape)

    # 2. Every entry loaded whole (a process without a process group).
    try:
        dcp.load(state, storage_reader=StorageReader(directory))
    except Exception as exc:
        fail(f"dcp.load of the whole entries: {type(exc).__name__}: {exc}")
        state = {}
    for fqn, value in state.items():
        record = wanted[fqn]
        if record.kind == "bytes":
            want = bytes(generate(record.length, record.seed).numpy().tobytes())
            if not isinstance(value, bytes) or len(value) != record.length:
                fail(f"{fqn}: loaded {type(value).__name__} of {len(value) if isinstance(value, bytes) else '?'} bytes,"
                     f" want bytes of {record.length}")
            elif value != want:
                fail(f"{fqn}: blob differs from the generator")
            continue
        raw, dtype = expected[fqn]
        if value.dtype != dtype or tuple(value.shape) != record.shape:
            fail(f"{fqn}: loaded {value.dtype} {tuple(value.shape)}, want {dtype} {record.shape}")
        elif not torch.equal(bytes_of(value), raw):
            fail(f"{fqn}: whole tensor differs from the generator")

    # 3. The box from row floor(n / 3), loaded into a C-order shard of a one-rank ShardedTensor.
    boxed = {fqn: wanted[fqn] for fqn in expected if len(wanted[fqn].shape) and wanted[fqn].shape[0] >= 2}
    if boxed:
        with tempfile.TemporaryDirectory(prefix="golden-torch-read-") as tmp:
            os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
            dist.init_process_group("gloo", init_method=f"file://{tmp}/store", rank=0, world_size=1,
                                    timeout=timedelta(seconds=120))
            try:
                boxes, sharded = {}, {}
                for fqn, record in boxed.items():
                    raw, dtype = expected[fqn]
                    n, rest = record.shape[0], list(record.shape[1:])
                    lo = n // 3
                    row = len(raw) // n
                    shards = []
                    for a, b in ((0, lo), (lo, n)):
                        if a < b:
                            tensor = complement(raw[a * row:b * row], dtype, (b - a, *rest))
                            box = ShardMetadata([a] + [0] * len(rest), [b - a] + rest, "rank:0/cpu")
                            shards.append(Shard(tensor, box))
                    boxes[fqn] = shards[-1].tensor, raw[lo * row:]
                    sharded[fqn] = init_from_local_shards(shards, *record.shape)
                dcp.load(sharded, storage_reader=StorageReader(directory))
                for fqn, (box, want) in boxes.items():
                    if not box.is_contiguous() or not torch.equal(bytes_of(box), want):
                        fail(f"{fqn}: box from row {wanted[fqn].shape[0] // 3} differs from the generator")
            except Exception as exc:
                fail(f"dcp.load of the boxes: {type(exc).__name__}: {exc}")
            finally:
                dist.destroy_process_group()

    # 4. The user metadata: not part of DCP's Metadata, read with shardpoint's own reader.
    with sp.Reader(directory) as plain:
        metadata = plain.metadata
    for record in model:
        if record.kind == "meta" and metadata.get(record.fqn) != record.value:
            fail(f"meta {record.fqn}: {metadata.get(record.fqn)!r}, want {record.value!r}")

    if failures:
        return 1
    print(f"golden_torch read {directory}: {len(wanted)} entries ok")
    return 0


def main(argv):
    try:
        if len(argv) == 4 and argv[1] == "write":
            return write(os.path.abspath(argv[2]), int(argv[3]))
        if len(argv) == 3 and argv[1] == "read":
            return read(argv[2])
        if len(argv) == 6 and argv[1] == "_rank":
            return rank_main(argv[2], int(argv[3]), int(argv[4]), argv[5])
    except Exception as exc:
        traceback.print_exc()
        print(f"golden_torch {argv[1]} {argv[2]}: {type(exc).__name__}: {exc}")
        return 1
    print("usage: golden_torch.py write DIR WORLD | golden_torch.py read DIR", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
