"""python -m shardpoint.torch convert: DCP FileSystemWriter checkpoint -> shardpoint -> DCP."""

import subprocess
import sys

import pytest
import torch
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint import FileSystemReader, FileSystemWriter

import shardpoint as sp
from shardpoint.torch import StorageReader
from test_dcp import assert_same, model_and_optimizer

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def test_convert_both_ways(tmp_path):
    model, optim = model_and_optimizer(0)
    saved = {"model": model.state_dict(), "optim": optim.state_dict(), "bf": torch.arange(6, dtype=torch.bfloat16),
             "meta": {"epoch": 4}}
    dcp.save(saved, storage_writer=FileSystemWriter(tmp_path / "dcp"))
    run = subprocess.run([sys.executable, "-m", "shardpoint.torch", "convert", str(tmp_path / "dcp"), str(tmp_path / "sp")],
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "every value checked" in run.stdout
    with sp.Reader(tmp_path / "sp") as reader:
        reader.verify()
        assert str(reader.entry("bf").dtype) == "bf16"
    # The nesting survives: DCP rebuilds it from the converted checkpoint's planner_data.
    md = StorageReader(tmp_path / "sp").read_metadata()
    assert md.planner_data["optim.state.0.exp_avg"] == ("optim", "state", "0", "exp_avg")
    model2, optim2 = model_and_optimizer(1)
    loaded = {"model": model2.state_dict(), "optim": optim2.state_dict(), "bf": torch.zeros(6, dtype=torch.bfloat16),
              "meta": {"epoch": 0}}
    dcp.load(loaded, storage_reader=StorageReader(tmp_path / "sp"))
    assert_same(saved, loaded)

    run = subprocess.run([sys.executable, "-m", "shardpoint.torch", "convert", str(tmp_path / "sp"), str(tmp_path / "back")],
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr
    model3, optim3 = model_and_optimizer(2)
    again = {"model": model3.state_dict(), "optim": optim3.state_dict(), "bf": torch.zeros(6, dtype=torch.bfloat16),
             "meta": {"epoch": 0}}
    dcp.load(again, storage_reader=FileSystemReader(tmp_path / "back"))
    assert_same(saved, again)


def test_convert_usage_and_errors(tmp_path):
    run = subprocess.run([sys.executable, "-m", "shardpoint.torch", "convert", str(tmp_path / "nothing"), str(tmp_path / "x")],
                         capture_output=True, text=True)
    assert run.returncode == 1 and "neither a shardpoint checkpoint" in run.stderr
    run = subprocess.run([sys.executable, "-m", "shardpoint.torch"], capture_output=True, text=True)
    assert run.returncode == 2
