"""Progress reports and cancellation: save, load and verify report on the calling thread, and a
callback returning False (or raising) cancels with nothing committed and nothing lost."""

from __future__ import annotations

import os
import threading
import time

import numpy as np
import pytest

import shardpoint as sp
from helpers import run_ranks

N = 1 << 20  # elements per tensor: 4 MiB of float32


def model(value: float) -> dict[str, np.ndarray]:
    return {f"w{i}": np.full(N, value + i, dtype=np.float32) for i in range(4)}


def check_reports(reports: list[sp.Progress], phase: str, total: int | None) -> None:
    assert len(reports) >= 2
    assert reports[0].done == 0
    assert reports[-1].done == reports[-1].total
    if total is not None:
        assert reports[-1].total == total
    for before, after in zip(reports, reports[1:]):
        assert after.phase == phase and after.total == before.total and after.done >= before.done


def test_save_load_and_verify_report_every_byte(tmp_path):
    path = tmp_path / "c"
    saved: list[sp.Progress] = []
    threads = set()

    def note(p: sp.Progress) -> None:
        saved.append(p)
        threads.add(threading.get_ident())

    sp.save(path, model(1), progress=note)
    check_reports(saved, "write", 4 * N * 4)
    assert threads == {threading.get_ident()}  # on the calling thread only

    loaded: list[sp.Progress] = []
    state = sp.load(path, progress=loaded.append)
    check_reports(loaded, "read", None)
    assert loaded[-1].total >= 4 * N * 4
    assert all(np.array_equal(state[k], v) for k, v in model(1).items())

    verified: list[sp.Progress] = []
    with sp.Reader(path) as r:
        r.verify(progress=verified.append)
        check_reports(verified, "verify", 4 * N * 4)
        r.verify()  # the callback was taken back: a plain verify reports nothing more
    assert len(verified) >= 2 and verified[-1].done == 4 * N * 4


def assert_previous_checkpoint_intact(path, files_before) -> None:
    assert sorted(os.listdir(path)) == files_before
    state = sp.load(path)
    assert all(np.array_equal(state[k], v) for k, v in model(1).items())


@pytest.mark.parametrize("compression", [0, "zstd"])
def test_false_cancels_the_save_and_keeps_the_previous_checkpoint(tmp_path, compression):
    path = tmp_path / "c"
    sp.save(path, model(1))
    files = sorted(os.listdir(path))
    with pytest.raises(sp.CanceledError, match="canceled"):
        sp.save(path, model(2), overwrite=True, compression=compression, progress=lambda p: False)
    assert_previous_checkpoint_intact(path, files)

    # midway: after some bytes were written (one I/O thread; each report takes 60 ms, so the
    # next one is due at once)
    reports: list[sp.Progress] = []

    def stop_midway(p: sp.Progress) -> bool:
        reports.append(p)
        time.sleep(0.06)
        return p.done == 0

    with pytest.raises(sp.CanceledError):
        sp.save(path, model(2), overwrite=True, compression=compression, io_threads=1, progress=stop_midway)
    assert 0 < reports[-1].done < reports[-1].total
    assert_previous_checkpoint_intact(path, files)


class Stop(Exception):
    pass


@pytest.mark.parametrize("error", [Stop("stop here"), KeyboardInterrupt()])
def test_an_exception_in_the_callback_is_raised_and_commits_nothing(tmp_path, error):
    path = tmp_path / "c"

    def fail(p: sp.Progress) -> None:
        raise error

    with pytest.raises(type(error)):
        sp.save(path, model(1), progress=fail)
    with pytest.raises(sp.NotFoundError):
        sp.Reader(path)
    sp.save(path, model(1))  # and the next save goes through
    assert np.array_equal(sp.load(path)["w3"], model(1)["w3"])


def test_canceled_load_and_verify(tmp_path):
    path = tmp_path / "c"
    sp.save(path, model(1))
    with sp.Reader(path, io_threads=1) as r:
        out = {k: np.zeros(N, np.float32) for k in model(1)}
        with r.load() as batch:
            batch.add_tensors(out)
            with pytest.raises(sp.CanceledError):
                batch.execute(progress=lambda p: p.done == 0 and time.sleep(0.06) is not None)
        with pytest.raises(sp.CanceledError):
            r.verify(progress=lambda p: False)
        with pytest.raises(Stop):
            r.verify(progress=lambda p: (_ for _ in ()).throw(Stop()))
        r.verify()


def test_a_rank_that_cancels_fails_every_rank(tmp_path):
    path = tmp_path / "c"
    sp.save(path, {"w": np.zeros((6, 4), np.float32)})
    files = sorted(os.listdir(path))

    def rank_main(rank: int, comm: sp.Comm) -> None:
        rows = np.full((2, 4), rank, np.float32)
        with sp.Save(path, comm, overwrite=True) as s:
            s.add_tensor("w", rows, global_shape=(6, 4), offsets=(2 * rank, 0))
            s.commit(progress=(lambda p: False) if rank == 1 else None)

    results = sp.LocalGroup(3, timeout=60).run(rank_main, return_exceptions=True)
    assert isinstance(results[1], sp.CanceledError)
    assert isinstance(results[0], sp.RankError) and isinstance(results[2], sp.RankError)
    assert "rank 1" in str(results[0])
    assert sorted(os.listdir(path)) == files
    assert np.array_equal(sp.load(path)["w"], np.zeros((6, 4), np.float32))


def test_ctrl_c_cancels_a_save_cleanly(tmp_path):
    import signal

    sent = []

    def press_ctrl_c_once(p: sp.Progress) -> None:
        if not sent:
            sent.append(p)
            os.kill(os.getpid(), signal.SIGINT)  # as the terminal would
        time.sleep(0.06)  # the next report is due at once

    path = tmp_path / "c"
    with pytest.raises(KeyboardInterrupt):
        sp.save(path, model(1), io_threads=1, progress=press_ctrl_c_once)
    assert not (path / "shardpoint.meta").exists() and os.listdir(path) == []
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # put back
    sp.save(path, model(1))
    assert np.array_equal(sp.load(path)["w2"], model(1)["w2"])
