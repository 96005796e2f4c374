"""dcp.save / dcp.load through DCP's FileSystemWriter/Reader vs shardpoint.torch, same state, same run.

    python bench/dcp_bench.py [--mib 256] [--reshard-mib 256] [--small 20000] [--reps 5]
                              [--dcp-threads 1] [--dir DIR] [--json FILE]

Runs with torch 2.15 and the shardpoint package importable (e.g. the venv of
bindings/python/torch-env.sh, PYTHONPATH=bindings/python/src, LD_LIBRARY_PATH at libshardpoint).
Both libraries go through the same dcp.save / dcp.load calls with DCP's default planners.

1. Single process, a transformer-like dict of bf16 and f32 tensors of about --mib MiB (40 MiB and
   4 tensors per layer: --mib 2048 gives about 200 tensors). Durable save (FileSystemWriter
   sync_files=True vs shardpoint's default fsync) next to write() + fsync of the same bytes, warm
   load in place, cold load in place (the page cache of the checkpoint's files dropped before every rep).
2. Resharded: 4 ranks save DTensors sharded by rows (Shard(0)), 3 ranks load them sharded by
   columns (Shard(1)); gloo over 127.0.0.1 on CPU, one process per rank. A rep's time is the
   slowest rank's time between two barriers. Warm and cold loads, and their limits: dcp.load with
   a reader that reads nothing (what DCP spends whatever the storage), an O_DIRECT read of the files.
3. --small N tensors of 64 f32 in a flat dict: save, read_metadata alone, planning (from the end
   of read_metadata to the first read_data call inside dcp.load) and the whole dcp.load.

Every measurement is the median of --reps reps (interleaved: DCP, shardpoint, shardpoint, DCP, ...,
so that slow phases of the machine hit both); every load is checked value for value. Ends with a
table of ratios DCP time / shardpoint time (> 1: shardpoint is faster) against the targets.
"""

import argparse
import gc
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
import zlib

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
import torch.multiprocessing as mp
from torch.distributed.checkpoint import FileSystemReader, FileSystemWriter

from shardpoint.torch import StorageReader, StorageWriter

warnings.filterwarnings("ignore")

NAMES = ("dcp", "shardpoint")
# Issue targets, as minimum ratios DCP time / shardpoint time.
TARGET_SAVE, TARGET_LOAD, TARGET_RESHARD_LOAD, TARGET_METADATA = 2.0, 2.0, 3.0, 20.0


# ---------------------------------------------------------------------------------------------
# helpers shared by every part


def writer_for(name, path, dcp_threads):
    if name == "dcp":
        return FileSystemWriter(path, sync_files=True, thread_count=dcp_threads)
    return StorageWriter(path)  # durable (fsync) by default


def reader_for(name, path):
    return FileSystemReader(path) if name == "dcp" else StorageReader(path)


class NoReadReader(StorageReader):
    """dcp.load's floor: shardpoint's metadata, then read_data resolves and commits every item
    without reading a byte. What dcp.load spends with it (planning, collectives, resolving the
    destinations) every storage layer spends, so DCP's time over it bounds any ratio."""

    def read_data(self, plan, planner):
        for item in plan.items:
            planner.commit_tensor(item, planner.resolve_tensor(item))
        future = torch.futures.Future()
        future.set_result(None)
        return future


def direct_read_seconds(path):
    """Time to read every file of a checkpoint once with O_DIRECT (the page cache bypassed), in
    8 MiB requests: the disk's sequential read limit for these bytes."""
    import mmap
    buffer = mmap.mmap(-1, 8 << 20)  # page-aligned, as O_DIRECT needs
    t0 = time.perf_counter()
    for name in files_under(path):
        fd = os.open(name, os.O_RDONLY | os.O_DIRECT)
        try:
            while os.readv(fd, [buffer]) == len(buffer):
                pass
        finally:
            os.close(fd)
    return time.perf_counter() - t0


def fsync_write_seconds(directory, nbytes):
    """Time to write nbytes to a new file in directory in 8 MiB write() calls and fsync it, like
    `dd conv=fsync`: the disk's limit for a durable save of these bytes."""
    piece = os.urandom(8 << 20)
    name = os.path.join(directory, "fsync-probe")
    t0 = time.perf_counter()
    fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        for at in range(0, nbytes, len(piece)):
            os.write(fd, piece[:min(len(piece), nbytes - at)])
        os.fsync(fd)
    finally:
        os.close(fd)
    elapsed = time.perf_counter() - t0
    os.unlink(name)
    return elapsed


def against_disk(samples, disk):
    """Each library's median time as a multiple of the disk's time for the same bytes (1.00: at
    the disk's limit; a virtual disk's speed varies, so below 1 happens)."""
    dcp_s, sp_s = (statistics.median(samples[name]) for name in NAMES)
    return f"DCP takes {dcp_s / disk:.2f}x that, shardpoint {sp_s / disk:.2f}x"


def disk_note(samples, directory, nbytes, reps):
    """The note of a durable save: the disk's own time for its bytes."""
    os.sync()
    disk = statistics.median(fsync_write_seconds(directory, nbytes) for _ in range(reps))
    return (f"writing the same bytes with write() + fsync, one thread: {disk * 1e3:.1f} ms "
            f"({nbytes / 1e9 / disk:.2f} GB/s); " + against_disk(samples, disk))


def order(rep):
    """DCP first on even reps, shardpoint first on odd ones."""
    return NAMES if rep % 2 == 0 else NAMES[::-1]


def files_under(path):
    return [os.path.join(d, f) for d, _, fs in os.walk(path) for f in fs]


class CacheDropper:
    """Drops the page cache of a checkpoint's files. Dirty pages cannot be dropped, so os.sync()
    first. The whole cache (drop_caches) if allowed, else POSIX_FADV_DONTNEED on every file."""

    def __init__(self):
        self.method = None

    def drop(self, path):
        os.sync()
        if self.method in (None, "drop_caches"):
            try:
                with open("/proc/sys/vm/drop_caches", "w") as f:
                    f.write("1\n")
                self.method = "drop_caches"
                return
            except OSError:
                self.method = "fadvise"
        for name in files_under(path):
            fd = os.open(name, os.O_RDONLY)
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)


def resident_fraction(path):
    """Fraction of the checkpoint's bytes in the page cache (util-linux fincore), None without it:
    shows that a cold load really starts cold."""
    names = files_under(path)
    if not names or shutil.which("fincore") is None:
        return None
    out = subprocess.run(["fincore", "--bytes", "--noheadings", "--raw", "--output", "RES,SIZE", *names],
                         capture_output=True, text=True)
    if out.returncode != 0:
        return None
    res = size = 0
    for line in out.stdout.split("\n"):
        if line.strip():
            r, s = line.split()
            res, size = res + int(r), size + int(s)
    return res / size if size else None


def interleaved(reps, prepare, op, after=None):
    """Per library, the times of op(name, prepare(name)) over reps reps, after one warm-up rep
    that is not recorded (first calls pay imports, library loading, thread pools). prepare and
    after are untimed; a collection first keeps the garbage of earlier reps out of the timing."""
    samples = {name: [] for name in NAMES}
    for rep in range(reps + 1):
        for name in order(rep):
            arg = prepare(name)
            gc.collect()
            t0 = time.perf_counter()
            op(name, arg)
            elapsed = time.perf_counter() - t0
            if after is not None:
                after(name)
            if rep:
                samples[name].append(elapsed)
    return samples


def summary(samples):
    return {"median_s": statistics.median(samples), "min_s": min(samples), "max_s": max(samples),
            "reps": len(samples), "samples_s": samples}


# ---------------------------------------------------------------------------------------------
# 1. single process


def make_state(mib):
    """Layers of 40 MiB in 4 tensors: bf16 [4096, 2048] and [2048, 2048], f32 [4096, 1024], an f32
    norm [2048]; round(mib / 40) layers (at least one) and a non-tensor step."""
    g = torch.Generator().manual_seed(0)
    state = {}
    for layer in range(max(1, round(mib / 40))):
        state[f"layers.{layer}"] = {
            "attn.wq": torch.randn(4096, 2048, generator=g).to(torch.bfloat16),
            "attn.wo": torch.randn(2048, 2048, generator=g).to(torch.bfloat16),
            "mlp.w1": torch.randn(4096, 1024, generator=g),
            "norm": torch.randn(2048, generator=g),
        }
    state["step"] = 1000
    return state


def tensors_of(state):
    return [t for v in state.values() if isinstance(v, dict) for t in v.values()]


def zeros_like(state):
    return {k: ({n: torch.zeros_like(t) for n, t in v.items()} if isinstance(v, dict) else 0) for k, v in state.items()}


def zero_(target):
    for k, v in target.items():
        if isinstance(v, dict):
            for t in v.values():
                t.zero_()
        else:
            target[k] = 0


def check_state(state, loaded, what):
    for k, v in state.items():
        if isinstance(v, dict):
            for n, t in v.items():
                if not torch.equal(t, loaded[k][n]):
                    raise SystemExit(f"dcp_bench: {what}: {k}.{n} differs after loading")
        elif loaded[k] != v:
            raise SystemExit(f"dcp_bench: {what}: {k} differs after loading")


def fresh_writers(paths, args):
    """A writer factory for interleaved(): each save into an emptied directory, after a sync so
    that the write-back of the previous rep is not paid by this one."""
    def fresh_writer(name):
        shutil.rmtree(paths[name], ignore_errors=True)
        os.sync()
        return writer_for(name, paths[name], args.dcp_threads)
    return fresh_writer


def single_process(args, root, dropper, results):
    state = make_state(args.mib)
    tensors = tensors_of(state)
    nbytes = sum(t.numel() * t.element_size() for t in tensors)
    print(f"[1] single process: {nbytes / 2**20:.0f} MiB in {len(tensors)} tensors", flush=True)
    paths = {name: os.path.join(root, "single-" + name) for name in NAMES}

    # Save: a fresh directory each rep (see fresh_writers). The last rep's checkpoint stays for the loads.
    saves = interleaved(args.reps, fresh_writers(paths, args), lambda name, writer: dcp.save(state, storage_writer=writer))
    record(results, "save", f"save, 1 rank, {nbytes / 2**20:.0f} MiB, durable", saves, TARGET_SAVE, nbytes,
           disk_note(saves, root, nbytes, args.reps))

    # Loads in place into one set of tensors, zeroed before and checked after every rep.
    target = zeros_like(state)
    for kind in ("warm", "cold"):
        resident = []

        def prepare(name):
            zero_(target)
            if kind == "cold":
                dropper.drop(paths[name])
                resident.append(resident_fraction(paths[name]))
            return reader_for(name, paths[name])

        loads = interleaved(args.reps, prepare, lambda name, reader: dcp.load(target, storage_reader=reader),
                            lambda name: check_state(state, target, f"{name} {kind} load"))
        record(results, f"load_{kind}", f"load, 1 rank, {kind}", loads, TARGET_LOAD, nbytes,
               cold_note(dropper, resident) if kind == "cold" else None)


def cold_note(dropper, resident):
    known = [r for r in resident if r is not None]
    note = f"page cache dropped before every rep with {dropper.method}"
    if known:
        note += f"; at most {100 * max(known):.1f}% of the checkpoint resident after"
    return note


# ---------------------------------------------------------------------------------------------
# 2. resharded: 4 ranks save by rows, 3 ranks load by columns


def reshard_specs(mib):
    """(fqn, shape, dtype) of the global tensors: layers of a bf16 [3072, 1536] and an f32
    [1536, 1536] matrix (18 MiB) and an f32 norm [1536] kept replicated. Rows divide by 4 (save)
    and columns by 3 (load), so every shard has the same size."""
    specs = []
    for layer in range(max(1, round(mib / 18))):
        specs.append((f"layers.{layer}.wq", (3072, 1536), torch.bfloat16))
        specs.append((f"layers.{layer}.w1", (1536, 1536), torch.float32))
        specs.append((f"layers.{layer}.norm", (1536,), torch.float32))
    return specs


def values(fqn, shape, dtype, rows=None, cols=None):
    """The box rows x cols of the deterministic global tensor fqn, computed from the element index
    alone so that every rank builds or checks only its own part. Halves in [-50, 50]: exact in bf16."""
    seed = zlib.crc32(fqn.encode()) % 997
    if len(shape) == 1:
        index = torch.arange(shape[0], dtype=torch.int64)
    else:
        r = torch.arange(shape[0], dtype=torch.int64) if rows is None else rows
        c = torch.arange(shape[1], dtype=torch.int64) if cols is None else cols
        index = r[:, None] * shape[1] + c[None, :]
    return (((index * 7 + seed) % 201 - 100).to(torch.float32) / 2).to(dtype)


def reshard_worker(rank, world, port, job):
    """One rank of the save job (world 4) or of the load job (world 3). Rank 0 writes the times."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.tensor import DTensor, Shard

    torch.set_num_threads(1)
    warnings.filterwarnings("ignore")
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        mesh = init_device_mesh("cpu", (world,))
        specs = reshard_specs(job["mib"])
        paths = {name: os.path.join(job["root"], "reshard-" + name) for name in NAMES}
        out = {}

        def timed(op, before=None):
            """The slowest rank's time of op, each rank timing between two barriers; before()
            runs on rank 0 while the others wait."""
            if before is not None and rank == 0:
                before()
            gc.collect()
            dist.barrier()
            t0 = time.perf_counter()
            op()
            elapsed = time.perf_counter() - t0
            dist.barrier()
            times = [None] * world
            dist.all_gather_object(times, elapsed)
            return max(times)

        if job["phase"] == "save":
            # Each rank builds only its rows: DTensor.from_local, no scatter of full tensors.
            state = {}
            for fqn, shape, dtype in specs:
                if len(shape) == 1:
                    state[fqn] = values(fqn, shape, dtype)  # replicated plain tensor
                else:
                    rows = torch.arange(shape[0]).chunk(world)[rank]
                    local = values(fqn, shape, dtype, rows=rows)
                    state[fqn] = DTensor.from_local(local, mesh, [Shard(0)], run_check=False)
            saves = {name: [] for name in NAMES}
            for rep in range(job["reps"] + 1):  # rep 0: warm-up, not recorded
                for name in order(rep):
                    def fresh(path=paths[name]):
                        shutil.rmtree(path, ignore_errors=True)
                        os.sync()
                    writer = writer_for(name, paths[name], job["dcp_threads"])
                    elapsed = timed(lambda: dcp.save(state, storage_writer=writer), fresh)
                    if rep:
                        saves[name].append(elapsed)
            out["save"] = saves
        else:
            # Column shards, zeroed before and checked after every load.
            locals_, state = {}, {}
            for fqn, shape, dtype in specs:
                if len(shape) == 1:
                    locals_[fqn] = state[fqn] = torch.zeros(shape, dtype=dtype)
                else:
                    cols = torch.arange(shape[1]).chunk(world)[rank]
                    locals_[fqn] = torch.zeros((shape[0], len(cols)), dtype=dtype)
                    state[fqn] = DTensor.from_local(locals_[fqn], mesh, [Shard(1)], run_check=False)
            expected = {}
            for fqn, shape, dtype in specs:
                cols = None if len(shape) == 1 else torch.arange(shape[1]).chunk(world)[rank]
                expected[fqn] = values(fqn, shape, dtype, cols=cols)
            dropper = CacheDropper()
            resident = []
            for kind in ("warm", "cold"):
                loads = {name: [] for name in NAMES}
                for rep in range(job["reps"] + 1):  # rep 0: warm-up, not recorded
                    for name in order(rep):
                        for t in locals_.values():
                            t.zero_()
                        before = None
                        if kind == "cold":
                            def before(path=paths[name]):
                                dropper.drop(path)
                                resident.append(resident_fraction(path))
                        reader = reader_for(name, paths[name])
                        elapsed = timed(lambda: dcp.load(state, storage_reader=reader), before)
                        for fqn, t in locals_.items():
                            if not torch.equal(t, expected[fqn]):
                                raise RuntimeError(f"dcp_bench: rank {rank}: {name} {kind} resharded load: "
                                                   f"{fqn} differs")
                        if rep:
                            loads[name].append(elapsed)
                out[f"load_{kind}"] = loads
            floor = []
            for rep in range(job["reps"] + 1):
                elapsed = timed(lambda: dcp.load(state, storage_reader=NoReadReader(paths["shardpoint"])))
                if rep:
                    floor.append(elapsed)
            out["load_floor"] = floor
            out["drop_method"] = dropper.method
            out["resident"] = resident
            if rank == 0:
                out["direct_read"] = [direct_read_seconds(paths["shardpoint"]) for _ in range(job["reps"])]
        dist.barrier()
        if rank == 0:
            with open(job["out"], "w") as f:
                json.dump(out, f)
    finally:
        dist.destroy_process_group()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def resharded(args, root, results):
    specs = reshard_specs(args.reshard_mib)
    nbytes = sum(torch.Size(s).numel() * d.itemsize for _, s, d in specs)
    print(f"[2] resharded: {nbytes / 2**20:.0f} MiB in {len(specs)} tensors, "
          f"saved by 4 ranks (Shard(0)), loaded by 3 ranks (Shard(1))", flush=True)
    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    got = {}
    for phase, world in (("save", 4), ("load", 3)):
        job = {"phase": phase, "mib": args.reshard_mib, "root": root, "reps": args.reps,
               "dcp_threads": args.dcp_threads, "out": os.path.join(root, f"reshard-{phase}.json")}
        mp.spawn(reshard_worker, args=(world, free_port(), job), nprocs=world, join=True)
        with open(job["out"]) as f:
            got.update(json.load(f))
    record(results, "reshard_save", f"save, 4 ranks by rows, {nbytes / 2**20:.0f} MiB", got["save"],
           TARGET_SAVE, nbytes, disk_note(got["save"], root, nbytes, args.reps))
    # The limits: no storage layer beats DCP's FileSystemReader by more than DCP's time over
    # dcp.load's own floor (warm); a cold load also reads every byte from the disk once.
    floor = statistics.median(got["load_floor"])
    disk = statistics.median(got["direct_read"])
    dcp_warm = statistics.median(got["load_warm"]["dcp"])
    record(results, "reshard_load_warm", "load, 3 ranks by columns, warm", got["load_warm"],
           TARGET_RESHARD_LOAD, nbytes,
           f"dcp.load with a reader that reads nothing: {floor * 1e3:.1f} ms, so no storage layer can "
           f"reach more than {dcp_warm / floor:.2f}x here")
    dropper = CacheDropper()
    dropper.method = got["drop_method"]
    record(results, "reshard_load_cold", "load, 3 ranks by columns, cold", got["load_cold"], TARGET_RESHARD_LOAD,
           nbytes, cold_note(dropper, got["resident"]) +
           f"; reading the checkpoint's files once with O_DIRECT, one thread: {disk * 1e3:.1f} ms "
           f"({nbytes / 1e9 / disk:.2f} GB/s); " + against_disk(got["load_cold"], disk))


# ---------------------------------------------------------------------------------------------
# 3. many small tensors: metadata and planning


def instrument(reader, marks):
    """Records when read_metadata returns and when read_data is first entered, on this reader
    object only (dcp.load calls the instance's attributes)."""
    read_metadata, read_data = reader.read_metadata, reader.read_data

    def timed_read_metadata(*args, **kwargs):
        out = read_metadata(*args, **kwargs)
        marks["metadata_done"] = time.perf_counter()
        return out

    def timed_read_data(plan, planner):
        marks.setdefault("read_data", time.perf_counter())
        return read_data(plan, planner)

    reader.read_metadata, reader.read_data = timed_read_metadata, timed_read_data
    return reader


def small_tensors(args, root, results):
    n = args.small
    state = {f"p.{i}": torch.arange(64, dtype=torch.float32) + 64 * i for i in range(n)}
    print(f"[3] small: {n} tensors of 64 f32 (256 bytes) in a flat dict", flush=True)
    paths = {name: os.path.join(root, "small-" + name) for name in NAMES}

    saves = interleaved(args.reps, fresh_writers(paths, args), lambda name, writer: dcp.save(state, storage_writer=writer))
    record(results, "small_save", f"save, {n} small tensors", saves, TARGET_SAVE)

    # read_metadata alone, on a new reader each rep (nothing cached from an earlier rep).
    opened = {}

    def read_metadata(name, reader):
        opened[name] = (reader, reader.read_metadata())

    def close(name):
        reader, md = opened.pop(name)
        if len(md.state_dict_metadata) != n:
            raise SystemExit(f"dcp_bench: {name}: metadata has {len(md.state_dict_metadata)} entries, not {n}")
        if hasattr(reader, "close"):
            reader.close()

    metadata = interleaved(args.reps, lambda name: reader_for(name, paths[name]), read_metadata, close)
    record(results, "small_metadata", f"read_metadata, {n} small tensors", metadata, TARGET_METADATA)

    # The whole dcp.load, with its planning part: from the end of read_metadata to read_data.
    target = {k: torch.zeros(64) for k in state}
    planning = {name: [] for name in NAMES}
    marks = {}

    def prepare(name):
        for t in target.values():
            t.zero_()
        marks.clear()
        return instrument(reader_for(name, paths[name]), marks)

    def after(name):
        planning[name].append(marks["read_data"] - marks["metadata_done"])
        if any(not torch.equal(target[k], state[k]) for k in state):
            raise SystemExit(f"dcp_bench: {name}: small tensors differ after loading")

    loads = interleaved(args.reps, prepare, lambda name, reader: dcp.load(target, storage_reader=reader), after)
    for name in NAMES:
        planning[name] = planning[name][1:]  # without the warm-up rep, as the loads
    record(results, "small_planning", f"load planning, {n} small tensors", planning, None)
    record(results, "small_load", f"load (total), {n} small tensors", loads, TARGET_LOAD)


# ---------------------------------------------------------------------------------------------
# results


def record(results, key, label, samples, target, nbytes=None, note=None):
    d, s = summary(samples["dcp"]), summary(samples["shardpoint"])
    ratio = d["median_s"] / s["median_s"]
    entry = {"label": label, "dcp": d, "shardpoint": s, "ratio": ratio, "target": target,
             "met": None if target is None else ratio >= target, "bytes": nbytes, "note": note}
    results[key] = entry
    rate = ""
    if nbytes:
        rate = f"  ({nbytes / 1e9 / d['median_s']:.2f} vs {nbytes / 1e9 / s['median_s']:.2f} GB/s)"
    print(f"  {label}: DCP {d['median_s'] * 1e3:.1f} ms, shardpoint {s['median_s'] * 1e3:.1f} ms, "
          f"ratio {ratio:.2f}x, {d['reps']} reps{rate}", flush=True)
    if note:
        print(f"    ({note})", flush=True)


def print_table(results):
    rows = [("path", "DCP ms", "shardpoint ms", "ratio", "reps", "target", "")]
    for entry in results.values():
        target = "-" if entry["target"] is None else f">= {entry['target']:g}x"
        met = "" if entry["met"] is None else ("met" if entry["met"] else "NOT MET")
        rows.append((entry["label"], f"{entry['dcp']['median_s'] * 1e3:.1f}",
                     f"{entry['shardpoint']['median_s'] * 1e3:.1f}", f"{entry['ratio']:.2f}x",
                     f"{entry['dcp']['reps']}+{entry['shardpoint']['reps']}", target, met))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    print()
    print("medians; ratio = DCP time / shardpoint time (> 1: shardpoint is faster); reps = DCP+shardpoint")
    for i, r in enumerate(rows):
        cells = [r[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(r[1:-1], widths[1:-1])] + [r[-1]]
        print(" | ".join(cells).rstrip())
        if i == 0:
            print("-+-".join("-" * w for w in widths))
    for entry in results.values():
        if entry["note"]:
            print(f"{entry['label']}: {entry['note']}")
    judged = [e for e in results.values() if e["met"] is not None]
    print(f"targets met: {sum(e['met'] for e in judged)} of {len(judged)}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--mib", type=int, default=256, help="single-process state size (0: skip)")
    ap.add_argument("--reshard-mib", type=int, default=256, help="resharded state size (0: skip)")
    ap.add_argument("--small", type=int, default=20000, help="number of small tensors (0: skip)")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--dcp-threads", type=int, default=1, help="FileSystemWriter thread_count (DCP's default 1)")
    ap.add_argument("--dir", default=None, help="where checkpoints are written (default: $TMPDIR)")
    ap.add_argument("--json", default=None, help="write every result and sample to this file")
    args = ap.parse_args()
    if args.reps < 1:
        ap.error("--reps must be at least 1")

    root = tempfile.mkdtemp(prefix="dcp-bench-", dir=args.dir)
    results = {}
    dropper = CacheDropper()
    print(f"torch {torch.__version__}, {os.cpu_count()} cores, load average "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}, {args.reps} reps per measurement, "
          f"FileSystemWriter(sync_files=True, thread_count={args.dcp_threads}) vs shardpoint.torch defaults, "
          f"checkpoints under {root}", flush=True)
    try:
        if args.mib:
            single_process(args, root, dropper, results)
        if args.reshard_mib:
            resharded(args, root, results)
        if args.small:
            small_tensors(args, root, results)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print_table(results)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"config": vars(args), "torch": torch.__version__, "cores": os.cpu_count(),
                       "host": platform.node(), "load_average": os.getloadavg(), "results": results}, f, indent=1)
        print(f"results written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
