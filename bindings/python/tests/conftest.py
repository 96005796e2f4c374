import numpy as np
import pytest



@pytest.fixture
def ckpt(tmp_path):
    """A checkpoint directory that does not exist yet."""
    return tmp_path / "ckpt"


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


def pytest_report_header(config):
    import shardpoint as sp

    return f"shardpoint binding {sp.__file__}, library {sp.library_version()} ({sp.library_path()})"
