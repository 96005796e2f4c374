#!/usr/bin/env python3
"""Tests of the shardpoint command-line tool, run by ctest: real checkpoints (made by the tool's
own `demo` command or by make_checkpoint, a C ABI program), real files, real processes.

    cli_test.py --cli BIN --maker BIN --version X.Y.Z CASE [--build DIR] [--bin-dir DIR] [--source DIR]
"""
import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

A = None  # the parsed command line


def run(*argv, env=None, check_rc=None):
    p = subprocess.run([str(a) for a in argv], capture_output=True, text=True, env=env)
    if check_rc is not None and p.returncode != check_rc:
        fail(f"{' '.join(map(str, argv))}: exit {p.returncode}, wanted {check_rc}\nstdout:\n{p.stdout}\nstderr:\n{p.stderr}")
    return p


def fail(msg):
    print("FAIL:", msg)
    sys.exit(1)


def expect(cond, msg):
    if not cond:
        fail(msg)


def demo_checkpoint(where, mb=4):
    d = os.path.join(where, "ck")
    run(A.cli, "demo", "--size-mb", mb, d, check_rc=0)
    return d


def case_conventions(tmp):
    usage = None
    for args in (["--help"], ["-h"], ["help"], ["inspect", "--help"], ["verify", "-h"]):
        p = run(A.cli, *args, check_rc=0)
        expect(p.stdout.startswith("usage: shardpoint"), f"{args}: usage not on stdout: {p.stdout!r}")
        expect(p.stderr == "", f"{args}: unexpected stderr {p.stderr!r}")
        for cmd in ("inspect", "verify", "gc", "demo", "--dry-run", "--limit"):
            expect(cmd in p.stdout, f"{args}: usage does not mention {cmd}")
        usage = p.stdout
    p = run(A.cli, check_rc=2)
    expect(p.stdout == "" and p.stderr == usage, "no arguments: usage belongs on stderr with exit 2")

    for args in (["--version"], ["version"]):
        p = run(A.cli, *args, check_rc=0)
        expect(p.stdout.strip() == f"shardpoint {A.version} (checkpoint formats 1 to 2)", f"{args}: {p.stdout!r}")

    ck = demo_checkpoint(tmp)
    p = run(A.cli, "inspct", ck, check_rc=2)
    expect("unknown command 'inspct'" in p.stderr and "did you mean 'inspect'?" in p.stderr, p.stderr)
    expect(p.stdout == "", "a usage error prints nothing on stdout")
    p = run(A.cli, "frobnicate", ck, check_rc=2)
    expect("unknown command 'frobnicate'" in p.stderr and "did you mean" not in p.stderr, p.stderr)
    p = run(A.cli, "inspect", "--jsn", ck, check_rc=2)
    expect("unknown option '--jsn'" in p.stderr and "'--json'" in p.stderr, p.stderr)
    p = run(A.cli, "demo", "--size-mb", "0", os.path.join(tmp, "x"), check_rc=2)
    expect("--size-mb" in p.stderr and "got '0'" in p.stderr, p.stderr)
    expect(not os.path.exists(os.path.join(tmp, "x")), "a refused demo wrote something")
    p = run(A.cli, "inspect", "--limit", "-3", ck, check_rc=2)
    expect("got '-3'" in p.stderr, p.stderr)
    p = run(A.cli, "inspect", check_rc=2)
    expect("missing the checkpoint directory" in p.stderr, p.stderr)
    p = run(A.cli, "verify", ck, "extra", check_rc=2)
    expect("'extra'" in p.stderr, p.stderr)
    missing = os.path.join(tmp, "no-such-checkpoint")
    p = run(A.cli, "inspect", missing, check_rc=1)
    expect(missing in p.stderr and "SHARDPOINT_ENOTFOUND" in p.stderr, p.stderr)

    # Options after the directory mean the same as before it.
    before = run(A.cli, "inspect", "--json", ck, check_rc=0).stdout
    after = run(A.cli, "inspect", ck, "--json", check_rc=0).stdout
    expect(before == after, "inspect DIR --json differs from inspect --json DIR")
    info = json.loads(after)
    expect(info["alignment"] == 4096, f"alignment {info['alignment']}")
    bs = info["block_size"]
    expect(bs >= 512 and bs & (bs - 1) == 0, f"block size {bs} is not a power of two >= 512")
    n = len(info["entries"])
    text = run(A.cli, "inspect", ck, "--limit", "2", check_rc=0).stdout
    expect(f"... {n - 2} more entries" in text, text)
    expect(info["entries"][1]["fqn"] in text and info["entries"][2]["fqn"] not in text, "--limit 2 listed the wrong entries")
    p = run(A.cli, "verify", ck, check_rc=0)
    expect(p.stdout.rstrip().endswith("ok, every checksum matches"), "clean verify")
    # Not a terminal: plain progress lines on stderr, from 0 to every stored byte.
    stored = info["stored_bytes"]
    expect(f"verify: 0 of {stored} bytes (0%)" in p.stderr and f"verify: {stored} of {stored} bytes (100%)" in p.stderr,
           f"verify progress lines for {stored} bytes:\n{p.stderr}")
    p = run(A.cli, "inspect", "--json", "--limit", "1", ck, check_rc=2)
    expect("--limit" in p.stderr, p.stderr)


def case_sigpipe(tmp):
    # Far more output than a pipe holds, so the tool is still writing when `head` leaves.
    ck = os.path.join(tmp, "big")
    run(A.maker, ck, 3000, check_rc=0)
    size = len(run(A.cli, "inspect", ck, check_rc=0).stdout)
    expect(size > 256 << 10, f"inspect printed only {size} bytes: not enough to fill a pipe (64 KiB)")
    for pipeline in (f"'{A.cli}' inspect '{ck}' | head -n 1", f"'{A.cli}' inspect --json '{ck}' | head -c 10",
                     f"'{A.cli}' inspect '{ck}' | true"):
        for i in range(40):
            p = subprocess.run(["bash", "-c", "set -o pipefail; " + pipeline], capture_output=True, text=True)
            expect(p.returncode == 0, f"run {i}: `{pipeline}` under pipefail exited {p.returncode}: {p.stderr!r}")
            expect(p.stderr == "", f"run {i}: `{pipeline}` printed {p.stderr!r}")
    # Output to a full device is a real failure, reported as one.
    if os.path.exists("/dev/full"):
        p = subprocess.run(f"'{A.cli}' inspect '{ck}' > /dev/full", shell=True, capture_output=True, text=True)
        expect(p.returncode == 1 and "cannot write to stdout" in p.stderr, f"/dev/full: {p.returncode} {p.stderr!r}")


def corrupt(path, offset):
    with open(path, "r+b") as f:
        f.seek(offset)
        b = f.read(1)
        f.seek(offset)
        f.write(bytes([b[0] ^ 0xFF]))


def case_verify_corrupt(tmp):
    ck = demo_checkpoint(tmp)
    info = json.loads(run(A.cli, "inspect", "--json", ck, check_rc=0).stdout)
    entries = info["entries"]
    extents = sum(len(e["chunks"]) for e in entries)
    # Two extents of two different entries, in two different files.
    picked = []
    for e in entries:
        for c in e["chunks"]:
            if c["stored_length"] >= 1024 and c["transform"] == "none" and all(c["file"] != p[1]["file"] for p in picked):
                picked.append((e["fqn"], c))
                break
        if len(picked) == 2:
            break
    expect(len(picked) == 2, "the demo checkpoint has no two extents to corrupt")
    for _, c in picked:
        corrupt(os.path.join(ck, c["file"]), c["offset"] + c["stored_length"] // 2)
    p = run(A.cli, "verify", ck, check_rc=1)
    bad = [l for l in p.stderr.splitlines() if " BAD " in l]
    expect(len(bad) == 2, f"wanted 2 BAD lines, got:\n{p.stderr}")
    for (fqn, c), line in zip(picked, bad):
        expect(f"BAD {fqn} " in line and c["file"] in line and "SHARDPOINT_ECHECKSUM" in line, line)
    summary = p.stdout.strip().splitlines()[-1]
    want = (f"{len(entries)} entries, {extents} extents, {info['stored_bytes']} bytes")
    expect(want in summary and summary.endswith("2 problems found"), f"summary {summary!r}, wanted {want!r} ... 2 problems found")


HEX = "0123456789abcdef0123456789abcdef"


def case_debris(tmp):
    ck = os.path.join(tmp, "ck")
    run(A.maker, ck, 5, check_rc=0)
    debris = {f"data-{HEX}-r00000.bin": b"x" * 5000, f"shardpoint.meta.tmp-{HEX}": b"meta" * 10}
    # Files that are not shardpoint's own must never be touched, even with similar names.
    user = {"notes.txt": b"my notes", f"data-{HEX}-r00000.bin.bak": b"backup", "data-mine.bin": b"mine"}
    for name, content in {**debris, **user}.items():
        with open(os.path.join(ck, name), "wb") as f:
            f.write(content)

    p = run(A.cli, "verify", ck, check_rc=0)  # unreferenced files warn, they do not fail
    for name in debris:
        expect(name in p.stderr and "warning" in p.stderr, f"verify did not warn about {name}:\n{p.stderr}")
    for name in user:
        expect(f"/{name} " not in p.stderr, f"verify warned about the user's {name}:\n{p.stderr}")
    total = sum(len(c) for c in debris.values())
    expect(f"2 unreferenced files ({total} bytes)" in p.stdout, p.stdout)

    for args in (["gc", "--dry-run", ck], ["gc", ck, "--dry-run"]):
        p = run(A.cli, *args, check_rc=0)
        for name in debris:
            expect(f"would remove {name} ({len(debris[name])} bytes)" in p.stdout, p.stdout)
            expect(os.path.exists(os.path.join(ck, name)), f"--dry-run removed {name}")
        expect(f"would remove 2 files, {total} bytes" in p.stdout, p.stdout)

    p = run(A.cli, "gc", ck, check_rc=0)
    for name in debris:
        expect(f"removing {name} ({len(debris[name])} bytes)" in p.stdout, p.stdout)
        expect(not os.path.exists(os.path.join(ck, name)), f"gc left {name}")
    expect(f"removed 2 files, {total} bytes" in p.stdout, p.stdout)
    for name, content in user.items():
        with open(os.path.join(ck, name), "rb") as f:
            expect(f.read() == content, f"gc touched the user's {name}")
    p = run(A.cli, "verify", ck, check_rc=0)
    expect("warning" not in p.stderr and "unreferenced" not in p.stdout, p.stdout + p.stderr)
    p = run(A.cli, "gc", ck, check_rc=0)
    expect("removed 0 files, 0 bytes" in p.stdout, p.stdout)
    p = run(A.cli, "gc", os.path.join(tmp, "missing"), check_rc=1)
    expect("SHARDPOINT_ENOTFOUND" in p.stderr, p.stderr)


def tensor_entries(ck):
    info = json.loads(run(A.cli, "inspect", "--json", ck, check_rc=0).stdout)
    return {e["fqn"]: (e["dtype"], e["shape"]) for e in info["entries"] if e["kind"] == "tensor"}, info["metadata"]


def case_convert(tmp):
    ck = demo_checkpoint(tmp)  # 4 ranks' shards, plus blobs
    out = os.path.join(tmp, "m.safetensors")
    p = run(A.cli, "convert", "--to", "safetensors", ck, out, check_rc=1)
    expect("SHARDPOINT_EKIND" in p.stderr and "rng_state.rank0" in p.stderr and "--skip-bytes" in p.stderr, p.stderr)
    expect(not os.path.exists(out) and sorted(os.listdir(tmp)) == ["ck"], f"a refused conversion left {os.listdir(tmp)}")

    p = run(A.cli, "convert", "--to", "safetensors", "--skip-bytes", ck, out, check_rc=0)
    tensors, metadata = tensor_entries(ck)
    expect(f"converted {ck} to {out}: {len(tensors)} tensors" in p.stdout, p.stdout)
    # Not a terminal: plain progress lines, the last one at 100%.
    lines = [l for l in p.stderr.splitlines() if l.startswith("convert: ")]
    expect(lines and "(100%)" in lines[-1] and "\r" not in p.stderr, p.stderr)
    with open(out, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(n))
    expect(header["__metadata__"] == metadata, f"__metadata__ {header['__metadata__']} != {metadata}")
    expect({k: (v["dtype"], v["shape"]) for k, v in header.items() if k != "__metadata__"}
           == {k: (d.upper(), s) for k, (d, s) in tensors.items()}, "the file's tensors are not the checkpoint's")

    p = run(A.cli, "convert", "--to", "safetensors", "--skip-bytes", ck, out, check_rc=1)
    expect("SHARDPOINT_EEXISTS" in p.stderr, p.stderr)
    run(A.cli, "convert", "--to", "safetensors", "--skip-bytes", "--overwrite", ck, out, check_rc=0)

    # A sharded model directory and back; then out again: the same bytes as the first file.
    hf = os.path.join(tmp, "hf")
    run(A.cli, "convert", "--to", "safetensors", "--skip-bytes", "--max-shard-size", "1MB", ck, hf, check_rc=0)
    with open(os.path.join(hf, "model.safetensors.index.json")) as f:
        index = json.load(f)
    shards = sorted(n for n in os.listdir(hf) if n.endswith(".safetensors"))
    expect(len(shards) > 1 and sorted(set(index["weight_map"].values())) == shards, f"{shards} vs {index['weight_map']}")
    expect(set(index["weight_map"]) == set(tensors), "the weight_map does not name every tensor")
    back = os.path.join(tmp, "back")
    p = run(A.cli, "convert", "--from", "safetensors", "--compression", "zstd", "--buffer-size", "256KiB", hf, back, check_rc=0)
    expect(f"{len(tensors)} tensors" in p.stdout, p.stdout)
    expect(tensor_entries(back) == (tensors, metadata), "the round trip changed the tensors or the metadata")
    run(A.cli, "verify", back, check_rc=0)
    again = os.path.join(tmp, "again.safetensors")
    run(A.cli, "convert", "--to", "safetensors", back, again, check_rc=0)
    with open(out, "rb") as a, open(again, "rb") as b:
        expect(a.read() == b.read(), "checkpoint -> safetensors -> checkpoint -> safetensors changed bytes")

    # Malformed input: refused, nothing made.
    bad = os.path.join(tmp, "bad.safetensors")
    with open(bad, "wb") as f:
        f.write((1000).to_bytes(8, "little") + b"{}")
    p = run(A.cli, "convert", "--from", "safetensors", bad, os.path.join(tmp, "nope"), check_rc=1)
    expect("SHARDPOINT_EFORMAT" in p.stderr and "bad.safetensors" in p.stderr, p.stderr)
    expect(not os.path.exists(os.path.join(tmp, "nope")), "a refused conversion left its checkpoint directory")

    # Usage errors.
    for args, words in ((["convert", ck, out], "exactly one of"),
                        (["convert", "--to", "safetensors", "--from", "safetensors", ck, out], "exactly one of"),
                        (["convert", "--to", "gguf", ck, out], "unknown format"),
                        (["convert", "--to", "safetensors", ck], "CKPT OUT"),
                        (["convert", "--to", "safetensors", "--max-shard-size", "5XB", ck, hf], "--max-shard-size"),
                        (["convert", "--from", "safetensors", "--skip-bytes", out, back], "--to only"),
                        (["convert", "--from", "safetensors", "--level", "3", out, back], "--compression"),
                        (["convert", "--to", "safetensors", "--max-shard-sise", "1GB", ck, hf], "did you mean '--max-shard-size'")):
        p = run(A.cli, *args, check_rc=2)
        expect(words in p.stderr, f"{args}: {p.stderr!r}")
    expect("convert --to safetensors" in run(A.cli, "--help", check_rc=0).stdout, "--help does not show convert")

    # On a terminal: one line redrawn in place, with sizes and a throughput.
    import pty
    master, slave = pty.openpty()
    proc = subprocess.Popen([A.cli, "convert", "--to", "safetensors", "--skip-bytes", "--overwrite", ck, out],
                            stdout=subprocess.DEVNULL, stderr=slave)
    os.close(slave)
    seen = b""
    while True:
        try:
            chunk = os.read(master, 4096)
        except OSError:
            break
        if not chunk:
            break
        seen += chunk
    os.close(master)
    expect(proc.wait() == 0, "the conversion on a terminal failed")
    expect(b"\r" in seen and b"(100%)" in seen and b"/s" in seen and b"MiB" in seen, f"terminal progress: {seen!r}")


def case_steps(tmp):
    root = os.path.join(tmp, "run")
    for step, n in ((10, 2), (20, 3), (30, 4)):
        run(A.maker, os.path.join(root, f"step-{step}"), n, check_rc=0)
    # A killed save (step 25: debris only, below the newest committed step), a killed save above
    # it (40), a killed deletion, and files of the user's that nothing may touch.
    debris = f"data-{HEX}-r00000.bin"
    for step in (25, 40):
        os.mkdir(os.path.join(root, f"step-{step}"))
        with open(os.path.join(root, f"step-{step}", debris), "wb") as f:
            f.write(b"x" * 1000)
    leftover = os.path.join(root, f".deleting-step-5-{HEX[:16]}")
    os.mkdir(leftover)
    with open(os.path.join(leftover, "shardpoint.meta"), "wb") as f:
        f.write(b"m" * 300)
    with open(os.path.join(root, "notes.txt"), "w") as f:
        f.write("mine")

    p = run(A.cli, "ls", root, check_rc=0)
    expect(p.stdout.startswith(f"{root}: 5 steps (3 committed, 2 partial, 0 damaged)"), p.stdout)
    expect("latest committed step 30" in p.stdout, p.stdout)
    rows = {int(l.split()[0]): l.split() for l in p.stdout.splitlines() if l.startswith("  ") and l.split()[0].isdigit()}
    expect(sorted(rows) == [10, 20, 25, 30, 40], f"listed steps {sorted(rows)}")
    expect(rows[10][1] == "committed" and rows[25][1] == "partial" and rows[25][2:4] == ["1000", "B"], p.stdout)
    expect(".deleting-step-5" in p.stdout and "leftover of a killed deletion" in p.stdout, p.stdout)
    expect(f"step-25/{debris} (1000 B): debris of a killed save" in p.stdout, p.stdout)
    expect(f"'shardpoint gc {root}' removes them" in p.stdout, p.stdout)
    info = json.loads(run(A.cli, "ls", "--json", root, check_rc=0).stdout)
    expect(info["latest"] == 30 and [s["step"] for s in info["steps"]] == [10, 20, 25, 30, 40], info)
    s10 = info["steps"][0]
    expect(s10["state"] == "committed" and s10["files"] == 2 and not s10["busy"] and s10["message"] == "", s10)
    on_disk = sum(os.path.getsize(os.path.join(root, "step-10", f)) for f in os.listdir(os.path.join(root, "step-10")))
    expect(s10["bytes"] == on_disk, f"step 10: {s10['bytes']} bytes listed, {on_disk} on disk")
    expect(abs(s10["time_unix_ns"] / 1e9 - os.path.getmtime(os.path.join(root, "step-10", "shardpoint.meta"))) < 5, s10)
    expect({g["name"] for g in info["garbage"]} == {f".deleting-step-5-{HEX[:16]}/", f"step-25/{debris}", "step-25/",
                                                     f"step-40/{debris}"}, info["garbage"])

    # gc of a root: dry run, then for real; a root is recognized by its steps.
    p = run(A.cli, "gc", "--dry-run", root, check_rc=0)
    expect("would remove 4 files" in p.stdout and os.path.exists(leftover), p.stdout)
    p = run(A.cli, "gc", root, check_rc=0)
    expect(f"removing step-40/{debris} (1000 bytes)" in p.stdout and "removed 4 files, 2300 bytes" in p.stdout, p.stdout)
    expect(not os.path.exists(leftover) and not os.path.exists(os.path.join(root, "step-25")), os.listdir(root))
    expect(os.listdir(os.path.join(root, "step-40")) == [], "step 40 kept its debris")
    expect(open(os.path.join(root, "notes.txt")).read() == "mine", "gc touched the user's file")
    expect("removed 0 files" in run(A.cli, "gc", root, check_rc=0).stdout, "a second gc found more")
    for step in (10, 20, 30):
        run(A.cli, "verify", os.path.join(root, f"step-{step}"), check_rc=0)

    # rm: a step by number (or by its name), a checkpoint directory, and refusals.
    p = run(A.cli, "rm", root, "20", check_rc=0)
    expect(f"removed step 20 ({root}/step-20," in p.stdout, p.stdout)
    run(A.cli, "rm", root, "step-40", check_rc=0)
    p = run(A.cli, "rm", root, "20", check_rc=1)
    expect("SHARDPOINT_ENOTFOUND" in p.stderr and "no step 20" in p.stderr, p.stderr)
    p = run(A.cli, "rm", root, "twenty", check_rc=2)
    expect("got 'twenty'" in p.stderr, p.stderr)
    run(A.cli, "rm", os.path.join(root, "step-10"), check_rc=0)
    p = run(A.cli, "rm", root, check_rc=1)  # the root is no checkpoint
    expect("no checkpoint" in p.stderr, p.stderr)
    expect(sorted(os.listdir(root)) == ["notes.txt", "step-30"], os.listdir(root))
    p = run(A.cli, "ls", root, check_rc=0)
    expect("1 step (1 committed, 0 partial, 0 damaged)" in p.stdout and "garbage" not in p.stdout, p.stdout)
    p = run(A.cli, "ls", os.path.join(tmp, "missing"), check_rc=1)
    expect("SHARDPOINT_ENOTFOUND" in p.stderr, p.stderr)
    p = run(A.cli, "ls", root, root, check_rc=2)
    expect("one root" in p.stderr, p.stderr)


def case_diff(tmp):
    def ck(name, *args):
        d = os.path.join(tmp, name)
        run(A.maker, d, *args, check_rc=0)
        return d
    a = ck("a", 3)
    same = ck("same", 3)
    values = ck("values", 3, 7)            # two values of t.00000 differ
    rechunked = ck("rechunked", 3, 0, 4)   # one chunk per tensor instead of two
    more = ck("more", 4)                   # t.00003 added
    f64 = ck("f64", 3, 0, 2, "f64")
    wide = ck("wide", 3, 0, 2, "f32", 80)

    p = run(A.cli, "diff", a, same, check_rc=0)
    expect("0 added, 0 removed, 0 changed, 3 alike" in p.stdout, p.stdout)
    p = run(A.cli, "diff", "--data", a, same, check_rc=0)
    expect("3 identical" in p.stdout and "values: 6 chunks equal by CRC-32, 0 compared by reading" in p.stdout, p.stdout)

    p = run(A.cli, "diff", a, values, check_rc=0)  # without --data values are not compared
    p = run(A.cli, "diff", a, values, "--data", check_rc=1)
    expect("~ values   t.00000  2 of 256 elements differ, first at [0,5]" in p.stdout, p.stdout)
    expect("1 with other values, 2 identical" in p.stdout and "4 chunks equal by CRC-32, 2 compared by reading" in p.stdout,
           p.stdout)

    p = run(A.cli, "diff", a, rechunked, check_rc=1)
    expect(p.stdout.count("~ changed") == 3 and "chunking 2 -> 1 chunks" in p.stdout, p.stdout)
    p = run(A.cli, "diff", "--data", a, rechunked, check_rc=1)
    expect("0 with other values" in p.stdout and "3 compared by reading" in p.stdout, p.stdout)
    p = run(A.cli, "diff", "--data", values, rechunked, check_rc=1)  # rechunked and different values
    expect("~ values   t.00000  2 of 256 elements differ, first at [0,5]" in p.stdout, p.stdout)

    p = run(A.cli, "diff", a, more, check_rc=1)
    expect("+ added    t.00003  f32 [4,64]" in p.stdout and "1 added, 0 removed" in p.stdout, p.stdout)
    p = run(A.cli, "diff", more, a, check_rc=1)
    expect("- removed  t.00003  f32 [4,64]" in p.stdout, p.stdout)
    p = run(A.cli, "diff", "--data", a, f64, check_rc=1)
    expect("~ changed  t.00001  dtype f32 -> f64" in p.stdout and "0 with other values" in p.stdout, p.stdout)
    p = run(A.cli, "diff", a, wide, check_rc=1)
    expect("~ changed  t.00002  shape [4,64] -> [4,80]" in p.stdout, p.stdout)

    # Rows longer than the 8 MiB a piece holds: read in pieces of part of a row.
    big = ck("big", 1, 0, 2, "f32", 2200000)
    big_rechunked = ck("big-rechunked", 1, 3, 4, "f32", 2200000)
    p = run(A.cli, "diff", "--data", big, big_rechunked, check_rc=1)
    expect("~ values   t.00000  2 of 8800000 elements differ, first at [0,5]" in p.stdout, p.stdout)
    expect("1 compared by reading (67.1 MiB read)" in p.stdout, p.stdout)

    p = run(A.cli, "diff", a, check_rc=2)
    expect("two checkpoint directories" in p.stderr, p.stderr)
    p = run(A.cli, "diff", a, os.path.join(tmp, "missing"), check_rc=2)
    expect("SHARDPOINT_ENOTFOUND" in p.stderr, p.stderr)


def demo_env(tmpdir, **extra):
    env = dict(os.environ, TMPDIR=tmpdir, SHARDPOINT_DEMO_MIB_PER_RANK="1", SHARDPOINT_DEMO_BIN_DIR=A.bin_dir)
    env.pop("SHARDPOINT_DEMO_DIR", None)
    env.update(extra)
    return env


def case_demo_cleanup(tmp):
    script = os.path.join(A.source, "scripts", "demo.sh")
    t = os.path.join(tmp, "t")
    os.mkdir(t)
    p = subprocess.run(["bash", script], capture_output=True, text=True, env=demo_env(t))
    expect(p.returncode == 0, f"demo.sh exited {p.returncode}\n{p.stdout}\n{p.stderr}")
    expect("every checksum matches" in p.stdout and "all values match" in p.stdout, p.stdout)
    expect(os.listdir(t) == [], f"demo.sh left {os.listdir(t)} in its temporary directory")

    # A failing step still cleans up: a fake mpi_demo that writes a file, then fails.
    fake = os.path.join(tmp, "fakebin")
    os.mkdir(fake)
    with open(os.path.join(fake, "mpi_demo"), "w") as f:
        f.write('#!/bin/sh\nmkdir -p "$2" && head -c 65536 /dev/zero > "$2/data-x.bin"\nexit 3\n')
    os.chmod(os.path.join(fake, "mpi_demo"), 0o755)
    p = subprocess.run(["bash", script], capture_output=True, text=True, env=demo_env(t, SHARDPOINT_DEMO_BIN_DIR=fake))
    expect(p.returncode != 0, "demo.sh succeeded with a failing mpi_demo")
    expect(os.listdir(t) == [], f"a failed demo.sh left {os.listdir(t)}")

    # A directory the user chose stays, and the demo says where.
    keep = os.path.join(tmp, "kept")
    p = subprocess.run(["bash", script], capture_output=True, text=True, env=demo_env(t, SHARDPOINT_DEMO_DIR=keep))
    expect(p.returncode == 0, f"demo.sh exited {p.returncode}\n{p.stderr}")
    expect(os.path.exists(os.path.join(keep, "shardpoint.meta")), "SHARDPOINT_DEMO_DIR was not kept")
    expect(f"the checkpoint stays in {keep}" in p.stdout, p.stdout[-500:])


def case_install(tmp):
    prefix = os.path.join(tmp, "prefix with space")
    run("cmake", "--install", A.build, "--prefix", prefix, check_rc=0)
    tool = os.path.join(prefix, "bin", "shardpoint")
    p = run("env", "-i", tool, "--version", check_rc=0)
    expect(p.stdout.strip() == f"shardpoint {A.version} (checkpoint formats 1 to 2)", p.stdout)
    ck = os.path.join(tmp, "ck")
    run(A.maker, ck, 2, check_rc=0)
    p = run("env", "-i", tool, "verify", ck, check_rc=0)
    # A moved prefix still works: the paths are relative to the binary.
    moved = os.path.join(tmp, "moved")
    shutil.move(prefix, moved)
    run("env", "-i", os.path.join(moved, "bin", "shardpoint"), "inspect", ck, "--limit", "1", check_rc=0)


def main():
    global A
    ap = argparse.ArgumentParser()
    ap.add_argument("--cli", required=True)
    ap.add_argument("--maker", required=True)
    ap.add_argument("--version", required=True)
    ap.add_argument("--build")
    ap.add_argument("--bin-dir")
    ap.add_argument("--source")
    ap.add_argument("case")
    A = ap.parse_args()
    cases = {"conventions": case_conventions, "sigpipe": case_sigpipe, "verify-corrupt": case_verify_corrupt,
             "debris": case_debris, "demo-cleanup": case_demo_cleanup, "install": case_install,
             "steps": case_steps, "diff": case_diff,
             "convert": case_convert}
    with tempfile.TemporaryDirectory(prefix="shardpoint-cli-") as tmp:
        cases[A.case](tmp)
    print(f"ok: {A.case}")


if __name__ == "__main__":
    main()
