"""shardpoint.torch across real processes: gloo on 127.0.0.1, DTensor resharding, a failing rank."""

import pytest

import shardpoint as sp


@pytest.fixture(scope="module")
def rows_checkpoint(tmp_path_factory):
    from conftest import run_job

    tmp = tmp_path_factory.mktemp("rows")
    run_job("save_rows", 4, tmp / "ckpt", tmp)
    return tmp / "ckpt"


def test_four_ranks_save_row_shards(rows_checkpoint):
    with sp.Reader(rows_checkpoint) as reader:
        reader.verify()
        assert reader.storage_info.world_size == 4
        rows = sorted(c.offsets for c in reader.chunks("model.w"))
        assert rows == [(0, 0), (3, 0), (6, 0), (9, 0)]
        assert [c.sizes for c in reader.chunks("model.e")] == [(3, 6), (3, 6), (3, 6), (1, 6)]
        (bias,) = reader.chunks("model.b")  # replicated on 4 ranks, written once
        assert bias.sizes == (10,)
        assert str(reader.entry("model.e").dtype) == "bf16"


@pytest.mark.parametrize("world", [2, 3])
def test_load_column_shards(rows_checkpoint, job, world):
    job("load_cols", world, rows_checkpoint)


def test_failing_rank_commits_nothing(job, tmp_path):
    job("fail", 4, tmp_path / "f")


def test_ranks_that_write_nothing(job, tmp_path):
    job("replicated", 3, tmp_path / "r")


def test_sharded_tensor_rows_to_columns(job, tmp_path):
    job("sharded", 4, tmp_path / "st")
    with sp.Reader(tmp_path / "st") as reader:
        assert sorted(c.offsets for c in reader.chunks("st")) == [(0, 0), (3, 0), (6, 0), (9, 0)]
    job("sharded_load", 3, tmp_path / "st")
