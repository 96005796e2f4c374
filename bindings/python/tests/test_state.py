"""Nested training states through save() and load(): the tree and its plain values come back
exactly, arrays load in place into an existing state, and nothing is pickled."""

import json
import math

import numpy as np
import pytest

import shardpoint as sp
from shardpoint import state as st


def training_state(rng):
    return {
        "model": {"embed.weight": rng.standard_normal((8, 4)).astype(np.float32),
                  "layers": [{"w": rng.standard_normal((4, 4)).astype(np.float32)} for _ in range(3)]},
        "optim": {"state": {0: {"step": 10, "exp_avg": np.zeros(4, np.float32)},
                            1: {"step": 11, "exp_avg": np.ones(4, np.float32)}},
                  "param_groups": [{"lr": 1e-3, "betas": (0.9, 0.999), "params": [0, 1], "name": None}]},
        "epoch": 3, "big": 2 ** 80, "loss": float("nan"), "best": float("-inf"), "done": False,
        "note": "warm-up ünicode", "rng": b"\x00\x01state", "scale": np.float32(0.5), "count": np.int64(7),
    }


def assert_same(a, b, path="state"):
    assert type(a) is type(b), f"{path}: {type(a).__name__} vs {type(b).__name__}"
    if isinstance(a, dict):
        assert list(a) == list(b), path
        for k in a:
            assert_same(a[k], b[k], f"{path}[{k!r}]")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{path}[{i}]")
    elif isinstance(a, np.ndarray):
        assert a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes(), path
    elif isinstance(a, float) and math.isnan(a):
        assert math.isnan(b), path
    else:
        assert a == b, path


def test_a_nested_state_round_trips_exactly(tmp_path, rng):
    state = training_state(rng)
    sp.save(tmp_path / "ckpt", state, metadata={"step": "100"})
    back = sp.load(tmp_path / "ckpt")
    assert_same(state, back)
    assert isinstance(back["scale"], np.float32) and isinstance(back["count"], np.int64)


def test_the_checkpoint_holds_readable_entries_and_no_pickle(tmp_path, rng):
    state = training_state(rng)
    sp.save(tmp_path / "ckpt", state)
    with sp.Reader(tmp_path / "ckpt") as r:
        names = set(r.keys())
        assert {"model.embed%2Eweight", "model.layers.0.w", "optim.state.0.exp_avg", "rng", "scale"} <= names
        assert "epoch" not in names  # plain values live in the tree, not as entries
        tree = json.loads(r.metadata[st.TREE_KEY])
        assert r.metadata == {st.TREE_KEY: r.metadata[st.TREE_KEY]}
    text = json.dumps(tree)
    assert "pickle" not in text and '"int": "1208925819614629174706176"' in text


def test_load_into_an_existing_state_fills_its_arrays_in_place(tmp_path, rng):
    state = training_state(rng)
    sp.save(tmp_path / "ckpt", state)
    live = training_state(np.random.default_rng(99))  # same shapes, other values
    live["epoch"] = 0
    arrays = [live["model"]["embed.weight"], live["model"]["layers"][2]["w"], live["optim"]["state"][1]["exp_avg"]]
    result = sp.load(tmp_path / "ckpt", into=live)
    assert result is live
    assert live["model"]["embed.weight"] is arrays[0] and live["model"]["layers"][2]["w"] is arrays[1]
    assert live["optim"]["state"][1]["exp_avg"] is arrays[2]
    assert_same(state, live)


def test_load_into_a_state_with_a_wrong_array_is_a_clear_error(tmp_path, rng):
    state = training_state(rng)
    sp.save(tmp_path / "ckpt", state)
    live = training_state(rng)
    live["model"]["layers"][0]["w"] = np.zeros((4, 5), np.float32)
    with pytest.raises(sp.ShapeError):
        sp.load(tmp_path / "ckpt", into=live)
    live["model"]["layers"][0]["w"] = np.zeros((4, 4), np.float64)
    with pytest.raises(sp.DtypeError):
        sp.load(tmp_path / "ckpt", into=live)


def test_flat_dicts_are_saved_as_before(tmp_path):
    flat = {"w": np.arange(3.0), "blob": b"xy"}
    sp.save(tmp_path / "flat", flat)
    with sp.Reader(tmp_path / "flat") as r:
        assert st.TREE_KEY not in r.metadata and sorted(r.keys()) == ["blob", "w"]
    back = sp.load(tmp_path / "flat")
    assert back["blob"] == b"xy" and np.array_equal(back["w"], flat["w"])
    out = np.zeros(3)
    assert sp.load(tmp_path / "flat", into={"w": out, "blob": None})["w"] is out and out[2] == 2.0


def test_states_that_cannot_be_stored_are_refused(tmp_path):
    with pytest.raises(ValueError, match="map to the entry '1'"):
        sp.save(tmp_path / "a", {1: np.zeros(1), "1": np.zeros(1)})
    with pytest.raises(TypeError, match="keys must be str or int"):
        sp.save(tmp_path / "b", {(1, 2): np.zeros(1)})
    with pytest.raises(ValueError, match="the saved state's own"):
        sp.save(tmp_path / "c", {"a": {"b": 1}}, metadata={st.TREE_KEY: "mine"})
    for refused in ("a", "b", "c"):  # refused before anything was written
        assert not (tmp_path / refused / "shardpoint.meta").exists()
