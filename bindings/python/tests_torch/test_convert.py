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
    assert run.returncode == 1 and "is not a shardpoint checkpoint" in run.stderr
    run = subprocess.run([sys.executable, "-m", "shardpoint.torch"], capture_output=True, text=True)
    assert run.returncode == 2


def convert(*args):
    return subprocess.run([sys.executable, "-m", "shardpoint.torch", "convert", *map(str, args)], capture_output=True,
                          text=True)


def nested_state(seed):
    model, optim = model_and_optimizer(seed)
    return {"model": model.state_dict(), "optim": optim.state_dict(), "bf": torch.arange(6, dtype=torch.bfloat16),
            "meta": {"epoch": 4, "tags": ["a", "b"]}}, model, optim


def test_torch_save_file_to_shardpoint_and_back(tmp_path):
    saved, _, _ = nested_state(0)
    torch.save(saved, tmp_path / "model.pt")
    run = convert(tmp_path / "model.pt", tmp_path / "sp")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "(torch.save) into" in run.stdout and "every value checked" in run.stdout
    # dcp.load rebuilds the nesting into a model of the same shape.
    loaded, _, _ = nested_state(1)
    loaded["bf"] = torch.zeros(6, dtype=torch.bfloat16)
    loaded["meta"] = {"epoch": 0, "tags": []}
    dcp.load(loaded, storage_reader=StorageReader(tmp_path / "sp"))
    assert_same(saved, loaded)

    # shardpoint -> torch.save: the nested state dict again, loadable with weights_only.
    run = convert(tmp_path / "sp", tmp_path / "back.pt", "--to", "torch-save")
    assert run.returncode == 0, run.stdout + run.stderr
    assert not [p for p in tmp_path.iterdir() if ".tmp-" in p.name]
    again = torch.load(tmp_path / "back.pt", weights_only=True)
    # DCP's flattening map keeps no key types: the optimizer's integer state keys come back as
    # strings, as with DCP's own dcp_to_torch_save.
    saved["optim"]["state"] = {str(k): v for k, v in saved["optim"]["state"].items()}
    assert_same(saved, again)


def test_legacy_torch_save_format_is_converted(tmp_path):
    saved = {"w": torch.randn(4, 3), "step": 7}
    torch.save(saved, tmp_path / "old.pt", _use_new_zipfile_serialization=False)  # no mmap possible
    run = convert(tmp_path / "old.pt", tmp_path / "sp")
    assert run.returncode == 0, run.stdout + run.stderr
    with sp.Reader(tmp_path / "sp") as reader:
        assert torch.equal(torch.from_numpy(reader.read_tensor("w")), saved["w"])


def test_torch_save_refusals(tmp_path):
    (tmp_path / "garbage.pt").write_bytes(b"not a torch file at all")
    run = convert(tmp_path / "garbage.pt", tmp_path / "sp")
    assert run.returncode == 1 and run.stderr.startswith("convert: ")
    assert not (tmp_path / "sp" / "shardpoint.meta").exists()
    torch.save([torch.zeros(2)], tmp_path / "list.pt")
    run = convert(tmp_path / "list.pt", tmp_path / "sp")
    assert run.returncode == 1 and "not a state dict" in run.stderr
    # A pickle of an arbitrary class is refused unless trusted.
    torch.save({"w": torch.ones(2), "when": __import__("datetime").date(2026, 1, 1)}, tmp_path / "obj.pt")
    run = convert(tmp_path / "obj.pt", tmp_path / "obj")
    assert run.returncode == 1 and "pass --trust-pickle if you trust the file" in run.stderr, run.stderr
    run = convert(tmp_path / "obj.pt", tmp_path / "obj", "--trust-pickle")
    assert run.returncode == 0, run.stdout + run.stderr
    dcp.save({"x": torch.ones(2)}, storage_writer=FileSystemWriter(tmp_path / "dcp"))
    run = convert(tmp_path / "dcp", tmp_path / "x.pt", "--to", "torch-save")
    assert run.returncode == 1 and "converts a shardpoint checkpoint" in run.stderr


def test_conversion_reads_the_source_in_bounded_batches(tmp_path, monkeypatch):
    """DCP -> shardpoint with a small batch budget: the source is read in several loads of at
    most the budget each, never the whole state at once, and every value arrives."""
    import shardpoint.torch.__main__ as cli

    state = {f"t{i}": torch.full((64, 1024), float(i)) for i in range(12)}  # 256 KiB each
    dcp.save(state, storage_writer=FileSystemWriter(tmp_path / "dcp"))
    loads = []
    original = cli._load_many

    def counting(make_reader, entries):
        loads.append(sum(cli._nbytes(md) for _, md in entries))
        return original(make_reader, entries)

    monkeypatch.setattr(cli, "BATCH_BYTES", 600 << 10)
    monkeypatch.setattr(cli, "_load_many", counting)
    count, kind, target = cli.convert(str(tmp_path / "dcp"), str(tmp_path / "sp"))
    assert (count, kind, target) == (12, "dcp", "shardpoint")
    assert max(loads) <= 600 << 10 and len(loads) >= 3 * 6  # conversion, then both sides of the check
    loaded = {k: torch.zeros_like(v) for k, v in state.items()}
    dcp.load(loaded, storage_reader=StorageReader(tmp_path / "sp"))
    assert all(torch.equal(loaded[k], state[k]) for k in state)
