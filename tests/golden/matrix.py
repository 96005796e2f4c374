#!/usr/bin/env python3
"""The cross-language matrix: every language's golden program saves the golden model, every
language's golden program reads every one of those checkpoints and every committed golden
checkpoint (tests/golden/v1-*, v2-*). Prints the matrix (writer x reader) and exits 1 on any miss.

    matrix.py --lang c=/path/golden_c --lang go="go run ./cmd/golden" ... [--world 3]

Each --lang value is a shell command prefix; the script appends `write DIR WORLD` or `read DIR`.
A command may start with `cd SOMEWHERE &&`.
"""
import argparse
import os
import pathlib
import shlex
import subprocess
import sys
import tempfile

HERE = pathlib.Path(__file__).resolve().parent


def run(command, args, timeout=300):
    full = f"{command} {' '.join(shlex.quote(a) for a in args)}"
    proc = subprocess.run(["bash", "-c", full], capture_output=True, text=True, timeout=timeout)
    return proc.returncode == 0, (proc.stdout + proc.stderr).strip()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lang", action="append", required=True, help="NAME=COMMAND")
    parser.add_argument("--world", type=int, default=3, help="ranks each writer uses")
    parser.add_argument("--report", help="also write the matrix to this file")
    opts = parser.parse_args()
    langs = []
    for spec in opts.lang:
        name, _, command = spec.partition("=")
        langs.append((name, command))
    os.environ.setdefault("SHARDPOINT_GOLDEN_MODEL", str(HERE / "model.txt"))

    failures = 0
    passed = 0
    with tempfile.TemporaryDirectory(prefix="shardpoint-matrix-") as tmp:
        sources = []  # (label, directory or None when the write failed)
        for name, command in langs:
            target = os.path.join(tmp, name)
            ok, out = run(command, ["write", target, str(opts.world)])
            if not ok:
                failures += 1
                print(f"WRITE FAILED  {name}: {out[-2000:]}")
            sources.append((f"{name} (w{opts.world})", target if ok else None))
        for committed in sorted(HERE.glob("v[0-9]-*")):
            if (committed / "shardpoint.meta").exists():
                sources.append((f"committed {committed.name}", str(committed)))

        width = max(len(label) for label, _ in sources) + 2
        header = "writer \\ reader".ljust(width) + "".join(name.ljust(8) for name, _ in langs)
        rows = []
        for label, directory in sources:
            cells = []
            for name, command in langs:
                if directory is None:
                    cells.append("-")
                    continue
                ok, out = run(command, ["read", directory])
                cells.append("pass" if ok else "FAIL")
                passed += ok
                if not ok:
                    failures += 1
                    print(f"READ FAILED   {name} reading {label}: {out[-2000:]}")
            rows.append(label.ljust(width) + "".join(c.ljust(8) for c in cells))

    table = "\n".join([header, *rows, "", f"matrix: {passed} passed, {failures} failed"])
    print()
    print(table)
    if opts.report:
        pathlib.Path(opts.report).write_text(table + "\n")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
