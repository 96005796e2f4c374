"""Asynchronous saves: commit_async returns once the data is staged, the arrays may change at
once, wait() gives the outcome, and a canceled or failed save loses nothing."""

from __future__ import annotations

import os
import time

import numpy as np
import pytest

import shardpoint as sp


def state(value: float) -> dict[str, object]:
    return {
        "w": np.full((1024, 256), value, np.float32),
        "col": np.arange(4096, dtype=np.int64).reshape(1024, 4)[:, 1] * int(value),  # strided
        "opt": {"step": int(value), "m": np.full(3, value, np.float64)},
    }


def check(path, value: float) -> None:
    got = sp.load(path)
    want = state(value)
    assert np.array_equal(got["w"], want["w"]) and np.array_equal(got["col"], want["col"])
    assert got["opt"]["step"] == int(value) and np.array_equal(got["opt"]["m"], want["opt"]["m"])


def test_save_async_returns_before_the_write_and_keeps_the_bytes_it_copied(tmp_path):
    with sp.Staging(8 << 20) as staging:
        assert staging.capacity == 8 << 20 and "8388608" in repr(staging)
        live = state(3)
        pending = sp.save_async(tmp_path / "c", live, staging=staging)
        live["w"][:] = -1  # training goes on: the save keeps what it copied
        live["opt"]["m"][:] = -1
        assert "committing" in repr(pending) or pending.done
        pending.wait()
        pending.wait()  # the same outcome again
        assert pending.committed and pending.done
        pending.close()
    check(tmp_path / "c", 3)


def test_staging_is_reused_save_after_save(tmp_path):
    staging = sp.Staging(8 << 20)
    pending = []
    for step in range(1, 4):
        pending.append(sp.save_async(tmp_path / f"step-{step}", state(step), staging=staging))
        if step > 1:
            assert pending[-2].done  # the area was free: the previous save had ended
    for p in pending:
        p.wait()
        p.close()
    staging.close()
    for step in range(1, 4):
        check(tmp_path / f"step-{step}", step)


def test_a_staging_area_of_its_own_and_errors_on_wait(tmp_path):
    with sp.Save(tmp_path / "c") as s:
        s.add_tensor("w", np.ones(1000, np.float32))
        assert 4000 <= s.staging_size <= 4064
        s.commit_async()  # a staging area sized to this save
    assert np.array_equal(sp.load(tmp_path / "c")["w"], np.ones(1000, np.float32))
    pending = sp.save_async(tmp_path / "c", state(1))  # no overwrite: refused, on wait
    with pytest.raises(sp.ExistsError):
        pending.wait()
    pending.close()


def test_too_small_a_staging_area_starts_nothing(tmp_path):
    with sp.Staging(1024) as small, sp.Save(tmp_path / "c") as s:
        s.add_tensor("w", np.ones(1000, np.float32))
        with pytest.raises(sp.RangeError, match="staging"):
            s.commit_async(small)
        with pytest.raises(sp.StateError):
            s.wait()
        s.commit()
    assert np.array_equal(sp.load(tmp_path / "c")["w"], np.ones(1000, np.float32))


def test_cancel_keeps_the_previous_checkpoint(tmp_path):
    path = tmp_path / "c"
    sp.save(path, state(1))
    files = sorted(os.listdir(path))
    pending = sp.save_async(path, state(2), overwrite=True, progress=lambda p: time.sleep(0.03))
    pending.cancel()
    with pytest.raises(sp.CanceledError):
        pending.wait()
    pending.close()
    assert sorted(os.listdir(path)) == files
    check(path, 1)


def test_async_save_over_ranks(tmp_path):
    path = tmp_path / "c"

    def rank_main(rank: int, comm: sp.Comm) -> None:
        rows = np.full((2, 8), rank, np.float32)
        s = sp.Save(path, comm)
        s.add_tensor("w", rows, global_shape=(6, 8), offsets=(2 * rank, 0))
        s.commit_async()
        rows[:] = -1
        s.wait()
        s.close()

    sp.LocalGroup(3, timeout=60).run(rank_main)
    assert np.array_equal(sp.load(path)["w"], np.repeat(np.arange(3, dtype=np.float32), 2)[:, None] * np.ones(8))
