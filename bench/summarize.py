#!/usr/bin/env python3
"""One table from the JSON files of shardpoint_bench, shardpoint_plan_bench and peers.py.

usage: summarize.py [--io io.json] [--plan plan.json] [--peers peers.json]
Missing files are skipped. Exits 0 whatever the verdicts: this is a report, not a test.
"""
import argparse
import json
import os
import sys


def load(path):
    if not path or not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--io")
    ap.add_argument("--plan")
    ap.add_argument("--peers")
    args = ap.parse_args()
    io, plan, peers = load(args.io), load(args.plan), load(args.peers)

    rows = []  # (what, value, target, verdict)
    if io:
        m = io["measurements"]
        gib = io["state_bytes"] / (1 << 30)
        print("shardpoint %s, state %.2f GiB, %d reps (medians), %s on %s, %d cores"
              % (io["version"], gib, io["reps"], io["dir"], io["fs"], io["cores"]))
        for key, v in m.items():
            rows.append((v["label"], "%.3f GB/s" % v["gbps"], "", ""))
        if "compression_ratio" in io.get("extra", {}):
            rows.append(("compression ratio (raw / stored)", "%.3f" % io["extra"]["compression_ratio"], "", ""))
        for t in io.get("targets", []):
            if t["name"].startswith("peak RSS"):
                rows.append((t["name"], "+%.1f MiB" % t["value"], "<= +64 MiB", "PASS" if t["pass"] else "FAIL"))
            else:
                rows.append((t["name"], "%.3f x" % t["value"], ">= %.2f x" % t["needed"], "PASS" if t["pass"] else "FAIL"))
    if plan:
        s = plan["seconds"]
        label = "%d ranks x %d tensors" % (plan["ranks"], plan["tensors"])
        rows.append(("save planning, " + label, "%.3f s" % s["save_planning"], "< 1 s",
                     "PASS" if s["save_planning"] < 1 else "FAIL"))
        one = s["index_build"] + s["load_plan_rank_max"]
        rows.append(("load planning, one rank (index build + plan)", "%.3f s" % one, "< 1 s", "PASS" if one < 1 else "FAIL"))
        rows.append(("load planning, all %d ranks one after another" % plan["load_ranks"], "%.3f s" % s["load_plan_all_ranks"], "", ""))
        rows.append(("metadata encode + decode (%.0f MiB, %d chunks)" % (plan["metadata_bytes"] / (1 << 20), plan["chunks"]),
                     "%.3f s" % (s["metadata_encode"] + s["metadata_decode"]), "", ""))
        rows.append(("open Reader on that metadata", "%.3f s" % s["reader_open"], "", ""))
    if peers:
        for r in peers.get("ratios", []):
            if r["ratio"] is not None:
                rows.append(("%s: shardpoint / %s" % (r["operation"], r["library"]), "%.2f x" % r["ratio"], "", ""))
        for lib, r in peers.get("rss", {}).items():
            rows.append(("peak RSS during save, %s" % lib, "+%.1f MiB" % (r["overhead"] / (1 << 20)), "", ""))
        if not peers.get("torch"):
            rows.append(("torch.distributed.checkpoint", "skipped", "", "not installed"))

    if not rows:
        print("summarize.py: no results found", file=sys.stderr)
        return 1
    w = max(len(r[0]) for r in rows)
    print("\n%-*s  %14s  %12s  %s" % (w, "SUMMARY", "value", "target", "result"))
    print("-" * (w + 40))
    for what, value, target, verdict in rows:
        print("%-*s  %14s  %12s  %s" % (w, what, value, target, verdict))
    return 0


if __name__ == "__main__":
    sys.exit(main())
