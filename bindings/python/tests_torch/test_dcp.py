"""shardpoint.torch in one process: dcp.save / dcp.load / dcp.async_save round trips, exact values."""

import json
import weakref
import warnings

import numpy as np
import pytest
import torch
import torch.distributed.checkpoint as dcp

import shardpoint as sp
from shardpoint.torch import FRAMEWORK_KEY, StorageReader, StorageWriter

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def raises(text, fn, *args, **kwargs):
    """fn fails with `text` in its message (DCP wraps each rank's exception in CheckpointException)."""
    try:
        fn(*args, **kwargs)
    except BaseException as e:  # CheckpointException is a BaseException
        message = str(e) + " ".join(str(failure) for failure in getattr(e, "failures", {}).values())
        assert text in message, message
        return e
    raise AssertionError(f"no exception (expected one with {text!r})")


def model_and_optimizer(seed):
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
    optim = torch.optim.Adam(model.parameters(), lr=0.01)
    model(torch.randn(5, 4)).sum().backward()
    optim.step()
    return model, optim


def bits(t):
    """A tensor's bytes (bit-exact comparison in every dtype, even those torch.equal lacks)."""
    return t.detach().resolve_conj().contiguous().reshape(-1).view(torch.uint8)


def assert_same(a, b, path="state"):
    """Exact equality of nested state dicts (tensors bit for bit, dtypes included)."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and a.shape == b.shape, path
        assert torch.equal(bits(a), bits(b)), path
    elif isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), (path, a.keys(), b.keys())
        for k in a:
            assert_same(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, (list, tuple)):
        assert type(a) is type(b) and len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{path}[{i}]")
    else:
        assert a == b, (path, a, b)


def zeros_like_state(sd):
    if isinstance(sd, torch.Tensor):
        return torch.zeros_like(sd)
    if isinstance(sd, dict):
        return {k: zeros_like_state(v) for k, v in sd.items()}
    if isinstance(sd, list):
        return [zeros_like_state(v) for v in sd]
    return None


def test_model_and_optimizer_round_trip(tmp_path):
    model, optim = model_and_optimizer(0)
    saved = {"model": model.state_dict(), "optim": optim.state_dict(),
             "extra": {"epoch": 3, "name": "run-7", "blob": b"\x00\x01\xff", "nested": {"lr": [0.1, 0.2]},
                       "list": [torch.arange(3), torch.ones(2, 2)]}}
    dcp.save(saved, storage_writer=StorageWriter(tmp_path / "ckpt"))

    model2, optim2 = model_and_optimizer(1)  # other values, same structure
    loaded = {"model": model2.state_dict(), "optim": optim2.state_dict(),
              "extra": {"epoch": 0, "name": "", "blob": b"", "nested": {"lr": []},
                        "list": [torch.zeros(3, dtype=torch.int64), torch.zeros(2, 2)]}}
    dcp.load(loaded, storage_reader=StorageReader(tmp_path / "ckpt"))
    assert_same(saved, loaded)
    # The loaded optimizer state is usable.
    optim2.load_state_dict(loaded["optim"])
    model2.load_state_dict(loaded["model"])
    for p, q in zip(model.parameters(), model2.parameters()):
        assert torch.equal(p, q)

    # What shardpoint stored: raw tensors, DCP's non-tensor values as bytes entries, the JSON document.
    with sp.Reader(tmp_path / "ckpt") as reader:
        reader.verify()
        w = reader.read_tensor("model.0.weight")
        assert np.array_equal(w, saved["model"]["0.weight"].numpy())
        assert not reader.entry("extra.epoch").is_tensor
        doc = json.loads(reader.framework_metadata(FRAMEWORK_KEY))
        planner_data = json.loads(reader.framework_metadata("torch.dcp.planner_data"))
        tensors = json.loads(reader.framework_metadata("torch.dcp.tensors"))
        blobs = json.loads(reader.framework_metadata("torch.dcp.bytes"))
        assert reader.metadata == {}  # nothing in the user metadata
    assert doc["format"] == "shardpoint.torch.dcp" and doc["version"] == 2 and doc["planner_data"] is True
    # DCP's flattening map keeps list indices as ints and dict keys as str: the tags keep them apart.
    assert planner_data["optim.state.0.exp_avg"] == [["s", "optim"], ["s", "state"], ["s", "0"], ["s", "exp_avg"]]
    assert planner_data["extra.list.1"] == [["s", "extra"], ["s", "list"], ["i", 1]]
    assert list(planner_data)[0].startswith("model.")  # the state dict's order
    # Only properties that differ from DCP's defaults are stored (none here: detached, contiguous).
    assert tensors == {}
    assert "extra.epoch" in blobs and "model.0.weight" not in blobs
    assert doc["storage_meta"]["checkpoint_id"] == str(tmp_path / "ckpt")


def test_metadata_rebuilt(tmp_path):
    _, optim = model_and_optimizer(0)
    sd = {"optim": optim.state_dict(), "t": torch.ones(3, 2, dtype=torch.float16, requires_grad=False)}
    dcp.save(sd, storage_writer=StorageWriter(tmp_path / "c"))
    md = StorageReader(tmp_path / "c").read_metadata()
    t = md.state_dict_metadata["t"]
    assert t.size == torch.Size([3, 2]) and t.properties.dtype == torch.float16
    assert [(tuple(c.offsets), tuple(c.sizes)) for c in t.chunks] == [((0, 0), (3, 2))]
    assert md.planner_data["optim.state.0.step"] == ("optim", "state", "0", "step")
    assert md.planner_data["optim.param_groups.0.lr"] == ("optim", "param_groups", 0, "lr")
    assert type(md.state_dict_metadata["optim.param_groups.0.lr"]).__name__ == "BytesStorageMetadata"
    assert md.storage_meta.checkpoint_id == str(tmp_path / "c") and md.storage_meta.load_id
    import copy
    assert copy.deepcopy(md).storage_data is md.storage_data
    # DCP's own planner rebuilds the nested state dict from this metadata alone (as dcp_to_torch_save).
    from torch.distributed.checkpoint.default_planner import _EmptyStateDictLoadPlanner
    from torch.distributed.checkpoint.state_dict_loader import _load_state_dict
    rebuilt = {}
    _load_state_dict(rebuilt, storage_reader=StorageReader(tmp_path / "c"), planner=_EmptyStateDictLoadPlanner(),
                     no_dist=True)
    # (DCP's flattening map keeps dict keys as str: optimizer state comes back keyed "0", "1", ...)
    assert_same({str(k): v for k, v in sd["optim"]["state"].items()}, rebuilt["optim"]["state"])
    assert torch.equal(rebuilt["t"], sd["t"])


def test_metadata_is_lazy_ordered_and_editable(tmp_path):
    sd = {"z": torch.arange(6.0).reshape(2, 3), "a": {"w": torch.ones(4, requires_grad=True)}, "m": torch.zeros(2)}
    sd["a"]["w"] = sd["a"]["w"].detach().requires_grad_(True)  # a non-default property, recorded
    dcp.save(sd, storage_writer=StorageWriter(tmp_path / "c"))
    md = StorageReader(tmp_path / "c").read_metadata()
    entries = md.state_dict_metadata
    assert entries._built == {}  # read_metadata built no entry
    assert "a.w" in entries and "nope" not in entries and len(entries) == 3
    assert list(entries) == ["z", "a.w", "m"]  # the state dict's order, not fqn order
    assert entries["a.w"].properties.requires_grad is True and entries["z"].properties.requires_grad is False
    assert entries["z"].properties.strides == (3, 1)  # as DCP records them, though not stored
    assert set(entries._built) == {"a.w", "z"}  # only what was asked for
    assert md.planner_data["a.w"] == ("a", "w") and list(md.planner_data) == ["z", "a.w", "m"]
    raises("nope", lambda: entries["nope"])
    import copy
    import pickle
    assert copy.deepcopy(md).state_dict_metadata is entries  # a view of the open reader, shared
    raises("not picklable", pickle.dumps, md)  # every rank reads the metadata itself
    # Planners may edit the metadata: the mapping behaves as a dict.
    del entries["m"]
    assert "m" not in entries and list(entries) == ["z", "a.w"]
    entries["extra"] = entries["z"]
    assert list(entries) == ["z", "a.w", "extra"] and dict(entries)["extra"] is entries["z"]
    # Closing the reader keeps a Metadata still in use whole (its entries are built first).
    with StorageReader(tmp_path / "c") as reader:
        kept = reader.read_metadata()
        kept.state_dict_metadata["z"]
    assert list(kept.state_dict_metadata) == ["z", "a.w", "m"] and kept.state_dict_metadata["m"].size == (2,)
    assert kept.planner_data["m"] == ("m",)
    # A partial load reads only the entries asked for.
    target = {"z": torch.zeros(2, 3)}
    dcp.load(target, storage_reader=StorageReader(tmp_path / "c"))
    assert torch.equal(target["z"], sd["z"])


def test_version_1_document_is_still_read(tmp_path):
    """Checkpoints written by shardpoint.torch's first document version (everything in "torch.dcp")."""
    w = sp.Writer(tmp_path / "v1")
    w.set_up(0, 1)
    w.add_tensor("s.t", np.arange(4, dtype=np.float32))
    w.add_bytes("s.n", b"raw")
    w.global_plan([w.local_plan()])
    final = w.final_plan(0)
    results = w.write(final)
    w.set_framework_metadata(FRAMEWORK_KEY, json.dumps({
        "format": "shardpoint.torch.dcp", "version": 1, "dcp_version": "1.0.0",
        "planner_data": {"s.t": [["s", "s"], ["s", "t"]], "s.n": [["s", "s"], ["s", "n"]]},
        "tensors": {"s.t": {"dtype": "float32", "layout": "strided", "requires_grad": True,
                            "memory_format": "contiguous_format", "pin_memory": False, "strides": None}},
        "bytes": [], "storage_meta": None}))
    w.finish([results])
    w.close()
    md = StorageReader(tmp_path / "v1").read_metadata()
    assert md.state_dict_metadata["s.t"].properties.requires_grad is True
    assert md.planner_data["s.t"] == ("s", "t") and md.version == "1.0.0"
    target = {"s": {"t": torch.zeros(4), "n": None}}
    dcp.load(target, storage_reader=StorageReader(tmp_path / "v1"))
    assert torch.equal(target["s"]["t"], torch.arange(4.0)) and target["s"]["n"] == b"raw"  # a raw blob


DTYPES = [torch.bool, torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64, torch.uint16, torch.uint32,
          torch.uint64, torch.float16, torch.bfloat16, torch.float32, torch.float64, torch.complex64, torch.complex128,
          torch.float8_e4m3fn, torch.float8_e5m2]


def sample(dtype, shape, seed):
    g = torch.Generator().manual_seed(seed)
    raw = torch.randint(0, 256, (int(np.prod(shape)) * torch.empty((), dtype=dtype).element_size(),),
                        dtype=torch.uint8, generator=g)
    if dtype == torch.bool:
        return (raw % 2).bool().reshape(shape)
    if dtype.is_floating_point or dtype.is_complex:
        # Finite values only (NaN != NaN would make equality meaningless).
        values = torch.randn(shape, generator=g, dtype=torch.float64) * 4
        return (values + 1j * values).to(dtype) if dtype.is_complex else values.to(dtype)
    return raw.view(dtype).reshape(shape)


def test_every_dtype_strides_scalars_and_empty(tmp_path):
    sd = {}
    for i, dtype in enumerate(DTYPES):
        name = str(dtype).removeprefix("torch.")
        sd[f"plain.{name}"] = sample(dtype, (5, 7), i)
        sd[f"view.{name}"] = sample(dtype, (6, 4), 100 + i).t()[1:, ::2]  # strided view, no copy made
        sd[f"scalar.{name}"] = sample(dtype, (), 200 + i)
    sd["empty"] = torch.empty(0, 4)
    sd["conj"] = sample(torch.complex64, (3, 3), 7).conj()  # a lazy conjugate view
    dcp.save(sd, storage_writer=StorageWriter(tmp_path / "d"))
    loaded = {k: torch.zeros_like(v.resolve_conj()) for k, v in sd.items()}
    dcp.load(loaded, storage_reader=StorageReader(tmp_path / "d"))
    assert_same({k: v.resolve_conj() for k, v in sd.items()}, loaded)
    with sp.Reader(tmp_path / "d") as reader:
        assert str(reader.entry("plain.bfloat16").dtype) == "bf16"
        assert str(reader.entry("plain.float8_e5m2").dtype) == "f8_e5m2"
        raw = reader.read_tensor("view.bfloat16")
        assert np.array_equal(raw, sd["view.bfloat16"].contiguous().view(torch.uint16).numpy())
        assert np.array_equal(reader.read_tensor("conj"), sd["conj"].resolve_conj().numpy())


@pytest.mark.parametrize("codec", ["zstd", "zlib"])
def test_block_compression_through_dcp(tmp_path, codec):
    sd = {f"w.{i}": torch.randn(200, 300, dtype=dtype) * 0.02
          for i, dtype in enumerate([torch.float32, torch.bfloat16, torch.float16])}
    sd["view"] = sd["w.0"].t()[10:, ::3]  # strided source
    dcp.save(sd, storage_writer=StorageWriter(tmp_path / "d", compression=codec, shuffle=True))
    with sp.Reader(tmp_path / "d") as reader:
        assert reader.storage_info.format_major == 2
        chunk = reader.chunks("w.1")[0]
        assert chunk.transform in (sp.Transform.ZSTD_BLOCKS, sp.Transform.ZLIB_BLOCKS) and chunk.shuffle_width == 2
        assert chunk.stored_length < chunk.raw_length
    loaded = {k: torch.zeros_like(v) for k, v in sd.items()}
    dcp.load(loaded, storage_reader=StorageReader(tmp_path / "d"))
    assert_same(sd, loaded)


def test_unsupported_dtype_is_a_clear_error(tmp_path):
    raises("cannot store torch dtype torch.complex32 ('x')", dcp.save, {"x": torch.zeros(2, dtype=torch.complex32)},
           storage_writer=StorageWriter(tmp_path / "u"))
    assert not (tmp_path / "u" / "shardpoint.meta").exists()


def test_partial_load_and_dtype_cast(tmp_path):
    sd = {"a": torch.arange(12, dtype=torch.bfloat16).reshape(3, 4) / 4, "b": torch.arange(5), "c": {"d": 7}}
    dcp.save(sd, storage_writer=StorageWriter(tmp_path / "p"))
    # A subset of the keys, the bf16 tensor loaded into float32 (DCP casts) and into a strided view.
    target = torch.zeros(4, 3).t()
    loaded = {"a": target}
    dcp.load(loaded, storage_reader=StorageReader(tmp_path / "p"))
    assert loaded["a"] is target and target.dtype == torch.float32
    assert torch.equal(target, sd["a"].float())
    # A key the checkpoint lacks: an error, unless the planner allows partial loads.
    raises("Missing key", dcp.load, {"b": torch.zeros(5, dtype=torch.int64), "zzz": torch.zeros(1)},
           storage_reader=StorageReader(tmp_path / "p"))
    from torch.distributed.checkpoint import DefaultLoadPlanner
    partial = {"b": torch.zeros(5, dtype=torch.int64), "zzz": torch.zeros(1)}
    dcp.load(partial, storage_reader=StorageReader(tmp_path / "p"),
             planner=DefaultLoadPlanner(allow_partial_load=True))
    assert torch.equal(partial["b"], sd["b"]) and torch.equal(partial["zzz"], torch.zeros(1))


def test_small_temporary_budget_runs_several_loads(tmp_path):
    sd = {f"t{i}": torch.arange(1000, dtype=torch.float16) + i for i in range(6)}
    dcp.save(sd, storage_writer=StorageWriter(tmp_path / "b"))
    loaded = {k: torch.zeros(1000, dtype=torch.float64) for k in sd}
    dcp.load(loaded, storage_reader=StorageReader(tmp_path / "b", temporary_bytes=3000))
    for k in sd:
        assert torch.equal(loaded[k], sd[k].double())


def test_async_save_and_checkpoint_id(tmp_path):
    writer = StorageWriter()
    sd = {"w": torch.randn(64, 32), "meta": {"step": 11}}
    future = dcp.async_save(sd, checkpoint_id=tmp_path / "a1", storage_writer=writer)
    future.result()
    sd2 = {"w": sd["w"] * 2, "meta": {"step": 12}}
    dcp.save(sd2, checkpoint_id=tmp_path / "a2", storage_writer=writer)
    for path, expected in ((tmp_path / "a1", sd), (tmp_path / "a2", sd2)):
        loaded = {"w": torch.zeros(64, 32), "meta": {"step": 0}}
        reader = StorageReader()
        dcp.load(loaded, checkpoint_id=path, storage_reader=reader)
        assert_same(expected, loaded)
        reader.close()


def test_overwrite_keeps_one_checkpoint(tmp_path):
    writer = StorageWriter(tmp_path / "o")
    dcp.save({"x": torch.ones(3)}, storage_writer=writer)
    dcp.save({"x": torch.full((3,), 2.0)}, storage_writer=writer)
    loaded = {"x": torch.zeros(3)}
    dcp.load(loaded, storage_reader=StorageReader(tmp_path / "o"))
    assert torch.equal(loaded["x"], torch.full((3,), 2.0))
    files = sorted(p.name for p in (tmp_path / "o").iterdir())
    assert len(files) == 2 and files[-1] == "shardpoint.meta", files
    raises("SHARDPOINT_EEXISTS", dcp.save, {"x": torch.ones(3)},
           storage_writer=StorageWriter(tmp_path / "o", overwrite=False))


def test_damaged_checkpoint_fails_the_load(tmp_path):
    dcp.save({"x": torch.arange(4096.0)}, storage_writer=StorageWriter(tmp_path / "k"))
    with sp.Reader(tmp_path / "k") as reader:
        (chunk,) = reader.chunks("x")
    with open(tmp_path / "k" / chunk.file, "r+b") as f:
        f.seek(chunk.file_offset + 10)
        byte = f.read(1)
        f.seek(chunk.file_offset + 10)
        f.write(bytes([byte[0] ^ 0xFF]))
    raises("SHARDPOINT_ECHECKSUM", dcp.load, {"x": torch.zeros(4096)}, storage_reader=StorageReader(tmp_path / "k"))


def test_cpu_tensors_are_written_from_their_own_memory(tmp_path, monkeypatch):
    bound = []
    original = sp.Writer.bind_tensor

    def spy(self, item, data):
        bound.append(data.ptr)
        return original(self, item, data)

    monkeypatch.setattr(sp.Writer, "bind_tensor", spy)
    base = torch.randn(16, 16)
    sd = {"a": torch.randn(8, 8), "view": base.t()[2:], "half": torch.ones(5, dtype=torch.bfloat16)}
    dcp.save(sd, storage_writer=StorageWriter(tmp_path / "m"))
    assert sorted(bound) == sorted(t.data_ptr() for t in sd.values())


def test_staging_bytes_bounds_what_write_data_holds(tmp_path):
    """A planner that materializes every tensor when asked (as GPU staging or a conversion
    does): with staging_bytes, write_data writes and drops batches as it goes, so only about a
    batch of those tensors is alive at once; with no bound, all of them are at the end."""
    from torch.distributed.checkpoint import DefaultSavePlanner

    class Materializing(DefaultSavePlanner):
        def __init__(self):
            super().__init__()
            self.alive = 0
            self.most = 0

        def _freed(self):
            self.alive -= 1

        def resolve_data(self, write_item):
            # A tensor over a numpy array: the array lives exactly as long as the tensor's memory
            # (views and detached tensors included), which the finalizer then counts.
            memory = super().resolve_data(write_item).numpy().copy()
            weakref.finalize(memory, self._freed)
            self.alive += 1
            self.most = max(self.most, self.alive)
            return torch.from_numpy(memory)

    state = {f"t{i}": torch.full((256, 1024), float(i)) for i in range(16)}  # 1 MiB each
    for staging, expect_most in ((2 << 20, 2), (0, 16)):
        planner = Materializing()
        path = tmp_path / f"staging-{staging}"
        dcp.save(state, storage_writer=StorageWriter(path, staging_bytes=staging), planner=planner)
        assert planner.most == expect_most
        loaded = {k: torch.zeros_like(v) for k, v in state.items()}
        dcp.load(loaded, storage_reader=StorageReader(path))
        assert all(torch.equal(loaded[k], state[k]) for k in state)


def test_user_metadata_and_raw_bytes(tmp_path):
    """metadata= lands in the checkpoint's user metadata; raw_bytes=True stores bytes values as
    themselves (what any language reads) while other objects stay DCP payloads; dcp.load returns
    the same values either way."""
    state = {"w": torch.arange(4.0), "blob": b"\x00\x01raw\xff", "buf": bytearray(b"abc"), "epoch": 3}
    for raw in (False, True):
        path = tmp_path / f"raw-{raw}"
        dcp.save(state, storage_writer=StorageWriter(path, metadata={"step": "100"}, raw_bytes=raw))
        with sp.Reader(path) as reader:
            assert reader.metadata == {"step": "100"}
            assert (reader.read_bytes("blob") == b"\x00\x01raw\xff") == raw
            assert (reader.read_bytes("buf") == b"abc") == raw
            assert reader.read_bytes("epoch") != b"3"  # a torch.save payload in both cases
        loaded = {"w": torch.zeros(4), "blob": None, "buf": None, "epoch": None}
        dcp.load(loaded, storage_reader=StorageReader(path))
        assert torch.equal(loaded["w"], state["w"]) and loaded["epoch"] == 3
        assert bytes(loaded["blob"]) == state["blob"] and bytes(loaded["buf"]) == b"abc"
    with pytest.raises(TypeError, match="str to str"):
        StorageWriter(tmp_path / "x", metadata={"step": 100})
