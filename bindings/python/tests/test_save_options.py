"""Save options: durable by default (NO_FSYNC only when asked), partial tensors only when asked."""

import os
import re
import shutil
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest

import shardpoint as sp
from shardpoint import _lib, errors

SAVER = textwrap.dedent("""
    import sys, warnings, numpy as np, shardpoint as sp
    warnings.simplefilter("ignore", DeprecationWarning)
    options = eval(sys.argv[2])
    sp.save(sys.argv[1], {"x": np.arange(1000.0)}, **options)
""")


def fsync_calls(tmp_path, name, options):
    """The fsync/fdatasync system calls of a process that saves one checkpoint with `options`."""
    trace = tmp_path / f"{name}.trace"
    subprocess.run(
        ["strace", "-f", "-qq", "-e", "trace=fsync,fdatasync", "-e", "signal=none", "-o", str(trace),
         sys.executable, "-c", SAVER, str(tmp_path / name), repr(options)],
        check=True, env=dict(os.environ), timeout=120)
    with sp.Reader(tmp_path / name) as reader:
        assert reader.read_tensor("x").tolist() == list(np.arange(1000.0))
    return sum(1 for line in trace.read_text().splitlines() if re.search(r"\b(fsync|fdatasync)\(", line))


@pytest.mark.skipif(shutil.which("strace") is None, reason="needs strace")
def test_saves_are_durable_unless_told_otherwise(tmp_path):
    assert fsync_calls(tmp_path, "default", {}) >= 3  # data file, metadata, directory
    assert fsync_calls(tmp_path, "old-fsync", {"fsync": True}) >= 3
    assert fsync_calls(tmp_path, "old-no-fsync", {"fsync": False}) >= 3  # no silent opt-out
    assert fsync_calls(tmp_path, "not-durable", {"durable": False}) == 0


def test_flags():
    assert sp.save_flags() == 0
    assert sp.save_flags(durable=False) == _lib.SAVE_NO_FSYNC == 0x4
    assert sp.save_flags(allow_partial=True) == _lib.SAVE_ALLOW_PARTIAL == 0x8
    assert sp.save_flags(overwrite=True, durable=False, allow_partial=True) == 0x1 | 0x4 | 0x8
    with pytest.warns(DeprecationWarning, match="durable=False"):
        assert sp.save_flags(fsync=True) == 0  # never SAVE_FSYNC: it contradicts NO_FSYNC
    with pytest.warns(DeprecationWarning):
        assert sp.save_flags(fsync=True, durable=False) == _lib.SAVE_NO_FSYNC


def test_fsync_option_is_deprecated_but_works(ckpt):
    with pytest.warns(DeprecationWarning):
        sp.save(ckpt, {"x": np.ones(3)}, fsync=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sp.save(ckpt, {"x": np.ones(3)}, overwrite=True, durable=False)
    with sp.Reader(ckpt) as reader:
        assert reader.read_tensor("x").tolist() == [1.0] * 3


def test_an_uncovered_save_fails_and_leaves_nothing(ckpt):
    data = np.arange(12, dtype=np.int32).reshape(4, 3)
    with pytest.raises(sp.UncoveredError) as info:
        with sp.Save(ckpt) as s:
            s.add_tensor("t", data[:3], offsets=(0, 0), global_shape=(4, 3))  # row 3 never offered
            s.add_tensor("full", data)
    assert (info.value.code, info.value.name) == (errors.EUNCOVERED, "SHARDPOINT_EUNCOVERED")
    assert "t" in info.value.message
    with pytest.raises(sp.NotFoundError):
        sp.Reader(ckpt)
    assert not ckpt.exists() or not [p for p in ckpt.iterdir() if p.name != "shardpoint.lock"]


def test_an_uncovered_multirank_save_fails_on_every_rank(ckpt):
    def rank_main(rank, comm):
        with sp.Save(ckpt, comm) as s:  # ranks 0 and 1 offer rows 0..1 and 2..3 of 6
            s.add_tensor("x", np.full((2, 2), rank), offsets=(2 * rank, 0), global_shape=(6, 2))

    outcomes = sp.LocalGroup(2, timeout=60).run(rank_main, return_exceptions=True)
    assert all(isinstance(o, sp.UncoveredError) for o in outcomes), outcomes
    with pytest.raises(sp.NotFoundError):
        sp.Reader(ckpt)


def test_allow_partial_saves_a_partial_tensor(ckpt):
    data = np.arange(12, dtype=np.int32).reshape(4, 3)
    with sp.Save(ckpt, allow_partial=True) as s:
        s.add_tensor("t", data[:3], offsets=(0, 0), global_shape=(4, 3))
    with sp.Reader(ckpt) as reader:
        entry = reader.entry("t")
        assert (entry.numel, entry.covered_numel) == (12, 9)
        assert np.array_equal(reader.read_tensor("t", sizes=(3, 3)), data[:3])
        with pytest.raises(sp.UncoveredError):
            reader.read_tensor("t")
