"""dcp.save / dcp.load through DCP's FileSystemWriter/Reader vs shardpoint.torch, same state, same run.

    python bench/dcp_bench.py [--mib 256] [--reps 5] [--small 2000] [--dir DIR]

Runs with torch 2.15 and the shardpoint package importable (e.g. the venv of
bindings/python/torch-env.sh, PYTHONPATH=bindings/python/src, LD_LIBRARY_PATH at libshardpoint).
Single process. The state is a transformer-like dict of bf16 and f32 tensors of about --mib MiB.
Each measurement is the median of --reps repetitions; every load is checked value for value
against the saved state. Both writers are durable (FileSystemWriter's sync_files=True, shardpoint's
default fsync); loads are warm (the files were just written). --small N adds a metadata read of a
checkpoint of N small tensors (read_metadata alone), where DCP unpickles and shardpoint decodes.
Prints one line per measurement and the ratios (DCP time / shardpoint time: > 1 means shardpoint
is faster).
"""

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
import warnings

import torch
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint import FileSystemReader, FileSystemWriter

from shardpoint.torch import StorageReader, StorageWriter

warnings.filterwarnings("ignore")


def make_state(mib):
    """~mib MiB: blocks of a bf16 [1024, 1024] weight pair and an f32 [1024, 512] one, plus norms."""
    g = torch.Generator().manual_seed(0)
    state, total, layer = {}, 0, 0
    while total < mib << 20:
        wq = torch.randn(1024, 1024, generator=g).to(torch.bfloat16)
        wo = torch.randn(1024, 1024, generator=g).to(torch.bfloat16)
        w1 = torch.randn(1024, 512, generator=g)
        norm = torch.randn(1024, generator=g)
        state[f"layers.{layer}"] = {"attn.wq": wq, "attn.wo": wo, "mlp.w1": w1, "norm": norm}
        total += sum(t.numel() * t.element_size() for t in state[f"layers.{layer}"].values())
        layer += 1
    state["step"] = 1000
    return state, total


def zeros_like(state):
    return {k: ({n: torch.zeros_like(t) for n, t in v.items()} if isinstance(v, dict) else 0) for k, v in state.items()}


def check(state, loaded):
    for k, v in state.items():
        if isinstance(v, dict):
            for n, t in v.items():
                if not torch.equal(t, loaded[k][n]):
                    raise SystemExit(f"dcp_bench: {k}.{n} differs after loading")
        elif loaded[k] != v:
            raise SystemExit(f"dcp_bench: {k} differs after loading")


def timed(fn, reps, before=None):
    times = []
    for _ in range(reps):
        if before is not None:
            before()
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mib", type=int, default=256)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--small", type=int, default=2000)
    ap.add_argument("--dir", default=None)
    args = ap.parse_args()
    root = tempfile.mkdtemp(prefix="dcp-bench-", dir=args.dir)
    try:
        state, nbytes = make_state(args.mib)
        gb = nbytes / 1e9
        paths = {"dcp": os.path.join(root, "dcp"), "shardpoint": os.path.join(root, "sp")}
        writers = {"dcp": lambda: FileSystemWriter(paths["dcp"]), "shardpoint": lambda: StorageWriter(paths["shardpoint"])}
        readers = {"dcp": lambda: FileSystemReader(paths["dcp"]), "shardpoint": lambda: StorageReader(paths["shardpoint"])}

        def fresh(name):
            return lambda: shutil.rmtree(paths[name], ignore_errors=True)

        results = {}
        print(f"state: {nbytes / 2**20:.0f} MiB in {sum(len(v) for v in state.values() if isinstance(v, dict))} tensors; "
              f"{args.reps} repetitions, medians")
        for name in ("dcp", "shardpoint"):
            results[("save", name)] = timed(lambda: dcp.save(state, storage_writer=writers[name]()), args.reps, fresh(name))
            if name == "dcp":
                dcp.save(state, storage_writer=writers[name]())  # leave one for the loads
            else:
                dcp.save(state, storage_writer=writers[name]())
            target = zeros_like(state)
            results[("load", name)] = timed(lambda: dcp.load(target, storage_reader=readers[name]()), args.reps)
            check(state, target)
        if args.small:
            small = {f"p.{i}": torch.full((4,), float(i)) for i in range(args.small)}
            for name in ("dcp", "shardpoint"):
                shutil.rmtree(paths[name], ignore_errors=True)
                dcp.save(small, storage_writer=writers[name]())
                results[("metadata", name)] = timed(lambda: readers[name]().read_metadata(), args.reps)
                target = {k: torch.zeros(4) for k in small}
                dcp.load(target, storage_reader=readers[name]())
                if any(not torch.equal(target[k], small[k]) for k in small):
                    raise SystemExit("dcp_bench: small tensors differ after loading")
        for what in ("save", "load", "metadata"):
            if (what, "dcp") not in results:
                continue
            d, s = results[(what, "dcp")], results[(what, "shardpoint")]
            rate = "" if what == "metadata" else f"  ({gb / d:.2f} vs {gb / s:.2f} GB/s)"
            label = f"{what} ({args.small} small tensors)" if what == "metadata" else what
            print(f"{label:32s} DCP FileSystem {d * 1e3:9.1f} ms   shardpoint {s * 1e3:9.1f} ms   "
                  f"ratio {d / s:5.2f}x{rate}")
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
