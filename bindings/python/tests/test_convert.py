"""Conversion to and from safetensors, checked against the real `safetensors` package (installed by
run-tests.sh): files it writes load bit for bit, files shardpoint writes load in it bit for bit,
single files and the Hugging Face sharded layout, both ways."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import safetensors
from safetensors.numpy import load_file, save_file

import shardpoint as sp


def random_bits(rng: np.random.Generator, shape: tuple[int, ...], dtype: type | np.dtype) -> np.ndarray:
    """Any bit pattern (NaN payloads, negative zeros, subnormals): bit-exactness, not values."""
    dt = np.dtype(dtype)
    if dt == np.bool_:
        return rng.integers(0, 2, size=shape).astype(np.bool_)
    raw = rng.integers(0, 256, size=int(np.prod(shape)) * dt.itemsize, dtype=np.uint8)
    return raw.view(dt).reshape(shape)


NUMPY_DTYPES = [np.float64, np.float32, np.float16, np.int64, np.int32, np.int16, np.int8, np.uint8,
                np.uint64, np.uint32, np.uint16, np.bool_, np.complex64]


def numpy_model(rng: np.random.Generator) -> dict[str, np.ndarray]:
    tensors = {f"t.{np.dtype(d).name}": random_bits(rng, (3, 5), d) for d in NUMPY_DTYPES}
    tensors["t.scalar"] = random_bits(rng, (), np.float32)
    tensors["t.empty"] = np.zeros((0, 4), np.float16)
    tensors["t.big"] = random_bits(rng, (300, 257), np.float32)  # larger than the small buffer below
    return tensors


def same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    return a.shape == b.shape and a.dtype == b.dtype and a.tobytes() == b.tobytes()


def test_files_of_the_safetensors_package_convert_bit_exact(tmp_path, rng):
    tensors = numpy_model(rng)
    path = tmp_path / "m.safetensors"
    save_file(tensors, str(path), metadata={"format": "pt", "step": "12"})
    ckpt = tmp_path / "ckpt"
    reports: list[sp.Progress] = []
    sp.convert_from_safetensors(path, ckpt, buffer_size="64KiB", progress=reports.append)
    assert reports[0].done == 0 and reports[-1].done == reports[-1].total == sum(t.nbytes for t in tensors.values())
    assert {r.phase for r in reports} == {"convert"}
    loaded = sp.load(ckpt)
    assert loaded.keys() == tensors.keys()
    for name, want in tensors.items():
        assert same_bits(loaded[name], want), name
    with sp.Reader(ckpt) as reader:
        assert reader.get_metadata("format") == "pt" and reader.get_metadata("step") == "12"
        assert reader.entry("t.big").chunk_count > 1  # saved in pieces of at most the buffer

    # And back out: the package reads shardpoint's file, the same values and metadata.
    again = tmp_path / "again.safetensors"
    sp.convert_to_safetensors(ckpt, again)
    back = load_file(str(again))
    for name, want in tensors.items():
        assert same_bits(back[name], want), name
    with safetensors.safe_open(str(again), framework="numpy") as f:
        assert f.metadata() == {"format": "pt", "step": "12"}


def test_bf16_and_f8_both_ways(tmp_path, rng):
    """numpy has no bf16 or f8: the package's raw serialize/deserialize carry their bytes."""
    raw = {
        "w.bf16": ("bfloat16", "BF16", random_bits(rng, (4, 6), np.uint16)),
        "w.f8e4m3": ("float8_e4m3fn", "F8_E4M3", random_bits(rng, (5, 3), np.uint8)),
        "w.f8e5m2": ("float8_e5m2", "F8_E5M2", random_bits(rng, (7,), np.uint8)),
    }
    specs = {name: safetensors.TensorSpec(dtype=dt, shape=list(a.shape), data_ptr=a.ctypes.data, data_len=a.nbytes)
             for name, (dt, _, a) in raw.items()}
    path = tmp_path / "raw.safetensors"
    path.write_bytes(safetensors.serialize(specs))
    ckpt = tmp_path / "ckpt"
    sp.convert_from_safetensors(path, ckpt)
    with sp.Reader(ckpt) as reader:
        for name, (_, _, a) in raw.items():
            assert reader.entry(name).dtype == {"w.bf16": sp.DType.BF16, "w.f8e4m3": sp.DType.F8_E4M3FN,
                                                "w.f8e5m2": sp.DType.F8_E5M2}[name]
            assert reader.read_tensor(name).tobytes() == a.tobytes(), name

    # shardpoint -> safetensors: the package's parser sees the same dtypes, shapes and bytes.
    with sp.Save(tmp_path / "ckpt2") as save:
        for name, (_, st_name, a) in raw.items():
            save.add_tensor(name, a, dtype={"BF16": "bf16", "F8_E4M3": "f8_e4m3fn", "F8_E5M2": "f8_e5m2"}[st_name])
    out = tmp_path / "out.safetensors"
    sp.convert_to_safetensors(tmp_path / "ckpt2", out)
    parsed = dict(safetensors.deserialize(out.read_bytes()))
    for name, (_, st_name, a) in raw.items():
        assert parsed[name]["dtype"] == st_name and list(parsed[name]["shape"]) == list(a.shape)
        assert bytes(parsed[name]["data"]) == a.tobytes(), name


def test_sharded_checkpoint_converts_whole(tmp_path, rng):
    full = random_bits(rng, (9, 6), np.float32)
    with sp.Save(tmp_path / "ckpt") as save:
        for rows in ((0, 4), (4, 9)):  # two chunks of rows
            for cols in ((0, 3), (3, 6)):  # each in two chunks of columns
                block = np.ascontiguousarray(full[rows[0]:rows[1], cols[0]:cols[1]])
                save.add_tensor("w", block, offsets=(rows[0], cols[0]), global_shape=full.shape)
    out = tmp_path / "w.safetensors"
    sp.convert_to_safetensors(tmp_path / "ckpt", out)
    assert same_bits(load_file(str(out))["w"], full)


def test_partial_checkpoint_refused(tmp_path):
    with sp.Save(tmp_path / "ckpt", allow_partial=True) as save:
        save.add_tensor("half", np.ones((2, 4), np.float32), offsets=(0, 0), global_shape=(4, 4))
    with pytest.raises(sp.UncoveredError, match="'half'"):
        sp.convert_to_safetensors(tmp_path / "ckpt", tmp_path / "x.safetensors")
    assert not (tmp_path / "x.safetensors").exists()


def test_hf_sharded_layout_by_hand_and_back(tmp_path, rng):
    tensors = {f"model.layers.{i}.w": random_bits(rng, (32, 16), np.float32) for i in range(5)}
    tensors["model.norm"] = random_bits(rng, (16,), np.float16)
    hf = tmp_path / "hf"
    hf.mkdir()
    # Written as transformers writes one: shards by the package, the index by hand.
    groups = [["model.layers.0.w", "model.layers.1.w"], ["model.layers.2.w", "model.layers.3.w"],
              ["model.layers.4.w", "model.norm"]]
    weight_map = {}
    for k, names in enumerate(groups, 1):
        file = f"model-{k:05d}-of-{len(groups):05d}.safetensors"
        save_file({n: tensors[n] for n in names}, str(hf / file), metadata={"format": "pt"})
        weight_map.update({n: file for n in names})
    index = {"metadata": {"total_size": sum(t.nbytes for t in tensors.values())}, "weight_map": weight_map}
    (hf / "model.safetensors.index.json").write_text(json.dumps(index, indent=2))

    for source in (hf, hf / "model.safetensors.index.json"):
        ckpt = tmp_path / "ckpt"
        sp.convert_from_safetensors(source, ckpt, overwrite=True, compression="zstd")
        loaded = sp.load(ckpt)
        assert loaded.keys() == tensors.keys()
        assert all(same_bits(loaded[n], tensors[n]) for n in tensors)

    # Out again as a sharded model of at most 5000 tensor bytes per file.
    out = tmp_path / "out"
    sp.convert_to_safetensors(ckpt, out, max_shard_size="5KB")
    written = json.loads((out / "model.safetensors.index.json").read_text())
    assert written["metadata"]["total_size"] == index["metadata"]["total_size"]
    assert written["weight_map"].keys() == tensors.keys()
    files = sorted(set(written["weight_map"].values()))
    assert files == sorted(n for n in os.listdir(out) if n.endswith(".safetensors")) and len(files) == 3
    seen: dict[str, np.ndarray] = {}
    for file in files:
        part = load_file(str(out / file))
        assert sum(t.nbytes for t in part.values()) <= 5000
        assert all(written["weight_map"][n] == file for n in part)
        seen.update(part)
    assert all(same_bits(seen[n], tensors[n]) for n in tensors)


def test_errors_name_the_tensor_and_leave_nothing(tmp_path, rng):
    path = tmp_path / "m.safetensors"
    save_file({"a": random_bits(rng, (64,), np.float32), "b": random_bits(rng, (64,), np.float32)}, str(path))
    data = path.read_bytes()
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(data[:-10])
    ckpt = tmp_path / "ckpt"
    with pytest.raises(sp.FormatError, match="truncated"):
        sp.convert_from_safetensors(truncated, ckpt)
    assert not ckpt.exists()

    e8m0 = np.zeros(4, np.uint8)
    odd = tmp_path / "e8m0.safetensors"
    odd.write_bytes(safetensors.serialize({"scales": safetensors.TensorSpec(
        dtype="float8_e8m0fnu", shape=[4], data_ptr=e8m0.ctypes.data, data_len=4)}))
    with pytest.raises(sp.DtypeError, match="'scales'"):
        sp.convert_from_safetensors(odd, ckpt)
    assert not ckpt.exists()

    with sp.Save(tmp_path / "blobs") as save:
        save.add_tensor("w", np.arange(3.0))
        save.add_bytes("rng", b"state")
    out = tmp_path / "out.safetensors"
    with pytest.raises(sp.KindError, match="'rng'"):
        sp.convert_to_safetensors(tmp_path / "blobs", out)
    assert not out.exists()
    sp.convert_to_safetensors(tmp_path / "blobs", out, skip_bytes=True)
    assert list(load_file(str(out))) == ["w"]
    with pytest.raises(sp.ExistsError):
        sp.convert_to_safetensors(tmp_path / "blobs", out, skip_bytes=True)


def test_progress_cancels(tmp_path, rng):
    with sp.Save(tmp_path / "ckpt") as save:
        save.add_tensor("w", random_bits(rng, (1024, 64), np.float32))
    out = tmp_path / "out.safetensors"
    with pytest.raises(sp.CanceledError):
        sp.convert_to_safetensors(tmp_path / "ckpt", out, progress=lambda p: False)
    assert sorted(os.listdir(tmp_path)) == ["ckpt"]

    class Stop(Exception):
        pass

    def raising(p: sp.Progress) -> None:
        raise Stop

    with pytest.raises(Stop):  # the callable's exception, once the library has stopped
        sp.convert_to_safetensors(tmp_path / "ckpt", tmp_path / "hf", max_shard_size=1000, progress=raising)
    assert sorted(os.listdir(tmp_path)) == ["ckpt"]
    save_file({"w": np.ones(8, np.float32)}, str(out))
    with pytest.raises(sp.CanceledError):
        sp.convert_from_safetensors(out, tmp_path / "new", progress=lambda p: p.done < p.total)
    assert not (tmp_path / "new").exists()


def test_size_arguments():
    with pytest.raises(ValueError):
        sp.convert_to_safetensors("nowhere", "x", max_shard_size=0)
    with pytest.raises(TypeError):
        sp.convert_to_safetensors("nowhere", "x", max_shard_size=1.5)  # type: ignore[arg-type]
    with pytest.raises(sp.InvalidArgumentError, match="not a size"):
        sp.convert_to_safetensors("nowhere", "x", max_shard_size="5 parsecs")
    with pytest.raises(sp.NotFoundError):
        sp.convert_to_safetensors("nowhere", "x", max_shard_size="5GB")
