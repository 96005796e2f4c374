"""shardpoint as typed user code: checked with `mypy --strict` and run by run-tests.sh.

    python examples/typed_example.py

Saves arrays and a nested training state into a temporary directory, then reads them back: into
existing arrays, as lazy slices, as one batched load, and as the whole state (load(into=...)).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TypedDict

import numpy as np
import numpy.typing as npt

import shardpoint

F32 = npt.NDArray[np.float32]


class Model(TypedDict):
    w: F32
    b: F32


class TrainState(TypedDict):
    model: Model
    epoch: int
    note: str


def save_arrays(path: Path) -> None:
    arrays: dict[str, F32] = {
        "w": np.arange(12, dtype=np.float32).reshape(3, 4),
        "b": np.ones(4, dtype=np.float32),
    }
    shardpoint.save(path, arrays, metadata={"step": "7"}, compression="zstd")


def read_arrays(path: Path) -> None:
    with shardpoint.Reader(path) as reader:
        info = reader.info("w")  # kind, dtype, shape, chunks, sizes
        assert info.shape == (3, 4) and info.dtype is shardpoint.DType.F32
        storage = reader.storage_info
        step = reader.get_metadata("step")  # str | None
        print(f"{path.name}: {len(reader)} entries, {storage.total_stored_bytes} bytes stored, step {step}")

        # Into an existing array: read_tensor returns that array, with its own type.
        w = np.empty((3, 4), dtype=np.float32)
        filled: F32 = reader.read_tensor("w", w)
        assert filled is w and w[2, 3] == 11.0

        # Without a destination: a new array of the stored dtype (here a box of two rows).
        rows = reader.read_tensor("w", offsets=(1, 0), sizes=(2, 4))
        assert rows.shape == (2, 4)

        # reader["w"] reads nothing until indexed; then only the box the index touches.
        lazy = reader["w"]
        assert isinstance(lazy, shardpoint.TensorSlice)  # (a blob entry would be bytes)
        assert lazy[1:3, 2].tolist() == [6.0, 10.0]
        assert lazy.shape == (3, 4) and lazy.dtype.numpy_dtype == np.float32

        # Many tensors in one batched load, into arrays we own.
        into: dict[str, F32] = {"w": np.zeros((3, 4), np.float32), "b": np.zeros(4, np.float32)}
        with reader.load() as batch:
            batch.add_tensors(into)
            batch.execute()
        assert into["b"].sum() == 4.0


def save_sharded(path: Path) -> None:
    """Two ranks (threads of this process) each save one half of "x"."""

    def rank_work(rank: int, comm: shardpoint.Comm) -> int:
        half = np.full((2, 3), rank, dtype=np.int64)
        with shardpoint.Save(path, comm) as save:
            save.add_tensor("x", half, offsets=(2 * rank, 0), global_shape=(4, 3))
        return rank

    ranks: list[int] = shardpoint.LocalGroup(2).run(rank_work)
    assert ranks == [0, 1]
    with shardpoint.Reader(path) as reader:
        x = reader.read_tensor("x")
        assert x[:, 0].tolist() == [0, 0, 1, 1]
        assert [c.writer_rank for c in reader.chunks("x")] == [0, 1]


def nested_state(path: Path) -> None:
    state: TrainState = {
        "model": {"w": np.arange(6, dtype=np.float32).reshape(2, 3), "b": np.zeros(3, np.float32)},
        "epoch": 3,
        "note": "warm-up",
    }
    shardpoint.save(path, state)

    # Into a state of the same shape: its arrays are filled in place, and it keeps its type.
    target: TrainState = {
        "model": {"w": np.empty((2, 3), np.float32), "b": np.empty(3, np.float32)},
        "epoch": 0,
        "note": "",
    }
    loaded = shardpoint.load(path, into=target)
    assert loaded is target and loaded["epoch"] == 3 and loaded["note"] == "warm-up"
    assert loaded["model"]["w"][1, 2] == 5.0

    # Without `into`, the result is shaped as the checkpoint (typed Any).
    fresh = shardpoint.load(path)
    assert fresh["model"]["b"].shape == (3,)


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        save_arrays(root / "arrays")
        read_arrays(root / "arrays")
        save_sharded(root / "sharded")
        nested_state(root / "state")
    print("typed_example: ok")


if __name__ == "__main__":
    main()
