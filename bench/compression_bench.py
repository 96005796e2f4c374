"""What each codec buys on tensor data: ratio, save and load throughput, and the disk speed below
which compressing makes a save or a load faster end to end.

    python bench/compression_bench.py [--mib 64] [--reps 5] [--dir DIR]

Needs numpy and the shardpoint package (PYTHONPATH=bindings/python/src, LD_LIBRARY_PATH at
libshardpoint). Three kinds of data of --mib MiB each, as a model's state holds them:
  f32 weights      normal(0, 0.02)
  bf16 weights     the same values rounded to bfloat16 (stored as bf16)
  f32 Adam moments exp_avg_sq-like: squares of normal(0, 1e-3) gradients, averaged (positive,
                   exponents spread over many binades)
These are synthetic: trained weights have about the same entropy per mantissa bit (random), so the
ratios are what float data gives, not what zeros or repeated patterns give.

For each kind and codec: the median of --reps saves (durable=False: the CPU side, the bytes land in
the page cache) and warm loads into an existing array, values checked. The end-to-end model for a
disk of D bytes/s is t = cpu + stored / D (no overlap of compression and I/O: pessimistic for
compression); "pays off below" is the D where that equals the uncompressed save's
t = cpu_raw + raw / D. Machines here have 2 cores; compression runs on all of them.
"""

import argparse
import json
import os
import shutil
import statistics
import tempfile
import time

import numpy as np

import shardpoint as sp

CODECS = [
    ("raw", dict(compression=0)),
    ("deflate stream 1", dict(compression=1)),
    ("zlib blocks 1 +shuffle", dict(compression="zlib", compression_level=1, shuffle=True)),
    ("zstd blocks 1", dict(compression="zstd", compression_level=1)),
    ("zstd blocks 1 +shuffle", dict(compression="zstd", compression_level=1, shuffle=True)),
    ("zstd blocks 3 +shuffle", dict(compression="zstd", compression_level=3, shuffle=True)),
]


def data_kinds(mib):
    n = (mib << 20) // 4
    rng = np.random.default_rng(1)
    w = rng.normal(0, 0.02, n).astype(np.float32)
    w2 = rng.normal(0, 0.02, 2 * n).astype(np.float32)
    bf16 = ((w2.view(np.uint32) + 0x8000) >> 16).astype(np.uint16)  # round to nearest (no NaN here)
    g = rng.normal(0, 1e-3, (4, n)).astype(np.float32)
    moments = (g * g).mean(axis=0, dtype=np.float32)
    return [("f32 weights", w, "f32"), ("bf16 weights", bf16, "bf16"),
            ("f32 Adam moments", moments, "f32")]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mib", type=int, default=64)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--dir", default=None)
    ap.add_argument("--json", default=None, help="write every result here")
    args = ap.parse_args()
    results = []
    root = tempfile.mkdtemp(prefix="sp-compress-", dir=args.dir)
    print(f"compression bench: {args.mib} MiB per kind, {args.reps} reps, medians, {os.cpu_count()} cores, dir {root}")
    print(f"{'data':18} {'codec':24} {'ratio':>6} {'save GB/s':>9} {'load GB/s':>9} {'save pays <':>12} {'load pays <':>12}")
    try:
        for kind, array, dtype in data_kinds(args.mib):
            raw_save = raw_load = None
            for name, options in CODECS:
                saves, loads = [], []
                stored = 0
                for rep in range(args.reps):
                    path = os.path.join(root, f"c{rep}")
                    t0 = time.perf_counter()
                    with sp.Save(path, durable=False, **options) as s:
                        s.add_tensor("x", array, dtype=dtype)
                    saves.append(time.perf_counter() - t0)
                    out = np.empty_like(array)
                    with sp.Reader(path) as r:
                        stored = r.entry("x").stored_bytes
                        t0 = time.perf_counter()
                        r.read_tensor("x", out=out, dtype=dtype)
                        loads.append(time.perf_counter() - t0)
                    if not np.array_equal(out.view(np.uint8), array.view(np.uint8)):
                        raise SystemExit(f"{kind} {name}: the load returned other bytes")
                    shutil.rmtree(path)
                save, load = statistics.median(saves), statistics.median(loads)
                nbytes = array.nbytes
                if raw_save is None:
                    raw_save, raw_load = save, load
                    pays = ("-", "-")
                else:
                    # cpu + stored / D < raw_cpu + raw / D  <=>  D < (raw - stored) / (cpu - raw_cpu)
                    def below(cpu, raw_cpu):
                        saved = nbytes - stored
                        if saved <= 0:
                            return 0.0
                        extra = cpu - raw_cpu
                        return float("inf") if extra <= 0 else saved / extra
                    pays = (below(save, raw_save), below(load, raw_load))
                    results.append({"data": kind, "codec": name, "ratio": nbytes / stored, "save_gbps": nbytes / save / 1e9,
                                    "load_gbps": nbytes / load / 1e9, "save_pays_below_bps": pays[0],
                                    "load_pays_below_bps": pays[1]})
                    pays = tuple("never" if d == 0 else "always" if d == float("inf") else f"{d / 1e6:.0f} MB/s"
                                 for d in pays)
                print(f"{kind:18} {name:24} {nbytes / stored:6.3f} {nbytes / save / 1e9:9.2f} {nbytes / load / 1e9:9.2f} "
                      f"{pays[0]:>12} {pays[1]:>12}")
    finally:
        shutil.rmtree(root, ignore_errors=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"tool": "compression_bench.py", "mib": args.mib, "reps": args.reps, "results": results}, f, indent=2)


if __name__ == "__main__":
    main()
