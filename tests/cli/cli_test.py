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
    expect(run(A.cli, "verify", ck, check_rc=0).stdout.rstrip().endswith("ok, every checksum matches"), "clean verify")
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
             "debris": case_debris, "demo-cleanup": case_demo_cleanup, "install": case_install}
    with tempfile.TemporaryDirectory(prefix="shardpoint-cli-") as tmp:
        cases[A.case](tmp)
    print(f"ok: {A.case}")


if __name__ == "__main__":
    main()
