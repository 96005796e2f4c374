import os
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
GOLDEN = HERE.parents[2] / "tests" / "golden"


def run_job(scenario, world, directory, tmp_path, timeout=240):
    """Runs dcp_job.py SCENARIO with `world` ranks, one process each; every rank must print "ok"."""
    store = tmp_path / f"store-{scenario}-{world}"
    if store.exists():
        store.unlink()
    env = dict(os.environ, GLOO_SOCKET_IFNAME="lo", OMP_NUM_THREADS="1")
    procs = [
        subprocess.Popen([sys.executable, str(HERE / "dcp_job.py"), scenario, str(rank), str(world), str(store),
                          str(directory)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        for rank in range(world)
    ]
    outputs = []
    try:
        for proc in procs:
            out, _ = proc.communicate(timeout=timeout)
            outputs.append(out)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    for rank, (proc, out) in enumerate(zip(procs, outputs)):
        assert proc.returncode == 0 and f"ok {rank}" in out, f"rank {rank} of {scenario} failed:\n{out}"
    return outputs


@pytest.fixture
def job(tmp_path):
    def run(scenario, world, directory):
        return run_job(scenario, world, directory, tmp_path)
    return run


def pytest_report_header(config):
    import torch

    import shardpoint as sp

    return f"torch {torch.__version__}, shardpoint {sp.library_version()} ({sp.library_path()})"
