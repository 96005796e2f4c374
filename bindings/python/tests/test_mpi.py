"""Real MPI processes: `mpirun ... python tests/mpi_job.py` with Comm.mpi() on every rank.

Skipped when mpi4py or mpirun is missing, unless SHARDPOINT_REQUIRE_MPI=1 (run-tests.sh sets it
when it has installed mpi4py): then a missing piece fails instead.
"""

import importlib.util
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import mpi_job
import shardpoint as sp
from helpers import flip_byte, run_ranks

JOB = Path(mpi_job.__file__).resolve()
TIMEOUT = 45  # seconds for one mpirun; a job takes about 2


def _missing():
    if importlib.util.find_spec("mpi4py") is None:
        return "mpi4py is not installed"
    if shutil.which("mpirun") is None:
        return "mpirun is not on PATH"
    return None


MISSING = _missing()
REQUIRED = os.environ.get("SHARDPOINT_REQUIRE_MPI") == "1"
pytestmark = pytest.mark.skipif(MISSING is not None and not REQUIRED, reason=f"no MPI: {MISSING}")


def mpirun(ranks, mode, directory):
    """Runs `mpi_job.py mode directory` on `ranks` processes; returns (exit status, stdout, stderr)."""
    if MISSING is not None:
        pytest.fail(f"SHARDPOINT_REQUIRE_MPI=1 but {MISSING}")
    env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    command = [shutil.which("mpirun"), "--oversubscribe", "-np", str(ranks)]
    for name in ("LD_LIBRARY_PATH", "SHARDPOINT_LIBRARY", "PYTHONPATH"):  # also on other nodes
        if name in env:
            command += ["-x", name]
    command += [sys.executable, str(JOB), mode, str(directory)]
    # A session of its own, so a hung job is killed with every rank it started.
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            cwd=JOB.parent, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"mpirun -np {ranks} mpi_job.py {mode} hung for {TIMEOUT} s\n--- stdout\n{out}\n--- stderr\n{err}")
    return proc.returncode, out, err


def run_job(ranks, mode, directory):
    """mpirun that must succeed: exit status 0, every rank's ok line and rank 0's summary."""
    code, out, err = mpirun(ranks, mode, directory)
    detail = f"mpirun -np {ranks} mpi_job.py {mode}: exit status {code}\n--- stdout\n{out}\n--- stderr\n{err}"
    assert code == 0, detail
    lines = out.splitlines()
    assert f"mpi_job: {mode} ok ({ranks} ranks)" in lines, detail
    for rank in range(ranks):
        assert f"mpi_job: rank {rank}/{ranks} {mode} ok" in lines, detail
    return out


def run_failing_job(ranks, mode, directory):
    code, out, err = mpirun(ranks, mode, directory)
    assert code != 0 and f"mpi_job: {mode} ok" not in out, f"exit status {code}\n{out}\n{err}"
    return out, err


def test_save_with_4_processes_load_resharded_into_3(ckpt):
    run_job(4, "save", ckpt)
    with sp.Reader(ckpt) as reader:  # what the 4 processes committed, seen from here
        assert reader.storage_info.world_size == 4
        assert sorted(c.writer_rank for c in reader.chunks("model.cols")) == [0, 1, 2, 3]
        assert np.array_equal(reader.read_tensor("model.cols"), mpi_job.expected("model.cols"))
        reader.verify()
    run_job(3, "load", ckpt)


def test_conflicting_dtype_fails_every_process(tmp_path):
    out = run_job(4, "conflict", tmp_path)
    assert "mpi_job: rank 3 offering i32 -> ['ConflictError', 'ConflictError', 'ConflictError', 'ConflictError']" in out
    assert "mpi_job: rank 0 offering i32 -> ['ConflictError', 'ConflictError', 'ConflictError', 'ConflictError']" in out
    for bad in (0, 3):
        with pytest.raises(sp.NotFoundError):
            sp.Reader(tmp_path / f"bad-rank{bad}")


def test_load_job_reports_a_wrong_byte(ckpt, monkeypatch):
    """The checker itself: one byte saved differently (valid CRCs) makes the load job fail."""
    wrong = mpi_job.expected("model.cols").copy()
    wrong.view(np.uint8)[11, 3] ^= 0x40  # byte 3 of row 11: in the last load rank's rows
    real = mpi_job.expected
    monkeypatch.setattr(mpi_job, "expected", lambda fqn: wrong if fqn == "model.cols" else real(fqn))
    run_ranks(4, lambda rank, comm: mpi_job.save(ckpt, comm))  # the same layout, by 4 threads
    out, _ = run_failing_job(3, "load", ckpt)
    assert "mpi_job: rank 2/3 load: model.cols rows 8..13: 1 of 2320 bytes differ, the first at byte 1395" in out, out
    assert "mpi_job: rank 0/3 load ok" in out and "mpi_job: load FAILED on 1 of 3 ranks" in out, out


def test_load_job_aborts_on_a_damaged_checkpoint(ckpt):
    """A rank that raises (here ChecksumError on every rank) takes the job down with MPI_Abort."""
    run_job(4, "save", ckpt)
    with sp.Reader(ckpt) as reader:
        chunk = next(c for c in reader.chunks("model.rows") if c.writer_rank == 2)
    flip_byte(ckpt, chunk, at=1)
    _, err = run_failing_job(3, "load", ckpt)
    assert "ChecksumError" in err, err
