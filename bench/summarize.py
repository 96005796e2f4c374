#!/usr/bin/env python3
"""One table of every ratio the benchmarks measure, against the targets of the performance issue,
from the JSON files of one bench/run.sh run; plus a PNG chart of throughput per path and system.

usage: summarize.py [--io io.json] [--plan plan.json] [--peers peers.json] [--dcp dcp.json]
                    [--compression compression.json] [--markdown summary.md] [--chart chart.png]

Missing files are skipped (their rows say "not measured"). Exits 0 whatever the verdicts: this is
a report, not a test. The chart needs matplotlib; without it the chart is skipped with a note.
"""
import argparse
import datetime
import json
import os
import platform
import sys


def load(path):
    if not path or not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def machine():
    """One line naming the machine: CPU model, cores, memory, kernel."""
    model = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = ""
    try:
        with open("/proc/meminfo") as f:
            kb = int(f.readline().split()[1])
        mem = ", %.0f GiB RAM" % (kb / (1 << 20))
    except (OSError, ValueError, IndexError):
        pass
    return "%s, %d cores%s, Linux %s" % (model, os.cpu_count() or 0, mem, platform.release())


class Table:
    def __init__(self):
        self.rows = []  # (target, what, value, needed, verdict)

    def add(self, target, what, value, needed="", verdict=""):
        self.rows.append((target, what, value, needed, verdict))

    def ratio(self, target, what, value, needed):
        """A ratio row: `value` above `needed` passes; None means not measured in this run."""
        if value is None:
            self.add(target, what, "not measured", ">= %.2fx" % needed if needed else "", "")
        elif needed is None:
            self.add(target, what, "%.2fx" % value)
        else:
            self.add(target, what, "%.2fx" % value, ">= %.2fx" % needed, "PASS" if value >= needed else "FAIL")

    def text(self):
        head = ("#", "measurement", "value", "target", "result")
        w = [max(len(str(r[i])) for r in self.rows + [head]) for i in range(5)]
        lines = ["%-*s  %-*s  %*s  %*s  %s" % (w[0], head[0], w[1], head[1], w[2], head[2], w[3], head[3], head[4]),
                 "-" * (sum(w) + 14)]
        for r in self.rows:
            lines.append("%-*s  %-*s  %*s  %*s  %s" % (w[0], r[0], w[1], r[1], w[2], r[2], w[3], r[3], r[4]))
        return "\n".join(lines)

    def markdown(self):
        lines = ["| # | measurement | value | target | result |", "|---|---|---|---|---|"]
        lines += ["| %s | %s | %s | %s | %s |" % r for r in self.rows]
        return "\n".join(lines)


def gbps(io, key):
    m = (io or {}).get("measurements", {}).get(key)
    return m["gbps"] if m else None


def io_ratio(io, num, den):
    a, b = gbps(io, num), gbps(io, den)
    return a / b if a and b else None


def peer_ratio(peers, operation, library):
    for r in (peers or {}).get("ratios", []):
        if r["operation"] == operation and r["library"] == library:
            return r["ratio"]
    return None


def dcp_ratio(dcp, key):
    r = (dcp or {}).get("results", {}).get(key)
    return r["ratio"] if r else None


def build_table(io, plan, peers, dcp, comp):
    t = Table()
    st, tdcp = "safetensors", "torch.distributed.checkpoint"
    t.ratio("1", "warm load, CRC on / CRC off", io_ratio(io, "load_warm", "load_noverify"), 0.95)
    t.ratio("1", "warm load into existing memory / safetensors safe_open", peer_ratio(peers, "warm load into existing memory", st), 1.1)
    t.ratio("1", "warm load / one plain read() of the same bytes", io_ratio(io, "load_warm", "read_warm"), 0.8)
    t.ratio("2", "save with fsync / dd conv=fsync", io_ratio(io, "save_fsync", "dd_fsync"), 0.95)
    t.ratio("2", "save with fsync / safetensors with fsync", peer_ratio(peers, "save (fsync)", st), 1.1)
    t.ratio("3", "resharded load (4 -> 3 ranks) / matched 3-rank load", io_ratio(io, "load_resharded", "load_matched"), 0.8)
    t.ratio("3", "resharded load rows -> columns vs DCP, warm", dcp_ratio(dcp, "reshard_load_warm"), 3.0)
    t.ratio("3", "resharded load rows -> columns vs DCP, cold", dcp_ratio(dcp, "reshard_load_cold"), 3.0)
    small = (peers or {}).get("small")
    if small:
        n = small["count"]
        size = small["file_bytes"]["shardpoint data files"] / small["data_bytes"]
        t.add("4", "%d x 256 B: data files / data" % n, "%.2fx" % size, "<= 1.10x", "PASS" if size <= 1.1 else "FAIL")
        t.add("4", "%d x 256 B: whole checkpoint / data (safetensors %.2fx)"
              % (n, small["file_bytes"]["safetensors"] / small["data_bytes"]),
              "%.2fx" % (small["file_bytes"]["shardpoint"] / small["data_bytes"]))
        t.ratio("4", "%d x 256 B: durable save vs safetensors with fsync" % n, small["ratios"]["save_fsync"], 1.5)
        t.ratio("4", "%d x 256 B: load vs safetensors load_file" % n, small["ratios"]["load_fresh"], 1.5)
    else:
        t.ratio("4", "20000 x 256 B: save and load vs safetensors", None, 1.5)
    t.ratio("5", "cold load / dd iflag=direct", io_ratio(io, "load_cold", "read_direct"), 0.9)
    if comp:
        best = {}
        for r in comp["results"]:
            for side in ("save", "load"):
                d = r[side + "_pays_below_bps"]
                k = (r["data"], side)
                if k not in best or d > best[k][0]:
                    best[k] = (d, r["codec"])
        for (data, side), (d, codec) in best.items():
            shown = "always" if d == float("inf") else "%.0f MB/s" % (d / 1e6)
            t.add("6", "%s: compressed %s faster below (%s)" % (data, side, codec), shown, ">= 300 MB/s",
                  "PASS" if d >= 300e6 else "FAIL")
    else:
        t.add("6", "compression pays off on a disk of <= 300 MB/s", "not measured", ">= 300 MB/s")
    # Issue 11: the caller of an asynchronous save is blocked for one copy of the state, and
    # the save commits about as fast as a synchronous one.
    t.ratio("11", "async save: synchronous save / time blocked", io_ratio(io, "async_blocked", "async_sync_ref"), 5.0)
    t.ratio("11", "async save: memcpy of the state / time blocked", io_ratio(io, "async_blocked", "memcpy_state"), 1.0)
    t.ratio("11", "async save: synchronous save / time to commit", io_ratio(io, "async_total", "async_sync_ref"), 0.91)
    if plan:
        s = plan["seconds"]
        scale = "%d ranks x %d tensors" % (plan["ranks"], plan["tensors"])
        at_target_scale = plan["ranks"] >= 8192 and plan["tensors"] >= 2000
        for what, secs in (("save planning", s["save_planning"]),
                           ("load planning, one rank (index build + plan)", s["index_build"] + s["load_plan_rank_max"])):
            verdict = ("PASS" if secs < 2 else "FAIL") if at_target_scale else ""
            t.add("7", "%s, %s" % (what, scale), "%.2f s" % secs, "< 2 s at 8192 x 2000", verdict)
        t.add("7", "metadata per chunk (%d chunks)" % plan["chunks"], "%.0f B" % (plan["metadata_bytes"] / max(1, plan["chunks"])))
    else:
        t.add("7", "planning 8192 ranks x 2000 tensors", "not measured", "< 2 s")
    # Context: the other peer ratios of the same run (shardpoint / peer; above 1 shardpoint is faster).
    for r in (peers or {}).get("ratios", []):
        if r["ratio"] is not None and not (r["library"] == st and r["operation"] in ("warm load into existing memory", "save (fsync)")):
            t.ratio("", "%s vs %s" % (r["operation"], "DCP" if r["library"] == tdcp else r["library"]), r["ratio"], None)
    for key, r in (dcp or {}).get("results", {}).items():
        if key not in ("reshard_load_warm", "reshard_load_cold"):
            t.ratio("", "DCP backend: %s vs DCP FileSystem" % r["label"], r["ratio"], None)
    for r in (io or {}).get("targets", []):
        if r["name"].startswith("peak RSS"):
            t.add("", r["name"] + ", over the state", "+%.1f MiB" % r["value"], "<= +64 MiB", "PASS" if r["pass"] else "FAIL")
    if peers is not None and not peers.get("torch"):
        t.add("", "torch.distributed.checkpoint", "skipped", "", "not installed")
    return t


def chart(path, io, peers, dcp):
    """Grouped bars: GB/s per path for shardpoint, safetensors, DCP and the machine's limit."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("chart skipped: matplotlib is not installed")
        return False
    libs = (peers or {}).get("libraries", {})

    def peer(lib, key):
        return libs.get(lib, {}).get(key, {}).get("gbps")

    def dcp_gbps(key, side):
        r = (dcp or {}).get("results", {}).get(key)
        return r["bytes"] / r[side]["median_s"] / 1e9 if r and r.get("bytes") else None

    def side_by_side(key):
        # shardpoint's own samples taken between the peers' reps when peers.py has them (the
        # ratios of the table come from those), else shardpoint_bench's.
        return peer("shardpoint", key) or gbps(io, key)

    paths = [  # (label, shardpoint, safetensors, DCP, machine limit)
        ("save,\nno fsync", side_by_side("save_nofsync"), peer("safetensors", "save_nofsync"),
         peer("torch.distributed.checkpoint", "save_nofsync"), gbps(io, "dd_nofsync")),
        ("save,\nfsync", side_by_side("save_fsync"), peer("safetensors", "save_fsync"),
         peer("torch.distributed.checkpoint", "save_fsync"), gbps(io, "dd_fsync")),
        ("warm load,\nexisting memory", side_by_side("load_warm"), peer("safetensors", "load_warm"),
         peer("torch.distributed.checkpoint", "load_warm"), gbps(io, "read_warm")),
        ("warm load,\nfresh memory", side_by_side("load_fresh"), peer("safetensors", "load_fresh"), None,
         gbps(io, "read_fresh")),
        ("cold load", side_by_side("load_cold"), peer("safetensors", "load_cold"),
         peer("torch.distributed.checkpoint", "load_cold"), gbps(io, "read_direct")),
        # The same dcp.load of DTensors, rows -> columns, through either storage layer.
        ("resharded load, warm\n(dcp.load, rows -> columns)", dcp_gbps("reshard_load_warm", "shardpoint"), None,
         dcp_gbps("reshard_load_warm", "dcp"), None),
    ]
    systems = [("shardpoint", "#1f77b4"), ("safetensors", "#ff7f0e"), ("torch DCP", "#2ca02c"),
               ("machine limit (dd / read())", "#7f7f7f")]
    fig, ax = plt.subplots(figsize=(10, 5.2), dpi=110)
    width = 0.2
    for s, (name, color) in enumerate(systems):
        xs = [i + (s - 1.5) * width for i in range(len(paths))]
        vals = [p[1 + s] or 0 for p in paths]
        bars = ax.bar(xs, vals, width, label=name, color=color)
        for b, v in zip(bars, vals):
            if v:
                ax.text(b.get_x() + b.get_width() / 2, v, "%.1f" % v, ha="center", va="bottom", fontsize=7)
    ax.set_xticks(range(len(paths)))
    ax.set_xticklabels([p[0] for p in paths], fontsize=8)
    ax.set_ylabel("GB/s (1e9 bytes/s), median")
    state = (io or {}).get("state_bytes", 0) / (1 << 30)
    ax.set_title("shardpoint vs peers, %.1f GiB state, %s" % (state, datetime.date.today().isoformat()), fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    fig.text(0.01, 0.01, machine(), fontsize=7, color="#555")
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    fig.savefig(path)
    print("chart written to %s" % path)
    return True


def main():
    ap = argparse.ArgumentParser()
    for name in ("io", "plan", "peers", "dcp", "compression", "markdown", "chart"):
        ap.add_argument("--" + name)
    args = ap.parse_args()
    io, plan, peers, dcp, comp = (load(p) for p in (args.io, args.plan, args.peers, args.dcp, args.compression))
    if not any((io, plan, peers, dcp, comp)):
        print("summarize.py: no results found", file=sys.stderr)
        return 1
    header = "%s; %s" % (datetime.date.today().isoformat(), machine())
    if io:
        header += "; shardpoint %s, state %.2f GiB in %d entries, %d reps (medians), %s on %s" % (
            io["version"], io["state_bytes"] / (1 << 30), io["entries"], io["reps"], io["dir"], io["fs"])
    table = build_table(io, plan, peers, dcp, comp)
    print("\nSUMMARY (%s)\nratios: above 1, shardpoint is faster; # = target of the performance issue\n" % header)
    print(table.text())
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write("Measured %s.\n\n%s\n" % (header, table.markdown()))
        print("markdown table written to %s" % args.markdown)
    if args.chart:
        chart(args.chart, io, peers, dcp)
    return 0


if __name__ == "__main__":
    sys.exit(main())
