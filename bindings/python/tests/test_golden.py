"""The golden program against itself, against a damaged checkpoint and the committed v1 vectors."""

import subprocess
import sys
from pathlib import Path

import pytest

import golden
import shardpoint as sp
from helpers import flip_byte

REPO_GOLDEN = golden.model_path().parent
COMMITTED = sorted(p for p in REPO_GOLDEN.glob("v[0-9]-*") if p.is_dir())


def test_model_parses():
    model = golden.load_model()
    kinds = [r.kind for r in model]
    assert kinds.count("meta") >= 1 and kinds.count("bytes") >= 1 and kinds.count("tensor") >= 10
    assert golden.generate(3, 1).tolist() == [17, 148, 23]  # (k*131 + 17 + k>>11) % 256
    assert golden.generate(2050, 0)[2048] == (2048 * 131 + 1) % 256


@pytest.mark.parametrize("world", [1, 2])
def test_write_then_read(tmp_path, capsys, world):
    assert golden.write(str(tmp_path / "g"), world) == 0
    assert golden.read(str(tmp_path / "g")) == 0
    with sp.Reader(tmp_path / "g") as reader:
        assert reader.storage_info.world_size == world


def test_read_reports_damage(tmp_path, capsys):
    directory = tmp_path / "g"
    assert golden.write(str(directory), 3) == 0
    with sp.Reader(directory) as reader:
        (chunk,) = reader.chunks("optim.blob")
        rows = sorted(reader.chunks("model.embed.weight"), key=lambda c: c.offsets)
    flip_byte(directory, chunk, at=5)
    capsys.readouterr()
    assert golden.read(str(directory)) == 1
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1 and lines[0].startswith("optim.blob:") and "CHECKSUM" in lines[0]
    flip_byte(directory, chunk, at=5)  # repaired
    flip_byte(directory, rows[1], at=0)
    assert golden.read(str(directory)) == 1
    out = capsys.readouterr().out
    assert "model.embed.weight" in out and "optim.blob" not in out


def test_command_line(tmp_path):
    script = str(Path(golden.__file__))
    ok = subprocess.run([sys.executable, script, "write", str(tmp_path / "g"), "3"], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    ok = subprocess.run([sys.executable, script, "read", str(tmp_path / "g")], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    missing = subprocess.run([sys.executable, script, "read", str(tmp_path / "nothing")], capture_output=True, text=True)
    assert missing.returncode == 1 and "ENOTFOUND" in missing.stdout
    usage = subprocess.run([sys.executable, script, "write"], capture_output=True, text=True)
    assert usage.returncode == 2


@pytest.mark.parametrize("directory", COMMITTED, ids=[p.name for p in COMMITTED])
def test_committed_vectors_load(directory, capsys):
    assert golden.read(str(directory)) == 0, capsys.readouterr().out
