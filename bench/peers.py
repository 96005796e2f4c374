#!/usr/bin/env python3
"""Peers on the same data: safetensors (numpy API) and, when torch is importable,
torch.distributed.checkpoint, measured in one run on the same disk as shardpoint_bench.

The state's entries (names, dtypes, shapes) come from `shardpoint_bench --print-spec`, so every
library stores exactly the same tensors. shardpoint's numbers come from a shardpoint_bench JSON
file (--shardpoint-json, as bench/run.sh passes) or from running the binary here.

Prints GB/s (1e9 bytes/s, medians of --reps) and the ratio shardpoint / peer (> 1: shardpoint
is faster), plus each library's peak RSS over the state while saving.
"""
import argparse
import gc
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

MiB = 1 << 20


def parse_spec(bench, size):
    out = subprocess.run([bench, "--print-spec", "--size", size], check=True, capture_output=True, text=True).stdout
    spec = []
    for line in out.splitlines():
        name, kind, *dims = line.split()
        spec.append((name, kind, tuple(int(d) for d in dims)))
    return spec


def make_state(spec):
    import numpy as np

    rng = np.random.default_rng(0)
    state = {}
    for name, kind, shape in spec:
        if kind == "u8":
            state[name] = rng.integers(0, 256, size=shape, dtype=np.uint8)
        elif kind == "f32-ones":
            state[name] = np.ones(shape, dtype=np.float32)
        else:
            a = rng.random(shape, dtype=np.float32)
            a -= 0.5
            a *= 0.1
            state[name] = a
    return state


def nbytes(state):
    return sum(a.nbytes for a in state.values())


def fsync_path(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_tree(path):
    for root, _, files in os.walk(path):
        for f in files:
            fsync_path(os.path.join(root, f))
        fsync_path(root)
    fsync_path(os.path.dirname(path.rstrip("/")) or ".")


def remove(path):
    if os.path.isdir(path):
        shutil.rmtree(path)
    elif os.path.exists(path):
        os.remove(path)


def vm_kb(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field):
                return int(line.split()[1]) * 1024
    return 0


# ---------------------------------------------------------------------------------------------
# The libraries. Each save_* writes `state` to `path`; each load_* returns the time of a warm load.

def safetensors_save(state, path, fsync):
    from safetensors.numpy import save_file

    save_file(state, path)
    if fsync:
        fsync_path(path)
        fsync_path(os.path.dirname(path))


def safetensors_load(path):
    from safetensors.numpy import load_file

    return load_file(path)


def safetensors_load_into(dest, path):
    """safetensors' way to fill existing arrays: safe_open, then copy each tensor into place."""
    import numpy as np
    from safetensors import safe_open

    with safe_open(path, framework="numpy") as f:
        for k in f.keys():
            np.copyto(dest[k], f.get_tensor(k))


def drop_page_cache(paths):
    """Evicts `paths` (files or trees) from the page cache: drop_caches when permitted (root), else
    POSIX_FADV_DONTNEED on every file (clean pages only, hence the sync first). Returns the method."""
    os.sync()
    try:
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("1\n")
        return "drop_caches"
    except OSError:
        pass
    for p in paths:
        files = [p] if os.path.isfile(p) else [os.path.join(d, n) for d, _, ns in os.walk(p) for n in ns]
        for name in files:
            fd = os.open(name, os.O_RDONLY)
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)
    return "fadvise(DONTNEED)"


def shardpoint_python():
    """The shardpoint Python package, when importable (bench/run.sh puts it on the path)."""
    try:
        import shardpoint

        shardpoint.library_version()
        return shardpoint
    except Exception as e:  # ImportError, or the library not found
        print("shardpoint Python package not importable (%s): small-tensor lines skipped" % e)
        return None


def tree_bytes(path):
    if os.path.isfile(path):
        return os.path.getsize(path)
    return sum(os.path.getsize(os.path.join(d, n)) for d, _, ns in os.walk(path) for n in ns)


def torch_available():
    try:
        import torch  # noqa: F401
        import torch.distributed.checkpoint  # noqa: F401

        return True, torch.__version__
    except Exception as e:  # ImportError, or a broken install
        return False, str(e)


def torch_state(state):
    import torch

    return {k: torch.from_numpy(v) for k, v in state.items()}


def dcp_save(tstate, path, fsync):
    import torch.distributed.checkpoint as dcp

    writer = dcp.FileSystemWriter(path, sync_files=fsync, thread_count=os.cpu_count() or 1)
    dcp.save(tstate, storage_writer=writer)


def dcp_load(tdest, path):
    import torch.distributed.checkpoint as dcp

    dcp.load(tdest, storage_reader=dcp.FileSystemReader(path))


# ---------------------------------------------------------------------------------------------

def cpu_now():
    # This process's CPU seconds (all threads: DCP and safetensors may use several).
    return time.process_time()


LAST_CPU = [0.0]


def timed(fn):
    c0 = cpu_now()
    t0 = time.perf_counter()
    r = fn()
    t = time.perf_counter() - t0
    LAST_CPU[0] = cpu_now() - c0
    return t, r


def run_peak_rss_child(args, library):
    """A fresh interpreter that builds the state, saves it once and reports VmHWM - VmRSS before."""
    out = subprocess.run([sys.executable, __file__, "--rss-child", library, "--bench", args.bench, "--size", args.size,
                          "--dir", args.workdir], check=True, capture_output=True, text=True).stdout
    for line in out.splitlines():
        if line.startswith("rss "):
            _, state_bytes, before, hwm, reset = line.split()
            return {"state_bytes": int(state_bytes), "rss_before": int(before), "hwm": int(hwm), "reset_ok": reset == "1"}
    raise RuntimeError("peak-RSS child printed: " + out)


def run_shardpoint_rss_child(args):
    """shardpoint_bench's own peak-RSS child (plain 1-rank save), for the same table."""
    out = subprocess.run([args.bench, "--rss-child", "plain", "--child-dir", os.path.join(args.workdir, "rss-shardpoint"),
                          "--size", args.size], check=True, capture_output=True, text=True).stdout
    _, _, state_bytes, before, hwm, reset = out.split()
    return {"state_bytes": int(state_bytes), "rss_before": int(before), "hwm": int(hwm), "reset_ok": reset == "1"}


def rss_child(args):
    spec = parse_spec(args.bench, args.size)
    state = make_state(spec)
    gc.collect()
    before = vm_kb("VmRSS:")
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        reset = 1
    except OSError:
        reset = 0
    path = os.path.join(args.dir, "rss-" + args.rss_child)
    if args.rss_child == "safetensors":
        safetensors_save(state, path + ".safetensors", False)
    else:
        dcp_save(torch_state(state), path, False)
    print("rss %d %d %d %d" % (nbytes(state), before, vm_kb("VmHWM:"), reset))
    return 0


def run_small(args):
    """--small tensors of 64 f32 (256 bytes): save (durable and not) and load into fresh arrays,
    shardpoint's Python package against safetensors, alternating who goes first; file sizes."""
    import numpy as np

    sp = shardpoint_python()
    if sp is None:
        return None
    rng = np.random.default_rng(7)
    state = {"layer.%05d.w" % i: rng.standard_normal(64, dtype=np.float32) for i in range(args.small)}
    data = sum(v.nbytes for v in state.values())
    W = args.workdir
    st_path, sp_path = os.path.join(W, "small.safetensors"), os.path.join(W, "small-ckpt")
    libs = {
        "shardpoint": {
            "save_fsync": lambda: sp.save(sp_path, state),
            "save_nofsync": lambda: sp.save(sp_path, state, durable=False),
            "load_fresh": lambda: sp.load(sp_path),
            "path": sp_path,
        },
        "safetensors": {
            "save_fsync": lambda: safetensors_save(state, st_path, True),
            "save_nofsync": lambda: safetensors_save(state, st_path, False),
            "load_fresh": lambda: safetensors_load(st_path),
            "path": st_path,
        },
    }
    secs = {lib: {} for lib in libs}
    sizes = {}
    print("\nsmall tensors: %d x 256 B (%.1f MB of data), %d reps" % (args.small, data / 1e6, args.reps), file=sys.stderr)
    for rep in range(args.reps + 1):  # rep 0 warms up imports and allocators, not recorded
        order = list(libs) if rep % 2 == 0 else list(reversed(libs))
        for lib in order:
            ops = libs[lib]
            for key in ("save_nofsync", "save_fsync"):
                remove(ops["path"])
                os.sync()
                gc.collect()
                t = timed(ops[key])[0]
                if rep:
                    secs[lib].setdefault(key, []).append(t)
            sizes[lib] = tree_bytes(ops["path"])
            if lib == "shardpoint":  # the data files alone (the metadata is reported apart)
                sizes["shardpoint data files"] = sizes[lib] - os.path.getsize(os.path.join(sp_path, "shardpoint.meta"))
            ops["load_fresh"]()  # warm
            gc.collect()
            t, loaded = timed(ops["load_fresh"])
            if rep == 0 and any(not np.array_equal(state[k], loaded[k]) for k in state):
                raise RuntimeError(lib + " loaded different small tensors")
            if rep:
                secs[lib].setdefault("load_fresh", []).append(t)
            del loaded
            remove(ops["path"])
    out = {"count": args.small, "data_bytes": data, "file_bytes": sizes, "median_s": {}, "ratios": {}}
    print("\n%-40s %12s %12s %21s" % ("small tensors (%d x 256 B)" % args.small, "shardpoint s", "safetensors s",
                                      "safetensors / shardpoint"))
    for key, label in (("save_nofsync", "save (no fsync)"), ("save_fsync", "save (durable / fsync)"),
                       ("load_fresh", "load into new arrays, warm")):
        a, b = statistics.median(secs["shardpoint"][key]), statistics.median(secs["safetensors"][key])
        out["median_s"][key] = {"shardpoint": a, "safetensors": b}
        out["ratios"][key] = b / a
        print("%-40s %12.4f %12.4f %21.2f" % (label, a, b, b / a))
    for lib, n in sizes.items():
        print("%-40s %12.2f x the data (%d bytes)" % ("stored size, " + lib, n / data, n))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bench", required=True, help="path to the shardpoint_bench binary")
    ap.add_argument("--size", default="2G")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--dir", default=os.environ.get("TMPDIR") or "/var/tmp", help="parent of the work directory")
    ap.add_argument("--shardpoint-json", help="results of a shardpoint_bench run on the same size and disk")
    ap.add_argument("--json", help="write the results here")
    ap.add_argument("--no-rss", action="store_true", help="skip the peak-RSS children")
    ap.add_argument("--small", type=int, default=20000, help="number of 256-byte tensors (0: skip)")
    ap.add_argument("--rss-child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.rss_child:
        return rss_child(args)

    try:
        import numpy  # noqa: F401
        import safetensors
    except ImportError as e:
        print("peers.py: needs numpy and safetensors (pip install numpy safetensors): %s" % e, file=sys.stderr)
        return 2

    os.makedirs(args.dir, exist_ok=True)
    args.workdir = tempfile.mkdtemp(prefix="shardpoint-peers-", dir=args.dir)
    try:
        return run(args, safetensors.__version__)
    finally:
        shutil.rmtree(args.workdir, ignore_errors=True)


def run(args, st_version):
    import numpy as np

    spec = parse_spec(args.bench, args.size)
    t0 = time.perf_counter()
    state = make_state(spec)
    total = nbytes(state)
    print("peers.py: state %.2f GiB (%d bytes, %d entries), generated in %.1f s; %d reps (medians); work dir %s"
          % (total / 1024 / MiB, total, len(state), time.perf_counter() - t0, args.reps, args.workdir))

    have_torch, torch_info = torch_available()
    libs = {"safetensors": {"version": st_version, "seconds": {}}}
    if have_torch:
        libs["torch.distributed.checkpoint"] = {"version": torch_info, "seconds": {}}
        tstate = torch_state(state)
        import torch

        tdest = {k: torch.empty_like(v) for k, v in tstate.items()}
    else:
        print("torch.distributed.checkpoint: SKIPPED - torch is not installed (%s). This benchmark does not install it: "
              "the torch wheel alone is ~540 MB (pip download --no-deps torch), plus the nvidia-* CUDA wheels it depends on." % torch_info.splitlines()[0])

    dest = {k: np.empty_like(v) for k, v in state.items()}  # safetensors' existing arrays
    cache_drop = []

    def add(lib, key, seconds, cpu=None):
        libs[lib]["seconds"].setdefault(key, []).append(seconds)
        libs[lib].setdefault("cpu", {}).setdefault(key, []).append(LAST_CPU[0] if cpu is None else cpu)

    # shardpoint: from a finished run, or one shardpoint_bench rep inside every rep here, so that
    # all libraries see the same phases of a noisy machine.
    sp_fixed = None
    if args.shardpoint_json:
        with open(args.shardpoint_json) as f:
            sp_fixed = json.load(f)
        if sp_fixed.get("state_bytes") != total:
            print("WARNING: shardpoint's state is %s bytes, the peers' %d: sizes differ" % (sp_fixed.get("state_bytes"), total))
        m = sp_fixed.get("measurements", {})
        libs = dict([("shardpoint", {"version": sp_fixed.get("version"),
                                     "seconds": {k: v["seconds"] for k, v in m.items()},
                                     "cpu": {k: v.get("cpu_seconds", []) for k, v in m.items()}})] + list(libs.items()))
    else:
        libs = dict([("shardpoint", {"version": None, "seconds": {}})] + list(libs.items()))

    def shardpoint_rep():
        out = os.path.join(args.workdir, "shardpoint-rep.json")
        subprocess.run([args.bench, "--size", args.size, "--reps", "1", "--load-reps", "1", "--dir", args.workdir,
                        "--only", "save,load,cold", "--json", out], check=True, stdout=subprocess.DEVNULL)
        with open(out) as f:
            r = json.load(f)
        libs["shardpoint"]["version"] = r["version"]
        for k, v in r["measurements"].items():
            for sec, cpu in zip(v["seconds"], v["cpu_seconds"]):
                add("shardpoint", k, sec, cpu)

    W = args.workdir
    st_path = os.path.join(W, "state.safetensors")
    dcp_path = os.path.join(W, "dcp")
    for rep in range(args.reps):
        print("  rep %d/%d" % (rep + 1, args.reps), file=sys.stderr)
        if sp_fixed is None:
            shardpoint_rep()
        for fsync in (False, True):
            key = "save_fsync" if fsync else "save_nofsync"
            os.sync()
            add("safetensors", key, timed(lambda: safetensors_save(state, st_path, fsync))[0])
            if not fsync:
                remove(st_path)
            if have_torch:
                os.sync()
                add("torch.distributed.checkpoint", key, timed(lambda: dcp_save(tstate, dcp_path, fsync))[0])
                if not fsync:
                    remove(dcp_path)
        # Warm loads of what the fsync saves left behind.
        safetensors_load(st_path)  # warm the cache
        t, loaded = timed(lambda: safetensors_load(st_path))
        add("safetensors", "load_fresh", t)
        if rep == 0:
            bad = [k for k in state if not np.array_equal(state[k], loaded[k])]
            if bad:
                raise RuntimeError("safetensors loaded different bytes for " + ", ".join(bad[:3]))
        del loaded
        gc.collect()
        safetensors_load_into(dest, st_path)  # warm again (load_file may have left pages behind)
        add("safetensors", "load_warm", timed(lambda: safetensors_load_into(dest, st_path))[0])
        if rep == 0:
            bad = [k for k in state if not np.array_equal(state[k], dest[k])]
            if bad:
                raise RuntimeError("safetensors safe_open loaded different bytes for " + ", ".join(bad[:3]))
        cache_drop.append(drop_page_cache([st_path]))
        add("safetensors", "load_cold", timed(lambda: safetensors_load_into(dest, st_path))[0])
        remove(st_path)
        if have_torch:
            dcp_load(tdest, dcp_path)  # warm the cache
            add("torch.distributed.checkpoint", "load_warm", timed(lambda: dcp_load(tdest, dcp_path))[0])
            if rep == 0:
                bad = [k for k in tstate if not torch.equal(tstate[k], tdest[k])]
                if bad:
                    raise RuntimeError("torch DCP loaded different bytes for " + ", ".join(bad[:3]))
            drop_page_cache([dcp_path])
            add("torch.distributed.checkpoint", "load_cold", timed(lambda: dcp_load(tdest, dcp_path))[0])
            remove(dcp_path)
    os.sync()

    rss = {}
    if not args.no_rss:
        del state
        gc.collect()
        for lib in libs:
            print("  peak RSS child: %s" % lib, file=sys.stderr)
            if lib == "shardpoint":
                rss[lib] = run_shardpoint_rss_child(args)
            else:
                rss[lib] = run_peak_rss_child(args, "safetensors" if lib == "safetensors" else "dcp")
            remove(os.path.join(W, "rss-safetensors.safetensors"))
            remove(os.path.join(W, "rss-dcp"))
            remove(os.path.join(W, "rss-shardpoint"))

    rows = [
        ("save (no fsync)", "save_nofsync"),
        ("save (fsync)", "save_fsync"),
        ("warm load into existing memory", "load_warm"),
        ("warm load into fresh memory", "load_fresh"),
        ("cold load into existing memory", "load_cold"),
    ]
    result = {"tool": "peers.py", "state_bytes": total, "reps": args.reps, "torch": torch_info if have_torch else None,
              "interleaved": sp_fixed is None, "libraries": {}, "ratios": [], "rss": {}}
    print("\n%-32s %-30s %9s %8s %9s %21s" % ("operation", "library", "median s", "GB/s", "CPU s/GB", "shardpoint / library"))
    for label, key in rows:
        sp_secs = libs["shardpoint"]["seconds"].get(key)
        sp_gbps = total / statistics.median(sp_secs) / 1e9 if sp_secs else None
        for lib, d in libs.items():
            secs = d["seconds"].get(key)
            if not secs:
                print("%-32s %-30s %9s %8s %9s %21s" % (label, lib, "-", "-", "-", "(no such operation)"))
                continue
            med = statistics.median(secs)
            gbps = total / med / 1e9
            cpus = d.get("cpu", {}).get(key) or []
            cpu_gb = statistics.median(cpus) / (total / 1e9) if cpus else float("nan")
            result["libraries"].setdefault(lib, {"version": d["version"]})[key] = {
                "median_s": med, "gbps": gbps, "cpu_s_per_gb": cpu_gb, "seconds": secs}
            if lib == "shardpoint":
                print("%-32s %-30s %9.3f %8.3f %9.3f %21s" % (label, lib, med, gbps, cpu_gb, ""))
                continue
            ratio = sp_gbps / gbps if sp_gbps else None
            result["ratios"].append({"operation": label, "library": lib, "ratio": ratio})
            print("%-32s %-30s %9.3f %8.3f %9.3f %21s" % (label, lib, med, gbps, cpu_gb, "%.2f" % ratio if ratio else "n/a"))
    print("(shardpoint's samples were %s; safetensors loads into existing memory by safe_open + get_tensor + copy,"
          " into fresh memory by load_file; torch DCP loads in place into existing tensors; cold: page cache dropped"
          " with %s)" % ("taken rep by rep between the peers' reps" if sp_fixed is None else "read from " + args.shardpoint_json,
                         cache_drop[0] if cache_drop else "-"))
    result["cache_drop"] = cache_drop[0] if cache_drop else None
    del dest
    gc.collect()
    if args.small:
        result["small"] = run_small(args)

    if rss:
        print("\n%-30s %14s %14s" % ("peak RSS during save", "over state", "state"))
        for lib, r in rss.items():
            over = max(0, r["hwm"] - r["rss_before"])
            result["rss"][lib] = dict(r, overhead=over)
            print("%-30s %10.1f MiB %10.1f MiB%s" % (lib, over / MiB, r["state_bytes"] / MiB,
                                                   "" if r["reset_ok"] else " (peak not reset)"))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
