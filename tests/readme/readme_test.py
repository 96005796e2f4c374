#!/usr/bin/env python3
"""README.md's examples, used exactly as a reader would paste them, against an installed prefix.

    readme_test.py --readme README.md --prefix PREFIX --cli BIN CASE

CASE c:     every ```c block compiles with README's pkg-config command line and runs (exit 0) in
            an empty temporary directory with an empty environment.
CASE cmake: the ```cmake block builds the first ```c block with find_package(shardpoint).
CASE cli:   every command in the tool's ```sh block exists (`shardpoint X --help` exits 0).
"""
import argparse
import os
import re
import subprocess
import sys
import tempfile


def fail(msg):
    print("FAIL:", msg)
    sys.exit(1)


def blocks(text, lang):
    return re.findall(r"^```" + lang + r"\n(.*?)^```", text, re.S | re.M)


def sh(cmd, cwd, env):
    p = subprocess.run(["bash", "-c", cmd], cwd=cwd, env=env, capture_output=True, text=True)
    if p.returncode != 0:
        fail(f"`{cmd}` exited {p.returncode}\n{p.stdout}\n{p.stderr}")
    return p


def run_app(path, cwd):
    # An empty environment proves the install RPATH; only a sanitizer build's options pass.
    keep = [f"{k}={v}" for k, v in os.environ.items() if k in ("ASAN_OPTIONS", "UBSAN_OPTIONS", "LSAN_OPTIONS")]
    p = subprocess.run(["env", "-i", *keep, path], cwd=cwd, capture_output=True, text=True)
    if p.returncode != 0:
        fail(f"{path} exited {p.returncode}\n{p.stdout}\n{p.stderr}")
    return p


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--readme", required=True)
    ap.add_argument("--prefix", required=True)
    ap.add_argument("--cli", required=True)
    ap.add_argument("case")
    a = ap.parse_args()
    text = open(a.readme, encoding="utf-8").read()
    c_blocks = blocks(text, "c")
    if not c_blocks:
        fail("README.md has no ```c block")
    libdir = next(os.path.join(a.prefix, d) for d in ("lib", "lib64", "lib/x86_64-linux-gnu")
                  if os.path.exists(os.path.join(a.prefix, d, "pkgconfig", "shardpoint.pc")))
    env = dict(os.environ, PKG_CONFIG_PATH=os.path.join(libdir, "pkgconfig"))
    env.pop("LD_LIBRARY_PATH", None)  # the programs must find the library the way README says

    if a.case == "c":
        lines = [l.strip() for b in blocks(text, "sh") for l in b.splitlines() if l.strip().startswith("cc app.c")]
        if len(lines) != 1:
            fail(f"wanted one `cc app.c ...` command line in README's sh blocks, found {lines}")
        for i, code in enumerate(c_blocks):
            with tempfile.TemporaryDirectory(prefix="shardpoint-readme-") as tmp:
                with open(os.path.join(tmp, "app.c"), "w") as f:
                    f.write(code)
                sh(lines[0] + " -Wall -Werror", tmp, env)
                p = run_app("./app", tmp)
                print(f"c block {i + 1}: compiled and ran: {p.stdout.strip()}")
    elif a.case == "cmake":
        cm = blocks(text, "cmake")
        if len(cm) != 1:
            fail(f"wanted one ```cmake block, found {len(cm)}")
        with tempfile.TemporaryDirectory(prefix="shardpoint-readme-") as tmp:
            src, build = os.path.join(tmp, "src"), os.path.join(tmp, "build")
            os.mkdir(src)
            with open(os.path.join(src, "CMakeLists.txt"), "w") as f:
                f.write(cm[0])
            with open(os.path.join(src, "app.c"), "w") as f:
                f.write(c_blocks[0])
            sh(f"cmake -S '{src}' -B '{build}' -DCMAKE_PREFIX_PATH='{a.prefix}' >/dev/null && cmake --build '{build}'", tmp, env)
            p = run_app(os.path.join(build, "app"), tmp)
            print(f"cmake block: built and ran: {p.stdout.strip()}")
    elif a.case == "cli":
        cli_blocks = [b for b in blocks(text, "sh") if re.search(r"^shardpoint ", b, re.M)]
        cmds = sorted({m for b in cli_blocks for m in re.findall(r"^shardpoint ([a-z][a-z-]*)", b, re.M)})
        if not cmds:
            fail("README documents no `shardpoint COMMAND` lines")
        usage = subprocess.run([a.cli, "--help"], capture_output=True, text=True).stdout
        for c in cmds:
            p = subprocess.run([a.cli, c, "--help"], capture_output=True, text=True)
            if p.returncode != 0 or f"  {c} " not in usage:
                fail(f"README documents `shardpoint {c}`, which the tool does not have ({p.returncode}: {p.stderr.strip()})")
        print("README's commands exist:", ", ".join(cmds))
    else:
        fail(f"unknown case {a.case}")


if __name__ == "__main__":
    main()
