#!/usr/bin/env python3
"""Fault injection, kill -9 and power-loss tests of shardpoint's save commit protocol.

Every scenario starts from a clean, traced save (the LD_PRELOAD shim records each mutating
file-system call), then replays that save once per recorded step with a failure or a SIGKILL
injected exactly there, or rebuilds from the trace the file-system states a power cut could leave.
What is asserted, and what the power-loss model does and does not cover: README.md.
"""
import argparse
import fnmatch
import hashlib
import itertools
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import zlib

HEX32 = re.compile(r"[0-9a-f]{32}")
DELETING = re.compile(r"(\.deleting-[^/]*-)[0-9a-f]{16}")  # a deletion's hidden name (random per run)
OWN_NAME = re.compile(r"^(data-[0-9a-f]{32}-r[0-9]+\.bin|shardpoint\.meta\.tmp-[0-9a-f]{32})$")
META = "shardpoint.meta"
LOCK = "shardpoint.lock"  # a lock file, if the library uses one, is neither debris nor data
SEED_A, SEED_B, SEED_C = 101, 202, 303

# Calls whose failure the library may ignore (a writeback hint; closing a directory after its
# fsync or after the lock was used): either outcome is right, provided it is consistent (success
# with the new checkpoint, or failure with the old one).
def advisory(step):
    if step["op"] == "sync_file_range":
        return True
    return step["op"] == "close" and step["is_dir"]


class Failure(Exception):
    pass


VERBOSE = False


def log(text):
    if VERBOSE:
        print(text)


def expect(cond, what):
    if not cond:
        raise Failure(what)


# ---------------------------------------------------------------------------------------------
# Running the driver


class Harness:
    def __init__(self, driver, shim, work):
        self.driver, self.shim, self.work = driver, shim, work
        self.runs = 0
        self.save_opts = ["ranks=2"]  # added to every save: what the checkpoints look like

    def fresh_dir(self, name):
        path = os.path.join(self.work, name)
        if os.path.exists(path):
            shutil.rmtree(path)
        os.makedirs(path)
        return path

    def run(self, args, fault=None, trace=None, data=False):
        env = dict(os.environ)
        for k in ("SHARDPOINT_FAULT", "SHARDPOINT_TRACE", "SHARDPOINT_TRACE_DATA", "LD_PRELOAD"):
            env.pop(k, None)
        if fault is not None or trace is not None:
            env["LD_PRELOAD"] = self.shim
        if fault is not None:
            env["SHARDPOINT_FAULT"] = fault
        if trace is not None:
            if os.path.exists(trace):
                os.unlink(trace)
            env["SHARDPOINT_TRACE"] = trace
            env["SHARDPOINT_TRACE_DATA"] = "1" if data else "0"
        self.runs += 1
        return subprocess.run([self.driver] + [str(a) for a in args], env=env, capture_output=True, text=True,
                              timeout=60)

    def save(self, d, seed, *opts, fault=None, trace=None, data=False):
        """The save's outcome: 'KILLED', or one code name agreed by the ranks (see outcome())."""
        p = self.run(["save", d, seed] + self.save_opts + list(opts), fault=fault, trace=trace, data=data)
        if p.returncode == -9:
            return {"outcome": "KILLED", "names": [], "messages": []}
        expect(p.returncode in (0, 1), "save exited with %d: %s %s" % (p.returncode, p.stdout, p.stderr))
        r = json.loads(p.stdout)
        r["outcome"] = outcome(r["names"])
        return r

    def check(self, d, seed):
        return self.run(["check", d, seed]).returncode == 0

    def state(self, d):
        p = self.run(["state", d])
        expect(p.returncode == 0, "state failed: " + p.stderr)
        return json.loads(p.stdout)

    def gc(self, d, fault=None):
        p = self.run(["gc", d], fault=fault)
        return json.loads(p.stdout)


def outcome(names):
    """Every rank returns the same outcome; a rank that only saw another rank fail says ERANK.
    The outcome is the one code that is not ERANK (or OK)."""
    if all(n == "SHARDPOINT_OK" for n in names):
        return "SHARDPOINT_OK"
    expect(all(n != "SHARDPOINT_OK" for n in names), "ranks disagree on success: %s" % names)
    own = set(n for n in names if n != "SHARDPOINT_ERANK")
    expect(len(own) == 1, "ranks report different failures: %s" % names)
    return own.pop()


# ---------------------------------------------------------------------------------------------
# Traces


def parse_trace(path):
    steps = []
    with open(path) as f:
        for line in f:
            parts = line.rstrip("\n").split("\t")
            if parts[1] == "KILL":
                steps.append({"kind": "KILL", "op": parts[2], "path": parts[3], "path2": parts[4]})
                continue
            (seq, kind, op, p1, p2, fd, is_dir, off, length, ret, err, flags, data) = parts
            steps.append({
                "kind": kind, "op": op, "path": p1, "path2": None if p2 == "-" else p2, "fd": int(fd),
                "is_dir": is_dir == "1", "off": int(off), "len": int(length), "ret": int(ret),
                "err": None if err == "-" else err, "flags": set(flags.split(",")),
                "data": None if data == "-" else bytes.fromhex(data),
            })
    return steps


def glob_of(path):
    return DELETING.sub(r"\1*", HEX32.sub("*", path))


def fault_specs(trace):
    """For each step of a clean trace, the shim's "<op>:<glob>:<nth>" that picks exactly it: the
    glob is the step's path with save ids wildcarded (so it matches the same file in a replay with
    a new save id), nth counts the earlier steps of that op the glob matches."""
    specs = []
    for i, s in enumerate(trace):
        g = glob_of(s["path"])
        nth = 1 + sum(1 for t in trace[:i] if t["op"] == s["op"] and
                      (fnmatch.fnmatchcase(t["path"], g) or (t["path2"] and fnmatch.fnmatchcase(t["path2"], g))))
        specs.append("%s:%s:%d" % (s["op"], g, nth))
    return specs


def commit_points(trace, ckpt):
    """(index of the publish: the step that puts shardpoint.meta in place; index of the directory
    fsync that makes it durable)."""
    meta = os.path.join(ckpt, META)
    publish = None
    for i, s in enumerate(trace):
        if s["op"] in ("rename", "link") and s["path2"] == meta and s["ret"] == 0:
            publish = i
    expect(publish is not None, "the clean trace has no publish of %s" % meta)
    durable = None
    for i in range(publish + 1, len(trace)):
        s = trace[i]
        if s["op"] in ("fsync", "fdatasync") and s["is_dir"] and s["path"] == ckpt and s["ret"] == 0:
            durable = i
            break
    return publish, durable


def injected(trace_path):
    steps = parse_trace(trace_path)
    return [s for s in steps if s["kind"] == "KILL" or "injected" in s.get("flags", ())]


# ---------------------------------------------------------------------------------------------
# Checks on a checkpoint directory


def extras(st):
    """Files that are neither the metadata, the lock nor referenced data files."""
    return sorted(set(st["files"]) - set(st["referenced"]) - {META, LOCK})


def expect_exact(h, d, seed, what):
    st = h.state(d)
    expect(st["open"] == "SHARDPOINT_OK" and st["seed"] == seed and st["exact"],
           "%s: expected the exact checkpoint of seed %d, found %s" % (what, seed, json.dumps(st)))
    return st


def expect_clean(h, d, seed, what, keep=()):
    st = expect_exact(h, d, seed, what)
    expect(extras(st) == sorted(keep), "%s: unexpected files %s" % (what, extras(st)))
    return st


# ---------------------------------------------------------------------------------------------
# Scenarios


def prepare(h, name, fresh):
    """A new directory `base` and the checkpoint path in it: base/parent/ckpt (not yet created)
    when fresh, else base/ckpt holding checkpoint A. A is saved once per kind of save and copied
    after that (a copy is as good as a save here, and spares the disk hundreds of fsyncs)."""
    base = h.fresh_dir(name)
    ckpt = os.path.join(base, "parent", "ckpt") if fresh else os.path.join(base, "ckpt")
    if not fresh:
        template = os.path.join(h.work, "template-A-" + "-".join(h.save_opts), "ckpt")
        if not os.path.isdir(template):
            r = h.save(template, SEED_A)
            expect(r["outcome"] == "SHARDPOINT_OK", "saving A: %s" % r)
            expect_clean(h, template, SEED_A, "saving A")
        shutil.copytree(template, ckpt)
    return base, ckpt


def clean_trace(h, name, fresh, data=False, save_opts=()):
    """The trace of a clean save of B (overwriting A unless fresh), and the tree before it."""
    base, ckpt = prepare(h, name + "-trace", fresh)
    tpath = os.path.join(h.work, name + ".trace")
    before = snapshot_tree(base)
    opts = list(save_opts) + ([] if fresh else ["overwrite"])
    r = h.save(ckpt, SEED_B, *opts, trace=tpath, data=data)
    expect(r["outcome"] == "SHARDPOINT_OK", "clean save of B: %s" % r)
    expect_clean(h, ckpt, SEED_B, "clean save of B")
    trace = parse_trace(tpath)
    expect(trace and not injected(tpath), "clean trace is empty or has injections")
    return base, ckpt, trace, before


def worth_injecting(h, trace, i):
    """Steps outside the test's own directory (the mkdir of every ancestor, which exists) are
    all alike: only the first of them is injected."""
    s = trace[i]
    if s["path"].startswith(h.work + "/"):
        return True
    return not any(not t["path"].startswith(h.work + "/") and t["op"] == s["op"] for t in trace[:i])


def injections_for(step):
    """The errnos injected at a step: EIO everywhere; ENOSPC (and once EDQUOT) where space is
    allocated."""
    out = ["EIO"]
    if step["op"] in ("pwrite", "write", "ftruncate") or (step["op"] == "fsync" and not step["is_dir"]) or \
            (step["op"] in ("open", "mkdir") and "created" in step["flags"]):
        out.append("ENOSPC")
    if step["op"] == "pwrite" and "data-" in step["path"]:
        out.append("EDQUOT")
    return out


CODE_OF = {"EIO": "SHARDPOINT_EIO", "ENOSPC": "SHARDPOINT_ENOSPC", "EDQUOT": "SHARDPOINT_ENOSPC"}


def scenario_inject(h, fresh):
    name = ("inject-fresh" if fresh else "inject-overwrite") + ("-phases" if "phases" in h.save_opts else "")
    _, tckpt, trace, _ = clean_trace(h, name, fresh)
    publish, durable = commit_points(trace, tckpt)
    expect(durable is not None, "no directory fsync after the publish in a durable save")
    specs = fault_specs(trace)
    n = 0
    seen_codes = set()
    for i, (step, spec) in enumerate(zip(trace, specs)):
        if not worth_injecting(h, trace, i):
            continue
        for err in injections_for(step):
            n += 1
            base, ckpt = prepare(h, "%s-%d-%s" % (name, i, err), fresh)
            before = h.state(ckpt) if not fresh else None
            local = spec.replace(os.path.join(h.work, name + "-trace"), base)
            tpath = os.path.join(base, "run.trace")
            r = h.save(ckpt, SEED_B, *([] if fresh else ["overwrite"]), fault=local + ":" + err, trace=tpath)
            what = "step %d (%s) failing with %s" % (i, local, err)
            expect(len(injected(tpath)) == 1, what + ": the shim did not inject exactly once")
            got = r["outcome"]
            seen_codes.add(got)
            log("%-4d %-60s %-7s -> %s" % (i, local.replace(base, "DIR"), err, got))
            want_fail = CODE_OF[err]
            if i <= publish:
                allowed = {want_fail, "SHARDPOINT_OK"} if advisory(step) else {want_fail}
            elif i <= durable:
                allowed = {"SHARDPOINT_ENOTDURABLE", "SHARDPOINT_OK"} if advisory(step) else {"SHARDPOINT_ENOTDURABLE"}
            else:
                allowed = {"SHARDPOINT_OK"}
            expect(got in allowed, "%s: returned %s (%s), expected one of %s" % (what, got, r["messages"], sorted(allowed)))
            if got == "SHARDPOINT_ENOTDURABLE":
                # The checkpoint exists: a rank told only "another rank failed" would believe it does not.
                expect(all(x == "SHARDPOINT_ENOTDURABLE" for x in r["names"]),
                       what + ": not every rank learns that the save was committed: %s" % r["names"])
            if got in ("SHARDPOINT_OK", "SHARDPOINT_ENOTDURABLE"):
                st = expect_exact(h, ckpt, SEED_B, what)
                left = extras(st)
                if got == "SHARDPOINT_ENOTDURABLE":
                    allowed_left = set(before["referenced"]) if before else set()
                elif step["op"] == "unlink":
                    allowed_left = {os.path.basename(step["path"])}
                else:
                    allowed_left = set()
                expect(set(left) <= allowed_left, "%s: leaves %s" % (what, left))
                if left and got == "SHARDPOINT_ENOTDURABLE":
                    # The kept files of the replaced checkpoint are what gc removes.
                    g = h.gc(ckpt)
                    expect(g["code"] == "SHARDPOINT_OK" and sorted(g["removed"]) == left,
                           "%s: gc after ENOTDURABLE removed %s, expected %s" % (what, g, left))
                    expect_clean(h, ckpt, SEED_B, what + ", then gc")
                elif left:
                    # What a failed cleanup leaves, the next save removes.
                    r2 = h.save(ckpt, SEED_C, "overwrite")
                    expect(r2["outcome"] == "SHARDPOINT_OK", what + ": next save: %s" % r2)
                    expect_clean(h, ckpt, SEED_C, what + ", then a new save")
            else:
                st = h.state(ckpt)
                if fresh:
                    expect(st["open"] == "SHARDPOINT_ENOTFOUND" and not extras(st),
                           "%s: a failed save into a new directory leaves %s" % (what, json.dumps(st)))
                    # Nothing of the failed save may block a retry without overwrite.
                    r2 = h.save(ckpt, SEED_C)
                    expect(r2["outcome"] == "SHARDPOINT_OK", what + ": retry without overwrite: %s" % r2)
                    expect_clean(h, ckpt, SEED_C, what + ", then a retry")
                else:
                    expect(st["open"] == "SHARDPOINT_OK" and st["seed"] == SEED_A and st["exact"],
                           "%s: the previous checkpoint is damaged: %s" % (what, json.dumps(st)))
                    expect(st["files"] == before["files"], "%s: files changed from %s to %s" %
                           (what, before["files"], st["files"]))
            shutil.rmtree(base)
    print("%s: %d injections at %d steps (publish at step %d, durable at step %d); outcomes %s" %
          (name, n, len(trace), publish, durable, sorted(seen_codes)))


def scenario_publish(h):
    """The publish without overwrite never replaces a concurrent winner: renameat2 with
    RENAME_NOREPLACE, link + unlink where the filesystem lacks it (EINVAL, ENOSYS), a plain rename
    under the lock where it lacks both (link: EPERM). A winner found at the publish (EEXIST) makes
    the save fail with SHARDPOINT_EEXISTS, leaving nothing of it behind. Without flock (ENOLCK) the
    save works but deletes no debris."""
    meta_glob = "*/" + META + "*"
    cases = [
        ("renameat2-EINVAL", "rename:%s:1:EINVAL" % meta_glob, "SHARDPOINT_OK", "link"),
        ("renameat2-ENOSYS", "rename:%s:1:ENOSYS" % meta_glob, "SHARDPOINT_OK", "link"),
        ("no-rename2-no-link", "rename:%s:1:EINVAL,link:%s:1:EPERM" % (meta_glob, meta_glob), "SHARDPOINT_OK", "rename"),
        ("winner-at-rename", "rename:%s:1:EEXIST" % meta_glob, "SHARDPOINT_EEXISTS", None),
        ("winner-at-link", "rename:%s:1:EINVAL,link:%s:1:EEXIST" % (meta_glob, meta_glob), "SHARDPOINT_EEXISTS", None),
    ]
    for label, fault, want, publish_op in cases:
        base, ckpt = prepare(h, "publish-" + label, True)
        tpath = os.path.join(base, "run.trace")
        r = h.save(ckpt, SEED_B, fault=fault, trace=tpath)
        what = "publish (%s)" % label
        log("%-20s %-70s -> %s" % (label, fault, r["outcome"]))
        t = parse_trace(tpath)
        expect(len(injected(tpath)) == fault.count(",") + 1, what + ": not every fault was injected")
        expect(r["outcome"] == want, "%s: %s, expected %s" % (what, r, want))
        if want == "SHARDPOINT_OK":
            expect_clean(h, ckpt, SEED_B, what)
            final = [s for s in t if s["op"] == publish_op and s["path2"] == os.path.join(ckpt, META) and s["ret"] == 0]
            expect(final, what + ": not published by %s" % publish_op)
        else:
            st = h.state(ckpt)
            expect(st["open"] == "SHARDPOINT_ENOTFOUND" and not extras(st),
                   "%s: a save that lost the publish leaves %s" % (what, json.dumps(st)))
        shutil.rmtree(base)
    # No flock on this filesystem: the save works but must not delete debris (it cannot know that
    # no other save is in progress); the next save with a lock removes it.
    base, ckpt = prepare(h, "publish-no-flock", False)
    planted = "data-%s-r00000.bin" % ("ab" * 16)
    with open(os.path.join(ckpt, planted), "w") as f:
        f.write("a concurrent save's data file, or debris\n")
    r = h.save(ckpt, SEED_B, "overwrite", fault="flock:*:1:ENOLCK")
    expect(r["outcome"] == "SHARDPOINT_OK", "save without flock: %s" % r)
    st = expect_exact(h, ckpt, SEED_B, "save without flock")
    expect(planted in st["files"], "a save without the lock deleted a file that may belong to another save")
    expect(all(OWN_NAME.match(x) for x in extras(st)), "save without flock leaves %s" % extras(st))
    r = h.save(ckpt, SEED_C, "overwrite")
    expect(r["outcome"] == "SHARDPOINT_OK", "save after one without flock: %s" % r)
    expect_clean(h, ckpt, SEED_C, "save after one without flock")
    shutil.rmtree(base)
    print("publish: %d fallback and winner cases, and a filesystem without flock" % len(cases))


def scenario_read_faults(h):
    """A metadata file that cannot be read (EIO from open or pread) is not one that is absent or
    not a checkpoint: a save without overwrite must not replace it, and gc must not take the
    checkpoint's data files for debris."""
    meta_glob = "*/" + META
    bad = []
    for fault in ("pread:%s:1:EIO" % meta_glob, "open_read:%s:1:EIO" % meta_glob):
        base, ckpt = prepare(h, "read-" + fault.split(":")[0], False)
        before = h.state(ckpt)
        r = h.save(ckpt, SEED_B, fault=fault)
        st = h.state(ckpt)
        log("save without overwrite, %s -> %s, then seed %s" % (fault, r["outcome"], st["seed"]))
        if not (r["outcome"] in ("SHARDPOINT_EEXISTS", "SHARDPOINT_EIO") and st["seed"] == SEED_A and st["exact"]
                and st["files"] == before["files"]):
            bad.append("save without overwrite while reading %s fails (%s): returned %s, the directory now holds seed %s"
                       % (META, fault, r["outcome"], st["seed"]))
        shutil.rmtree(base)
        base, ckpt = prepare(h, "read-gc-" + fault.split(":")[0], False)
        g = h.gc(ckpt, fault=fault)
        st = h.state(ckpt)
        log("gc, %s -> %s removed %s, then %s" % (fault, g["code"], g["removed"], st["open"]))
        if not (st["open"] == "SHARDPOINT_OK" and st["seed"] == SEED_A and st["exact"] and not g["removed"]):
            bad.append("gc while reading %s fails (%s): returned %s, removed %s; the checkpoint then %s" %
                       (META, fault, g["code"], g["removed"], "loads exactly" if st["exact"] else "no longer loads"))
        shutil.rmtree(base)
    expect(not bad, "; ".join(bad))
    print("read faults: a metadata file that cannot be read is never replaced or ignored")


def every(op_target, n):
    """Fault specs failing the first n matching calls (the library may retry a cleanup)."""
    return ",".join("%s:%d:EIO" % (op_target, k) for k in range(1, n + 1))


def scenario_double_faults(h):
    """A failure, then a failure of the cleanup it triggers: the save still reports the first
    error, the previous checkpoint is intact, and what the cleanup could not remove is debris that
    gc (exactly) and the next save remove."""
    cases = [
        ("data write, then its unlink", "pwrite:*data-*-r00001.bin:1:EIO,unlink:*data-*-r00001.bin:1:EIO", "SHARDPOINT_EIO"),
        ("data fsync, then both unlinks", "fsync:*data-*-r00000.bin:1:ENOSPC,unlink:*data-*:1:EIO,unlink:*data-*:2:EIO",
         "SHARDPOINT_ENOSPC"),
        ("metadata fsync, then its unlinks", "fsync:*.tmp-*:1:EIO," + every("unlink:*.tmp-*", 4), "SHARDPOINT_EIO"),
        ("publish, then every unlink", "rename:*.tmp-*:1:EIO," + every("unlink:*", 6), "SHARDPOINT_EIO"),
    ]
    for label, fault, want in cases:
        base, ckpt = prepare(h, "double-" + label.replace(" ", "-").replace(",", ""), False)
        before = h.state(ckpt)
        tpath = os.path.join(base, "run.trace")
        r = h.save(ckpt, SEED_B, "overwrite", fault=fault, trace=tpath)
        what = "double fault (%s)" % label
        log("%-36s %-80s -> %s" % (label, fault, r["outcome"]))
        expect(len(injected(tpath)) >= 2, what + ": the cleanup's failure was not injected")
        expect(r["outcome"] == want, "%s: %s, expected %s" % (what, r, want))
        st = h.state(ckpt)
        expect(st["open"] == "SHARDPOINT_OK" and st["seed"] == SEED_A and st["exact"] and
               st["referenced"] == before["referenced"], "%s: A is damaged: %s" % (what, json.dumps(st)))
        left = extras(st)
        expect(left and all(OWN_NAME.match(x) for x in left), "%s: leaves %s" % (what, left))
        keep = plant(ckpt)
        g = h.gc(ckpt)
        expect(g["code"] == "SHARDPOINT_OK" and sorted(g["removed"]) == left, "%s: gc removed %s, debris %s" % (what, g, left))
        expect_clean(h, ckpt, SEED_A, what + ", then gc", keep)
        shutil.rmtree(base)
    print("double faults: %d cases" % len(cases))


def scenario_kill_nofsync(h):
    """SHARDPOINT_SAVE_NO_FSYNC is documented as safe against a crash of the process: the kill
    scenario, with every save (A's, B's, C's) made without fsync."""
    h.save_opts = ["ranks=2", "nofsync"]
    scenario_kill(h, False)


def scenario_inject_deflate(h):
    """The same per-step injection for a one-rank save with deflate (the compressed writer)."""
    h.save_opts = ["ranks=1", "deflate"]
    scenario_inject(h, False)


def scenario_inject_zstd(h):
    """The same per-step injection for a 2-rank save with zstd block compression, shuffled (the
    block-compressed writer, format 2)."""
    h.save_opts = ["ranks=2", "zstd"]
    scenario_inject(h, False)


def scenario_kill_zstd(h):
    """kill -9 at every step of 2-rank saves with zstd block compression (format 2)."""
    h.save_opts = ["ranks=2", "zstd"]
    scenario_kill(h, False)


def scenario_inject_phases(h):
    """The per-step injection for a 2-rank overwrite saved through the storage-layer phases by a
    host with its own collectives, every item written in its own write_bound batch."""
    h.save_opts = ["ranks=2", "phases"]
    scenario_inject(h, False)


def scenario_kill_phases(h):
    """kill -9 at every step of the same phased, batched save: A or B whole, never a mix."""
    h.save_opts = ["ranks=2", "phases"]
    scenario_kill(h, False)


def plant(ckpt):
    """Files that look like shardpoint's own but are not its patterns, and a user's file."""
    with open(os.path.join(ckpt, "notes.txt"), "w") as f:
        f.write("the user's own file\n")
    with open(os.path.join(ckpt, "data-foo.bin"), "w") as f:
        f.write("not debris: not a save id\n")
    return ["data-foo.bin", "notes.txt"]


def scenario_kill(h, fresh):
    name = ("kill-fresh" if fresh else "kill-overwrite") + ("-phases" if "phases" in h.save_opts else "")
    _, tckpt, trace, _ = clean_trace(h, name, fresh)
    publish, durable = commit_points(trace, tckpt)
    specs = fault_specs(trace)
    debris_seen = 0
    for i, (step, spec) in enumerate(zip(trace, specs)):
        if not worth_injecting(h, trace, i):
            continue
        base, ckpt = prepare(h, "%s-%d" % (name, i), fresh)
        local = spec.replace(os.path.dirname(os.path.dirname(tckpt)) if fresh else os.path.dirname(tckpt), base)
        tpath = os.path.join(base, "run.trace")
        r = h.save(ckpt, SEED_B, *([] if fresh else ["overwrite"]), fault=local + ":KILL", trace=tpath)
        what = "kill before step %d (%s)" % (i, local)
        log("%-4d %-60s KILL" % (i, local.replace(base, "DIR")))
        expect(r["outcome"] == "KILLED" and len(injected(tpath)) == 1, what + ": the process was not killed there: %s" % r)
        st = h.state(ckpt)
        if i <= publish:  # killed before the publish happened
            if fresh:
                expect(st["open"] == "SHARDPOINT_ENOTFOUND", "%s: expected no checkpoint, found %s" % (what, json.dumps(st)))
            else:
                expect(st["open"] == "SHARDPOINT_OK" and st["seed"] == SEED_A and st["exact"],
                       "%s: expected A, found %s" % (what, json.dumps(st)))
        else:
            expect(st["open"] == "SHARDPOINT_OK" and st["seed"] == SEED_B and st["exact"],
                   "%s: expected B, found %s" % (what, json.dumps(st)))
        expect(all(OWN_NAME.match(x) for x in extras(st)), "%s: leaves files that are not debris: %s" % (what, extras(st)))
        expect(sorted(st["debris"]) == extras(st), "%s: state's debris %s vs %s" % (what, st["debris"], extras(st)))
        debris_seen += bool(st["debris"])
        if os.path.isdir(ckpt):
            keep = plant(ckpt)
            if st["open"] == "SHARDPOINT_OK":
                # gc removes exactly the debris, nothing else.
                g = h.gc(ckpt)
                expect(g["code"] == "SHARDPOINT_OK", "%s: gc: %s" % (what, g))
                expect(sorted(g["removed"]) == sorted(st["debris"]), "%s: gc removed %s, debris was %s" %
                       (what, g["removed"], st["debris"]))
                st2 = h.state(ckpt)
                expect(st2["exact"] and st2["seed"] == st["seed"] and extras(st2) == keep,
                       "%s: after gc: %s" % (what, json.dumps(st2)))
            else:
                # Without metadata gc must not take anything for debris... of a checkpoint that
                # does not exist; whatever it does, it must leave foreign files alone.
                h.gc(ckpt)
                left = set(os.listdir(ckpt))
                expect(set(keep) <= left, "%s: gc without metadata removed foreign files" % what)
        else:
            keep = []
        # The next save succeeds and leaves nothing behind but the user's files.
        if fresh and st["open"] == "SHARDPOINT_OK":
            r2 = h.save(ckpt, SEED_C)
            expect(r2["outcome"] == "SHARDPOINT_EEXISTS", "%s: save without overwrite over B: %s" % (what, r2))
            expect_exact(h, ckpt, SEED_B, what + ", after the refused save")
        r2 = h.save(ckpt, SEED_C, *([] if fresh and st["open"] != "SHARDPOINT_OK" else ["overwrite"]))
        expect(r2["outcome"] == "SHARDPOINT_OK", "%s: next save: %s" % (what, r2))
        expect_clean(h, ckpt, SEED_C, what + ", then a new save", keep)
        shutil.rmtree(base)
    print("%s: killed at each of %d steps (publish at step %d); %d left debris, all removed" %
          (name, len(trace), publish, debris_seen))


def scenario_kill_retention(h):
    """kill -9 at every step of a retention that deletes two of three steps (keep_last 1), and of
    an explicit deletion: every step listed afterwards is committed and exactly what was saved,
    none is ever listed half deleted (partial or damaged), and the next retention removes what the
    killed one left."""
    template = os.path.join(h.work, "template-root")
    seeds = {1: SEED_A, 2: SEED_B, 3: SEED_C}
    for step, seed in seeds.items():
        r = h.save(os.path.join(template, "step-%d" % step), seed)
        expect(r["outcome"] == "SHARDPOINT_OK", "saving step %d: %s" % (step, r))

    def steps(root):
        p = h.run(["steps", root])
        expect(p.returncode == 0, "steps failed: " + p.stderr)
        return json.loads(p.stdout)

    def expect_whole(root, what):
        st = steps(root)
        for s in st["steps"]:
            expect(s["state"] == "committed", "%s: step %d is listed %s" % (what, s["step"], s["state"]))
            expect(h.check(s["path"], seeds[s["step"]]), "%s: step %d is not exactly what was saved" % (what, s["step"]))
        expect(st["latest"] == 3, "%s: latest step %s, wanted 3" % (what, st["latest"]))
        return st

    for command, arg, survivors in (("retention", 1, [3]), ("delete", 2, [1, 3])):
        base = h.fresh_dir(command + "-trace")
        root = os.path.join(base, "root")
        shutil.copytree(template, root)
        tpath = os.path.join(h.work, command + ".trace")
        p = h.run([command, root, arg], trace=tpath)
        expect(p.returncode == 0, "clean %s: %s %s" % (command, p.stdout, p.stderr))
        expect([s["step"] for s in steps(root)["steps"]] == survivors, "clean %s left %s" % (command, steps(root)))
        trace = parse_trace(tpath)
        expect(trace and not injected(tpath), "clean trace is empty or has injections")
        leftovers = 0
        for i, spec in enumerate(fault_specs(trace)):
            if not worth_injecting(h, trace, i):
                continue
            b = h.fresh_dir("%s-%d" % (command, i))
            r = os.path.join(b, "root")
            shutil.copytree(template, r)
            local = spec.replace(base, b)
            run_trace = os.path.join(b, "run.trace")
            p = h.run([command, r, arg], fault=local + ":KILL", trace=run_trace)
            what = "%s killed before step %d (%s)" % (command, i, local.replace(b, "DIR"))
            log("%-4d %-70s KILL" % (i, local.replace(b, "DIR")))
            expect(p.returncode == -9 and len(injected(run_trace)) == 1, what + ": not killed there: %s" % p.stdout)
            st = expect_whole(r, what)
            leftovers += st["leftovers"] > 0
            # The next retention (or the deletion again) finishes the job and leaves no garbage.
            p = h.run(["retention", r, 1] if command == "retention" else ["delete", r, arg])
            if command == "delete" and 2 not in [s["step"] for s in st["steps"]]:
                expect(p.returncode == 1 and "SHARDPOINT_ENOTFOUND" in p.stdout, what + ": delete again: " + p.stdout)
                p = h.run(["retention", r, 0])  # no rule: only removes the leftover
            expect(p.returncode == 0, what + ": after the kill: " + p.stdout)
            st = expect_whole(r, what + ", then again")
            expect([s["step"] for s in st["steps"]] == survivors and st["leftovers"] == 0,
                   "%s, then again: %s" % (what, st))
            expect(sorted(os.listdir(r)) == ["step-%d" % s for s in survivors], "%s: left %s" % (what, os.listdir(r)))
            shutil.rmtree(b)
        expect(leftovers > 0, command + ": no kill landed inside a deletion")
        print("kill-retention: %s killed at each of %d steps, %d left a hidden leftover, every listing whole" %
              (command, len(trace), leftovers))


def scenario_torn_meta(h):
    """A shardpoint.meta that is not a checkpoint (empty, shorter than the header, bad magic, bad
    header CRC: debris of a power cut) must not block a save without overwrite; one with a valid
    header is a checkpoint, even when its body is torn."""
    base = h.fresh_dir("torn-meta-source")
    src = os.path.join(base, "ckpt")
    expect(h.save(src, SEED_A)["outcome"] == "SHARDPOINT_OK", "saving A")
    good = open(os.path.join(src, META), "rb").read()
    expect(len(good) > 64 and good[:8] == b"SHRDPNT\n", "A's metadata does not start with the magic")
    bad_crc = bytearray(good[:32])
    bad_crc[28] ^= 0xFF
    header_only = good[:32]
    expect(struct.unpack("<I", good[28:32])[0] == zlib.crc32(good[:28]), "header CRC is not the documented one")
    cases = [("empty", b"", True), ("short", good[:20], True), ("bad-magic", b"X" + good[1:], True),
             ("bad-header-crc", bytes(bad_crc) + good[32:], True), ("zeros", bytes(len(good)), True),
             ("torn-body", good[:len(good) // 2], False), ("header-only", header_only, False)]
    for label, content, retry_ok in cases:
        d = os.path.join(base, label)
        os.makedirs(d)
        with open(os.path.join(d, META), "wb") as f:
            f.write(content)
        r = h.save(d, SEED_B)
        if retry_ok:
            expect(r["outcome"] == "SHARDPOINT_OK", "metadata %s blocks a save without overwrite: %s" % (label, r))
            expect_clean(h, d, SEED_B, "save over a %s metadata file" % label)
        else:
            expect(r["outcome"] == "SHARDPOINT_EEXISTS", "metadata %s (a valid header) is not taken for a checkpoint: %s" %
                   (label, r))
            expect(open(os.path.join(d, META), "rb").read() == content, "a refused save changed the metadata")
            r = h.save(d, SEED_B, "overwrite")
            expect(r["outcome"] == "SHARDPOINT_OK", "overwrite of a %s metadata: %s" % (label, r))
            expect_clean(h, d, SEED_B, "overwrite of a %s metadata" % label)
    shutil.rmtree(base)
    print("torn metadata: %d cases" % len(cases))


# ---------------------------------------------------------------------------------------------
# The power-loss model


def snapshot_tree(root):
    """{relative path: None for a directory, bytes for a file} of everything under root."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        rel = os.path.relpath(dirpath, root)
        if rel != ".":
            out[rel] = None
        for f in filenames:
            with open(os.path.join(dirpath, f), "rb") as fh:
                out[os.path.normpath(os.path.join(rel, f))] = fh.read()
    return out


class Model:
    """What a pessimistic disk has made durable. Directories: the entries as of their last fsync
    plus the namespace operations since, in order (a power cut keeps some prefix of them). Files:
    the bytes as of their last fsync, and the bytes now (a power cut keeps either)."""

    def __init__(self, root, tree):
        self.root = root
        self.dirs = {root: {"durable": {}, "current": {}, "pending": []}}
        self.files = {}  # inode -> {"durable": bytes, "current": bytearray}
        self.fds = {}    # fd -> ("dir", path) or ("file", inode)
        self.next_ino = 0
        for rel in sorted(tree):
            path = os.path.join(root, rel)
            parent, name = os.path.split(path)
            if tree[rel] is None:
                self.dirs[path] = {"durable": {}, "current": {}, "pending": []}
                entry = ("dir", path)
            else:
                ino = self.new_file(tree[rel], durable=True)
                entry = ("file", ino)
            self.dirs[parent]["durable"][name] = entry
            self.dirs[parent]["current"][name] = entry

    def new_file(self, content=b"", durable=False):
        self.next_ino += 1
        self.files[self.next_ino] = {"durable": bytes(content) if durable else b"", "current": bytearray(content)}
        return self.next_ino

    def inside(self, path):
        return path == self.root or path.startswith(self.root + "/")

    def namespace(self, parent, op):
        d = self.dirs[parent]
        apply_op(d["current"], op)
        d["pending"].append(op)

    def lookup(self, path):
        parent, name = os.path.split(path)
        return self.dirs[parent]["current"].get(name) if parent in self.dirs else None

    def apply(self, s):
        if s["kind"] != "op" or s["ret"] < 0 or not self.inside(s["path"]):
            return
        op, path = s["op"], s["path"]
        parent, name = os.path.split(path)
        if op == "open":
            if "created" in s["flags"]:
                entry = ("file", self.new_file())
                self.namespace(parent, ("add", name, entry))
            else:
                entry = self.lookup(path) if path != self.root else ("dir", path)
                expect(entry is not None, "model: open of unknown %s" % path)
                if "trunc" in s["flags"] and entry[0] == "file":
                    self.files[entry[1]]["current"] = bytearray()
            self.fds[s["ret"]] = entry
        elif op in ("pwrite", "write"):
            entry = self.fds[s["fd"]]
            expect(s["data"] is not None or s["ret"] == 0, "model: the trace has no data for a write")
            buf = self.files[entry[1]]["current"]
            end = s["off"] + s["ret"]
            if len(buf) < end:
                buf.extend(bytes(end - len(buf)))
            buf[s["off"]:end] = s["data"] or b""
        elif op == "ftruncate":
            buf = self.files[self.fds[s["fd"]][1]]["current"]
            if len(buf) > s["len"]:
                del buf[s["len"]:]
            else:
                buf.extend(bytes(s["len"] - len(buf)))
        elif op in ("fsync", "fdatasync"):
            entry = self.fds[s["fd"]]
            if entry[0] == "dir":
                d = self.dirs[entry[1]]
                d["durable"] = dict(d["current"])
                d["pending"] = []
            else:
                f = self.files[entry[1]]
                f["durable"] = bytes(f["current"])
        elif op == "sync":
            for d in self.dirs.values():
                d["durable"], d["pending"] = dict(d["current"]), []
            for f in self.files.values():
                f["durable"] = bytes(f["current"])
        elif op == "close":
            self.fds.pop(s["fd"], None)
        elif op == "rename":
            p2, n2 = os.path.split(s["path2"])
            entry = self.lookup(path)
            if p2 == parent:
                self.namespace(parent, ("rename", name, n2))
            else:
                self.namespace(parent, ("remove", name))
                self.namespace(p2, ("add", n2, entry))
        elif op == "link":
            p2, n2 = os.path.split(s["path2"])
            self.namespace(p2, ("add", n2, self.lookup(path)))
        elif op in ("unlink", "rmdir"):
            self.namespace(parent, ("remove", name))
        elif op == "mkdir" and "created" in s["flags"]:
            self.dirs[path] = {"durable": {}, "current": {}, "pending": []}
            self.namespace(parent, ("add", name, ("dir", path)))
        # flock, sync_file_range: nothing becomes durable or visible.

    def crash_states(self):
        """Every state a power cut now may leave: {relative path: None (dir) or bytes}."""
        dirs = sorted(self.dirs)
        choices = [range(len(self.dirs[p]["pending"]) + 1) for p in dirs]
        for prefix in itertools.product(*choices):
            entries = {}
            for p, k in zip(dirs, prefix):
                e = dict(self.dirs[p]["durable"])
                for op in self.dirs[p]["pending"][:k]:
                    apply_op(e, op)
                entries[p] = e
            files = []
            tree = {}

            def walk(path, rel):
                for name, entry in sorted(entries.get(path, {}).items()):
                    r = os.path.join(rel, name) if rel else name
                    if entry[0] == "dir":
                        tree[r] = None
                        walk(entry[1], r)
                    else:
                        files.append((r, entry[1]))

            walk(self.root, "")
            options = []
            for r, ino in files:
                f = self.files[ino]
                options.append(sorted({f["durable"], bytes(f["current"])}))
            for contents in itertools.product(*options):
                t = dict(tree)
                for (r, _), c in zip(files, contents):
                    t[r] = c
                yield t


def apply_op(entries, op):
    if op[0] == "add":
        entries[op[1]] = op[2]
    elif op[0] == "remove":
        entries.pop(op[1], None)
    elif op[0] == "rename" and op[1] in entries:
        entries[op[2]] = entries.pop(op[1])


def state_key(tree):
    return tuple(sorted((k, None if v is None else hashlib.sha1(v).hexdigest()) for k, v in tree.items()))


def materialize(tree, root):
    os.makedirs(root)
    for rel in sorted(tree):
        path = os.path.join(root, rel)
        if tree[rel] is None:
            os.makedirs(path, exist_ok=True)
        else:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "wb") as f:
                f.write(tree[rel])


def is_checkpoint_header(content):
    """The library's rule: at least 32 bytes, the magic, and a matching header CRC."""
    return content is not None and len(content) >= 32 and content[:8] == b"SHRDPNT\n" and \
        struct.unpack("<I", content[28:32])[0] == zlib.crc32(content[:28])


def crash_states(base, before, trace):
    """{state key: (tree, [crash points])}: every state a power cut may leave after the first p
    steps of the trace, for every p."""
    model = Model(base, before)
    states = {}
    for p in range(len(trace) + 1):
        if p > 0:
            model.apply(trace[p - 1])
        for t in model.crash_states():
            states.setdefault(state_key(t), (t, []))[1].append(p)
    return model, states


class Verdicts:
    """What the driver finds in a materialized crash state, cached by state."""

    def __init__(self, h, name, rel_ckpt):
        self.h, self.name, self.rel_ckpt = h, name, rel_ckpt
        self.cache = {}

    def materialize(self, key, tree):
        root = os.path.join(self.h.work, "%s-state-%d" % (self.name, len(self.cache)))
        if os.path.exists(root):
            shutil.rmtree(root)
        materialize(tree, root)
        return root, os.path.join(root, self.rel_ckpt)

    def of(self, key, tree, keep=False):
        if key not in self.cache or keep:
            root, d = self.materialize(key, tree)
            st = self.h.state(d)
            self.cache[key] = {
                "st": st,
                "A": st["open"] == "SHARDPOINT_OK" and st["seed"] == SEED_A and st["exact"],
                "B": st["open"] == "SHARDPOINT_OK" and st["seed"] == SEED_B and st["exact"],
                "none": st["open"] == "SHARDPOINT_ENOTFOUND",
            }
            if keep:
                return self.cache[key], root, d
            shutil.rmtree(root)
        return self.cache[key], None, None


def judge(v, p, publish, durable, fresh):
    """Whether verdict v is allowed for a power cut after p steps: before the publish the old
    state (A, or no checkpoint in a new directory), until the durable point the old or B, after it B."""
    old = "none" if fresh else "A"
    if p <= publish:
        return v[old], old
    if p <= durable:
        return v[old] or v["B"], old + " or B"
    return v["B"], "B"


def scenario_powerloss(h, durable_mode):
    opts = [] if durable_mode else ["nofsync"]
    label = "durable" if durable_mode else "nofsync"
    totals = {}
    for fresh in (False, True):
        name = "powerloss-%s-%s" % (label, "fresh" if fresh else "overwrite")
        base, ckpt, trace, before = clean_trace(h, name, fresh, data=True, save_opts=opts)
        publish, durable = commit_points(trace, ckpt)
        if durable_mode:
            expect(durable is not None, "no directory fsync after the publish")
        else:
            expect(not any(s["op"] in ("fsync", "fdatasync", "sync") for s in trace),
                   "a save with SHARDPOINT_SAVE_NO_FSYNC called fsync: %s" %
                   [s["path"] for s in trace if s["op"] in ("fsync", "fdatasync")])
            durable = len(trace)  # never durable
        model, states = crash_states(base, before, trace)
        # The model, replayed to the end, must describe the directory as it really is.
        now = snapshot_tree(base)
        modelled = {}
        for d, st in model.dirs.items():
            for n, e in st["current"].items():
                rel = os.path.relpath(os.path.join(d, n), base)
                modelled[rel] = None if e[0] == "dir" else bytes(model.files[e[1]]["current"])
        expect(modelled == now, "%s: the model's final state differs from the disk: %s vs %s" %
               (name, sorted(modelled), sorted(now)))
        rel_ckpt = os.path.relpath(ckpt, base)
        verdicts = Verdicts(h, name, rel_ckpt)
        lost, torn_meta = 0, 0
        for key, (tree, points) in states.items():
            v, root, d = verdicts.of(key, tree, keep=True)
            st = v["st"]
            what = "%s: power cut after steps %s" % (name, points[:6])
            meta = tree.get(os.path.join(rel_ckpt, META))
            if not (v["B"] or v["none" if fresh else "A"]):
                lost += 1
            if meta is not None and not is_checkpoint_header(meta):
                torn_meta += 1
            if durable_mode:
                for p in points:
                    good, want = judge(v, p, publish, durable, fresh)
                    expect(good, "%s: expected %s, found %s (files %s)" % (what, want, json.dumps(st), sorted(tree)))
            # A retry works from any state: without overwrite in a new directory (a torn
            # metadata file must not block it), with overwrite over a checkpoint.
            if fresh and not is_checkpoint_header(meta):
                r = h.save(d, SEED_C)
                expect(r["outcome"] == "SHARDPOINT_OK", "%s: retry without overwrite: %s" % (what, r))
            else:
                if fresh:
                    r = h.save(d, SEED_C)
                    expect(r["outcome"] == "SHARDPOINT_EEXISTS", "%s: retry without overwrite over a checkpoint: %s" % (what, r))
                r = h.save(d, SEED_C, "overwrite")
                expect(r["outcome"] == "SHARDPOINT_OK", "%s: retry with overwrite: %s" % (what, r))
            expect_clean(h, d, SEED_C, what + ", then a retry")
            shutil.rmtree(root)
        totals[name] = (len(states), lost, torn_meta)
        print("%s: %d steps, %d distinct crash states checked, %d lose the checkpoint, %d with a torn metadata file" %
              (name, len(trace), len(states), lost, torn_meta))
        if durable_mode:
            check_fsyncs_matter(h, name, base, before, trace, publish, ckpt, fresh, verdicts)
        shutil.rmtree(base)
    if not durable_mode:
        # The opt-out's documented risk, shown by the model: states that keep neither checkpoint.
        expect(totals["powerloss-nofsync-overwrite"][1] > 0,
               "the model found no state that loses the checkpoint without fsync: the model cannot fail")
        expect(totals["powerloss-nofsync-fresh"][2] > 0, "the model found no torn metadata file without fsync")


def check_fsyncs_matter(h, name, base, before, trace, publish, ckpt, fresh, verdicts):
    """Mutation test of the model: for each file or directory the save fsyncs, drop every fsync of
    it from the clean trace (a library that forgot them) and the model must find a state that
    breaks the promise (B after success, the old state before the publish). Objects outside the
    test's tree, and objects whose fsyncs never had anything new to make durable, are skipped.
    (Dropping only the directory fsync before the publish breaks nothing under this ordered
    model: the one after the publish covers it.)"""
    needed, skipped = [], []
    fsyncs = [j for j, s in enumerate(trace) if s["op"] in ("fsync", "fdatasync") and s["ret"] == 0]
    paths = []
    for j in fsyncs:
        if trace[j]["path"] not in paths:
            paths.append(trace[j]["path"])
    for path in paths:
        what = glob_of(os.path.relpath(path, base))
        mine = [j for j in fsyncs if trace[j]["path"] == path]
        changes = False
        for j in mine:
            prior = Model(base, before)
            for t in trace[:j]:
                prior.apply(t)
            entry = prior.fds.get(trace[j]["fd"]) if prior.inside(path) else None
            if entry is None:
                continue
            if entry[0] == "dir":
                changes |= bool(prior.dirs[entry[1]]["pending"])
            else:
                f = prior.files[entry[1]]
                changes |= f["durable"] != bytes(f["current"])
        if not prior.inside(path):
            skipped.append(what + " (outside the test's tree)")
            continue
        if not changes:
            skipped.append(what + " (nothing new to make durable)")
            continue
        mutated = [t for k, t in enumerate(trace) if k not in mine]
        pub = publish - sum(1 for j in mine if j < publish)
        _, states = crash_states(base, before, mutated)
        broken = 0
        for key, (tree, points) in states.items():
            v, _, _ = verdicts.of(key, tree)
            for p in points:
                # The mutated save still returned success at its end: B must be durable then.
                good, _ = judge(v, p, pub, len(mutated) - 1, fresh)
                broken += not good
        log("without its %d fsync(s) of %s: %d broken crash states" % (len(mine), what, broken))
        expect(broken, "%s: without the fsyncs of %s the model finds nothing broken: it cannot fail there" % (name, what))
        needed.append(what)
    expect(needed, "%s: no fsync matters to the model" % name)
    print("%s: without its fsyncs, each of these breaks a promise: %s; not checked: %s" %
          (name, ", ".join(needed), ", ".join(skipped) or "none"))


def scenario_kill_powerloss(h):
    """A kill, a successful retry, then a power cut: the retry returned success, so its checkpoint
    must survive, whatever the killed save left unsynced (a directory it created but had not yet
    made durable, say). Checked with the power-loss model over the two traces in sequence, at the
    end of the retry (and, with overwrite, that nothing else changed)."""
    bad = []
    for fresh in (True, False):
        name = "kill-powerloss-%s" % ("fresh" if fresh else "overwrite")
        _, tckpt, trace, _ = clean_trace(h, name, fresh)
        tbase = os.path.dirname(os.path.dirname(tckpt)) if fresh else os.path.dirname(tckpt)
        specs = fault_specs(trace)
        killed_at = 0
        for i, spec in enumerate(specs):
            # A kill before a write, a hint or a close leaves what a kill before the next
            # namespace or sync step leaves, as far as durability goes: those are skipped.
            if trace[i]["op"] in ("pwrite", "write", "sync_file_range", "close", "ftruncate") or \
                    not worth_injecting(h, trace, i):
                continue
            killed_at += 1
            base, ckpt = prepare(h, "%s-%d" % (name, i), fresh)
            before = snapshot_tree(base)
            t1, t2 = os.path.join(h.work, "killed.trace"), os.path.join(h.work, "retry.trace")
            r = h.save(ckpt, SEED_B, *([] if fresh else ["overwrite"]), fault=spec.replace(tbase, base) + ":KILL",
                       trace=t1, data=True)
            expect(r["outcome"] == "KILLED", "%s: not killed at step %d" % (name, i))
            st = h.state(ckpt)
            r = h.save(ckpt, SEED_C, *([] if fresh and st["open"] != "SHARDPOINT_OK" else ["overwrite"]), trace=t2, data=True)
            expect(r["outcome"] == "SHARDPOINT_OK", "%s: retry after a kill at step %d: %s" % (name, i, r))
            # Only the power cuts after the retry returned: the states of the model at the end.
            model = Model(base, before)
            for s in parse_trace(t1) + parse_trace(t2):
                model.apply(s)
            verdicts = Verdicts(h, "%s-%d" % (name, i), os.path.relpath(ckpt, base))
            for tree in model.crash_states():
                v, _, _ = verdicts.of(state_key(tree), tree)
                st = v["st"]
                if not (st["open"] == "SHARDPOINT_OK" and st["seed"] == SEED_C and st["exact"]):
                    rel = os.path.relpath(ckpt, base)
                    parts = rel.split("/")
                    lost = [("/".join(parts[:k + 1])) for k in range(len(parts)) if "/".join(parts[:k + 1]) not in tree]
                    why = ("the directory entry of DIR/%s was never made durable" % lost[0]) if lost else \
                        json.dumps({k: st[k] for k in ("open", "seed", "files")})
                    bad.append("%s: kill before step %d (%s), a retry that succeeded, a power cut: %s, %s" %
                               (name, i, spec.replace(tbase, "DIR"), st["open"], why))
                    log(bad[-1])
                    break
            shutil.rmtree(base)
        print("%s: a kill at %d of %d steps, a retry, a power cut at its end" % (name, killed_at, len(trace)))
    expect(not bad, "a successful save after a killed one is not durable in %d cases, e.g.\n  %s" %
           (len(bad), "\n  ".join(bad[:4])))


def scenario_selftest(h):
    """The shim and the model themselves: an injected errno reaches the library, a KILL kills,
    nth counts, the trace records every byte written (the model rebuilds the exact files)."""
    base = h.fresh_dir("selftest")
    ckpt = os.path.join(base, "ckpt")
    tpath = os.path.join(base, "t.trace")
    r = h.save(ckpt, SEED_A, fault="pwrite:*data-*-r00001.bin:1:EIO", trace=tpath)
    expect(r["outcome"] == "SHARDPOINT_EIO" and r["names"][1] == "SHARDPOINT_EIO" and r["names"][0] == "SHARDPOINT_ERANK",
           "an EIO injected into rank 1's first write: %s" % r)
    inj = injected(tpath)
    expect(len(inj) == 1 and inj[0]["err"] == "EIO", "trace does not show the injection: %s" % inj)
    r = h.save(ckpt, SEED_A, fault="open:*data-*:1:KILL")
    expect(r["outcome"] == "KILLED", "KILL did not kill: %s" % r)
    # Several specs on one call kind: each counts every call, so calls 1 and 2 both fail (the
    # library ignores writeback hints, so the save goes on). Each rank's packed extents are one
    # write and one hint: two calls.
    r = h.save(ckpt, SEED_A, "overwrite", fault=every("sync_file_range:*", 2), trace=tpath)
    expect(r["outcome"] == "SHARDPOINT_OK" and len(injected(tpath)) == 2,
           "two specs did not fail two calls: %s, %d injected" % (r, len(injected(tpath))))
    r = h.save(ckpt, SEED_A, "overwrite", fault="fsync:dir:99:EIO", trace=tpath)
    expect(r["outcome"] == "SHARDPOINT_OK" and not injected(tpath), "a 99th directory fsync was injected: %s" % r)
    before = snapshot_tree(base)
    r = h.save(ckpt, SEED_B, "overwrite", trace=tpath, data=True)
    expect(r["outcome"] == "SHARDPOINT_OK", "traced save: %s" % r)
    before.pop("t.trace", None)
    model = Model(base, before)
    for s in parse_trace(tpath):
        model.apply(s)
    for name in os.listdir(ckpt):
        e = model.dirs[ckpt]["current"].get(name)
        expect(e is not None, "model lacks %s" % name)
        if e[0] == "file":
            expect(bytes(model.files[e[1]]["current"]) == open(os.path.join(ckpt, name), "rb").read(),
                   "model's bytes of %s differ from the file" % name)
    expect(sorted(model.dirs[ckpt]["current"]) == sorted(os.listdir(ckpt)), "model's names differ from the directory")
    shutil.rmtree(base)
    print("selftest: injection, KILL, nth and the traced bytes check out")


SCENARIOS = {
    "selftest": scenario_selftest,
    "inject-overwrite": lambda h: scenario_inject(h, False),
    "inject-fresh": lambda h: scenario_inject(h, True),
    "kill-overwrite": lambda h: scenario_kill(h, False),
    "kill-fresh": lambda h: scenario_kill(h, True),
    "kill-nofsync": scenario_kill_nofsync,
    "inject-phases": scenario_inject_phases,
    "kill-phases": scenario_kill_phases,
    "torn-meta": scenario_torn_meta,
    "kill-retention": scenario_kill_retention,
    "publish": scenario_publish,
    "double-faults": scenario_double_faults,
    "read-faults": scenario_read_faults,
    "kill-powerloss": scenario_kill_powerloss,
    "inject-deflate": scenario_inject_deflate,
    "inject-zstd": scenario_inject_zstd,
    "kill-zstd": scenario_kill_zstd,
    "powerloss-durable": lambda h: scenario_powerloss(h, True),
    "powerloss-nofsync": lambda h: scenario_powerloss(h, False),
}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--driver", required=True)
    ap.add_argument("--shim", required=True)
    ap.add_argument("--work", required=True, help="scratch directory (emptied per scenario)")
    ap.add_argument("scenario", nargs="+", choices=sorted(SCENARIOS))
    ap.add_argument("-v", "--verbose", action="store_true", help="print every step and its outcome")
    a = ap.parse_args()
    global VERBOSE
    VERBOSE = a.verbose
    failed = 0
    for name in a.scenario:
        work = os.path.abspath(os.path.join(a.work, name))
        if os.path.exists(work):
            shutil.rmtree(work)
        os.makedirs(work)
        h = Harness(os.path.abspath(a.driver), os.path.abspath(a.shim), work)
        try:
            SCENARIOS[name](h)
            print("PASS %s (%d driver runs)" % (name, h.runs))
            shutil.rmtree(work)
        except Failure as e:
            failed += 1
            print("FAIL %s: %s" % (name, e))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
