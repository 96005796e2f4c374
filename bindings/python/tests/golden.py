#!/usr/bin/env python3
"""The Python golden program (tests/golden/README.md):

    golden.py write DIR WORLD   saves the model into DIR with WORLD ranks (threads + callback comm)
    golden.py read DIR          checks DIR; exit status 0 only if everything matches

The model file is $SHARDPOINT_GOLDEN_MODEL, else tests/golden/model.txt of the enclosing repo.
"""

import math
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import shardpoint as sp


@dataclass(frozen=True)
class Record:
    kind: str  # "tensor", "bytes" or "meta"
    fqn: str  # meta: the key
    dtype: str = ""
    shape: tuple = ()
    length: int = 0
    sharding: str = ""
    seed: int = 0
    value: str = ""  # meta only


def model_path():
    env = os.environ.get("SHARDPOINT_GOLDEN_MODEL")
    if env:
        return Path(env)
    for parent in Path(__file__).resolve().parents:
        candidate = parent / "tests" / "golden" / "model.txt"
        if candidate.is_file():
            return candidate
    raise SystemExit("golden: tests/golden/model.txt not found; set SHARDPOINT_GOLDEN_MODEL")


def parse(text):
    records = []
    for number, line in enumerate(text.splitlines(), 1):
        fields = line.split("#", 1)[0].split()
        if not fields:
            continue
        kind = fields[0]
        if kind == "tensor" and len(fields) == 6:
            shape = () if fields[3] == "-" else tuple(int(s) for s in fields[3].split(","))
            records.append(Record("tensor", fields[1], dtype=fields[2], shape=shape, sharding=fields[4], seed=int(fields[5])))
        elif kind == "bytes" and len(fields) == 5:
            records.append(Record("bytes", fields[1], length=int(fields[2]), sharding=fields[3], seed=int(fields[4])))
        elif kind == "meta" and len(fields) >= 3:
            records.append(Record("meta", fields[1], value=" ".join(fields[2:])))
        else:
            raise SystemExit(f"golden: model line {number} is malformed: {line!r}")
    return records


def load_model():
    return parse(model_path().read_text(encoding="utf-8"))


def generate(nbytes, seed, as_bool=False):
    """byte(k) = (k * 131 + seed * 17 + (k >> 11)) mod 256 (mod 2 again for bool)."""
    k = np.arange(nbytes, dtype=np.uint64)
    data = ((k * np.uint64(131) + np.uint64(seed * 17) + (k >> np.uint64(11))) % np.uint64(256)).astype(np.uint8)
    return data % 2 if as_bool else data


def tensor_of(record):
    """The whole tensor as a numpy array (raw uint carriers for bf16 / f8) and its DType."""
    dtype = sp.DType[record.dtype.upper()]
    raw = generate(math.prod(record.shape) * dtype.itemsize, record.seed, dtype == sp.DType.BOOL)
    return raw.view(dtype.numpy_dtype).reshape(record.shape), dtype


def part(n, rank, world):
    return rank * n // world, (rank + 1) * n // world


def add_record(save, record, rank, world):
    if record.kind == "meta":
        save.set_metadata(record.fqn, record.value)
        return
    if record.sharding == "rank0" and rank != 0:
        return
    if record.kind == "bytes":
        if record.sharding not in ("rank0", "replicated"):
            raise SystemExit(f"golden: bytes {record.fqn} cannot be sharded by {record.sharding}")
        save.add_bytes(record.fqn, generate(record.length, record.seed))
        return
    full, dtype = tensor_of(record)
    if record.sharding in ("rank0", "replicated"):
        save.add_tensor(record.fqn, full, dtype=dtype)
        return
    dim = {"rows": 0, "cols": 1}.get(record.sharding)
    if dim is None or dim >= len(record.shape):
        raise SystemExit(f"golden: tensor {record.fqn} cannot be sharded by {record.sharding}")
    lo, hi = part(record.shape[dim], rank, world)
    if lo == hi:
        return
    index = [slice(None)] * len(record.shape)
    index[dim] = slice(lo, hi)
    offsets = [0] * len(record.shape)
    offsets[dim] = lo
    # A column slice is a strided view: it is saved in place, without a copy.
    save.add_tensor(record.fqn, full[tuple(index)], offsets=offsets, global_shape=record.shape, dtype=dtype)


def write(directory, world):
    model = load_model()

    def rank_main(rank, comm):
        with sp.Save(directory, comm, overwrite=True) as save:
            for record in model:
                add_record(save, record, rank, world)
        # leaving the block commits (collectively)

    sp.LocalGroup(world).run(rank_main)
    print(f"golden write {directory}: {world} ranks ok")
    return 0


def read(directory):
    model = load_model()
    failures = []

    def fail(message):
        failures.append(message)
        print(message)

    with sp.Reader(directory) as reader:
        found = {entry.fqn: entry for entry in reader.entries()}
        wanted = {r.fqn: r for r in model if r.kind != "meta"}
        for fqn in sorted(set(found) - set(wanted)):
            fail(f"{fqn}: unexpected entry")
        for fqn, record in wanted.items():
            entry = found.get(fqn)
            if entry is None:
                fail(f"{fqn}: missing")
                continue
            try:
                check_entry(reader, record, entry, fail)
            except sp.ShardpointError as exc:
                fail(f"{fqn}: {exc}")
        metadata = reader.metadata
        for record in model:
            if record.kind == "meta" and metadata.get(record.fqn) != record.value:
                fail(f"meta {record.fqn}: {metadata.get(record.fqn)!r}, want {record.value!r}")
    if failures:
        return 1
    print(f"golden read {directory}: {len(wanted)} entries ok")
    return 0


def check_entry(reader, record, entry, fail):
    fqn = record.fqn
    if record.kind == "bytes":
        if entry.kind != sp.EntryKind.BYTES or entry.nbytes != record.length:
            fail(f"{fqn}: {entry.kind} of {entry.nbytes} bytes, want bytes of {record.length}")
            return
        if reader.read_bytes(fqn) != generate(record.length, record.seed).tobytes():
            fail(f"{fqn}: blob differs from the generator")
        return
    expected, dtype = tensor_of(record)
    if entry.kind != sp.EntryKind.TENSOR or entry.dtype != dtype or entry.shape != record.shape:
        fail(f"{fqn}: {entry.kind} {entry.dtype} {entry.shape}, want tensor {dtype} {record.shape}")
        return
    if reader.read_tensor(fqn).tobytes() != expected.tobytes():
        fail(f"{fqn}: whole tensor differs from the generator")
    if record.shape and record.shape[0] >= 2:
        lo = record.shape[0] // 3
        offsets = (lo,) + (0,) * (len(record.shape) - 1)
        sizes = (record.shape[0] - lo,) + record.shape[1:]
        if reader.read_tensor(fqn, offsets=offsets, sizes=sizes).tobytes() != expected[lo:].tobytes():
            fail(f"{fqn}: box from row {lo} differs from the generator")


def main(argv):
    try:
        if len(argv) == 4 and argv[1] == "write":
            return write(argv[2], int(argv[3]))
        if len(argv) == 3 and argv[1] == "read":
            return read(argv[2])
    except sp.ShardpointError as exc:
        print(f"golden {argv[1]} {argv[2]}: {exc}")
        return 1
    print("usage: golden.py write DIR WORLD | golden.py read DIR", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
