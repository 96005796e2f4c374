"""CheckpointManager: steps under a root, listing, retention, deletion, loading, several ranks."""

import os

import numpy as np
import pytest

import shardpoint as sp
from helpers import part, run_ranks


def state_of(step):
    return {"model": {"w": np.full((4, 8), float(step), dtype=np.float32), "b": np.arange(3) + step},
            "step": step, "note": f"step {step}"}


def test_save_list_latest_load(tmp_path):
    root = tmp_path / "run"
    mgr = sp.CheckpointManager(root)
    assert mgr.latest_step() is None and mgr.steps() == []
    with pytest.raises(sp.NotFoundError):
        mgr.load()
    for step in (100, 200, 300):
        assert mgr.save(step, state_of(step), metadata={"loss": str(1.0 / step)}) == []  # no rule: nothing deleted
    assert mgr.latest_step() == 300
    assert mgr.step_path(7) == os.path.join(str(root), "step-7")

    steps = mgr.steps()
    assert [s.step for s in steps] == [100, 200, 300]
    s = steps[0]
    assert isinstance(s, sp.StepInfo) and s.state is sp.StepState.COMMITTED and s.committed and str(s.state) == "committed"
    assert s.path == mgr.step_path(100) and not s.busy and s.message == "" and s.metric is None
    assert s.bytes == sum(os.path.getsize(os.path.join(s.path, f)) for f in os.listdir(s.path))
    assert s.file_count == 2 and s.disk_bytes > 0 and s.time_unix_ns > 0

    loaded = mgr.load()  # the latest
    assert loaded["step"] == 300 and loaded["note"] == "step 300"
    assert np.array_equal(loaded["model"]["w"], state_of(300)["model"]["w"])
    into = state_of(0)
    w = into["model"]["w"]
    assert mgr.load(100, into=into) is into
    assert into["model"]["w"] is w and np.all(w == 100.0) and into["step"] == 100
    with mgr.reader(200) as r:
        assert r.get_metadata("loss") == str(1.0 / 200)
    with pytest.raises(sp.NotFoundError):
        mgr.load(150)
    mgr.close()
    assert "closed" in repr(mgr)
    with pytest.raises(ValueError):
        mgr.steps()


def test_keep_last_and_keep_every(tmp_path):
    mgr = sp.CheckpointManager(tmp_path / "run", keep_last=2, keep_every=4)
    deleted = []
    for step in range(1, 11):
        deleted += mgr.save(step, {"x": np.zeros(3) + step})
    assert deleted == [1, 2, 3, 5, 6, 7]
    assert [s.step for s in mgr.steps()] == [4, 8, 9, 10]


@pytest.mark.parametrize("mode, kept", [("min", [3, 5, 6]), ("max", [1, 2, 6])])
def test_keep_best(tmp_path, mode, kept):
    mgr = sp.CheckpointManager(tmp_path / mode, keep_best=2, best_metric="loss", best_mode=mode)
    losses = {1: "0.9", 2: "0.8", 3: "0.1", 4: None, 5: "0.2", 6: "0.5"}  # 4: no metric, never best
    for step, loss in losses.items():
        mgr.save(step, {"x": np.zeros(2)}, metadata={} if loss is None else {"loss": loss}, retention=False)
    assert mgr.apply_retention(dry_run=True) == sorted(set(losses) - set(kept))
    assert len(mgr.steps()) == 6  # a dry run deletes nothing
    assert mgr.apply_retention() == sorted(set(losses) - set(kept))
    assert [s.step for s in mgr.steps()] == kept
    assert [s.metric for s in mgr.steps()] == [losses[k] for k in kept]


def test_bad_options(tmp_path):
    with pytest.raises(sp.InvalidArgumentError, match="best_metric"):
        sp.CheckpointManager(tmp_path / "a", keep_best=1)
    with pytest.raises(ValueError):
        sp.CheckpointManager(tmp_path / "a", keep_last=-1)
    with pytest.raises(ValueError):
        sp.CheckpointManager(tmp_path / "a", best_mode="median")  # type: ignore[arg-type]
    with pytest.raises(sp.NotFoundError):
        sp.CheckpointManager(tmp_path / "missing", create=False)


def test_delete_partial_damaged_and_gc(tmp_path):
    root = tmp_path / "run"
    mgr = sp.CheckpointManager(root)
    for step in (1, 2, 3):
        mgr.save(step, {"x": np.zeros(4) + step})
    debris = "data-" + "ab" * 16 + "-r00000.bin"
    os.mkdir(root / "step-0")
    (root / "step-0" / debris).write_bytes(b"x" * 100)
    meta = root / "step-2" / "shardpoint.meta"
    raw = bytearray(meta.read_bytes())
    raw[-1] ^= 0xFF
    meta.write_bytes(bytes(raw))
    (root / ".deleting-step-9-0123456789abcdef").mkdir()

    states = {s.step: s.state for s in mgr.steps()}
    assert states == {0: sp.StepState.PARTIAL, 1: sp.StepState.COMMITTED, 2: sp.StepState.DAMAGED, 3: sp.StepState.COMMITTED}
    damaged = [s for s in mgr.steps() if s.step == 2][0]
    assert damaged.message and not damaged.committed
    assert sorted(mgr.gc(dry_run=True)) == [sp.Garbage(".deleting-step-9-0123456789abcdef/", 0),
                                           sp.Garbage("step-0/", 0), sp.Garbage(f"step-0/{debris}", 100)]
    assert len(mgr.gc()) == 3 and sorted(os.listdir(root)) == ["step-1", "step-2", "step-3"]
    mgr.delete(2)  # an explicit deletion removes damaged steps too
    assert [s.step for s in mgr.steps()] == [1, 3]
    with pytest.raises(sp.NotFoundError):
        mgr.delete(2)
    sp.delete_checkpoint(root / "step-1")
    assert [s.step for s in mgr.steps()] == [3]
    with pytest.raises(sp.NotFoundError):
        sp.delete_checkpoint(root)  # the root is no checkpoint


def test_reader_keeps_reading_a_deleted_step(tmp_path):
    mgr = sp.CheckpointManager(tmp_path / "run", keep_last=1)
    big = np.arange(1 << 18, dtype=np.float64)
    mgr.save(1, {"big": big})
    with mgr.reader(1) as r:
        assert mgr.save(2, {"big": big * 2}) == [1]
        assert not os.path.exists(mgr.step_path(1))
        assert np.array_equal(r.read_tensor("big"), big)
        r.verify()
    assert mgr.latest_step() == 2


def test_three_ranks_save_through_the_manager(tmp_path):
    root = tmp_path / "run"
    w = np.arange(12 * 5, dtype=np.float32).reshape(12, 5)

    def rank_main(rank, comm):
        mgr = sp.CheckpointManager(root, comm, keep_last=1)
        deleted = []
        for step in (10, 20, 30):
            lo, hi = part(12, rank, 3)
            deleted += mgr.save(step, {"w": sp.Chunk(w[lo:hi] + step, offsets=(lo, 0), global_shape=w.shape)})
        mgr.close()
        return deleted

    assert run_ranks(3, rank_main) == [[10, 20], [], []]  # only rank 0 applies retention
    mgr = sp.CheckpointManager(root)
    assert [s.step for s in mgr.steps()] == [30]
    assert np.array_equal(mgr.load()["w"], w + 30)


def test_save_async_waits_for_the_previous_save_and_applies_retention(tmp_path):
    import numpy as np

    mgr = sp.CheckpointManager(tmp_path / "run", keep_last=2)
    staging = sp.Staging(1 << 20)
    w = np.zeros(1000, np.float32)
    pendings = []
    for step in (1, 2, 3):
        w[:] = step
        pendings.append(mgr.save_async(step, {"w": w}, staging=staging))
        w[:] = -1  # training goes on: the save holds its copy
    assert pendings[0].closed and pendings[1].closed  # waited for by the next save_async
    assert mgr.wait() == [1]  # the last save committed, then retention kept the newest two
    assert mgr.wait() == []
    assert [s.step for s in mgr.steps()] == [2, 3]
    assert np.array_equal(mgr.load()["w"], np.full(1000, 3, np.float32))
    pending = mgr.save_async(4, {"w": w}, staging=staging)
    mgr.close()  # finishes the pending save first
    assert pending.closed
    assert [s.step for s in sp.CheckpointManager(tmp_path / "run").steps()] == [2, 3, 4]
    staging.close()
