"""python -m shardpoint.torch convert SRC DST [--to dcp|torch-save] [--trust-pickle]

Converts, then checks every value of DST against SRC:
  - a DCP FileSystemWriter checkpoint (a directory with .metadata) into a shardpoint checkpoint;
  - a torch.save file (a regular file) into a shardpoint checkpoint; nested dicts and lists are
    flattened as dcp.save flattens them, and dcp.load rebuilds the nesting;
  - a shardpoint checkpoint (a directory with shardpoint.meta) into a DCP FileSystemWriter
    checkpoint, or with --to torch-save into a torch.save file (the nested state dict; as with
    DCP's own dcp_to_torch_save, dict keys come back as strings: DCP's flattening map keeps no
    key types).

Memory: into shardpoint, tensors are read from SRC only when the writer asks for them (a
SavePlanner over meta-device placeholders for DCP sources; torch.load(mmap=True) for torch.save
files, whose pages the kernel can drop), and the writer writes and drops them in batches of its
staging_bytes, so a conversion holds about 256 MiB plus one tensor. Into DCP's FileSystemWriter,
which writes item by item, about one tensor. Into a torch.save file, the whole state (torch.save
needs it at once). The check holds one tensor of each side at a time.

torch.save files are loaded with weights_only=True (tensors, containers, numbers, strings);
--trust-pickle loads any pickle, which runs code from the file: only for files you trust.
Exit status: 0 converted and checked, 1 failure, 2 usage.
"""

from __future__ import annotations

import argparse
import io
import os
import pickle
import sys
import warnings
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, Mapping, Sequence, Tuple, cast

import torch
from torch.distributed.checkpoint import DefaultLoadPlanner, DefaultSavePlanner, FileSystemReader, FileSystemWriter
from torch.distributed.checkpoint._nested_dict import flatten_state_dict
from torch.distributed.checkpoint.default_planner import _EmptyStateDictLoadPlanner
from torch.distributed.checkpoint.metadata import TensorStorageMetadata
from torch.distributed.checkpoint.planner import WriteItemType
from torch.distributed.checkpoint.state_dict_loader import _load_state_dict
from torch.distributed.checkpoint.state_dict_saver import _save_state_dict

from ._reader import StorageReader
from ._writer import StorageWriter

if TYPE_CHECKING:
    from torch.distributed.checkpoint import StorageReader as DcpStorageReader
    from torch.distributed.checkpoint.metadata import Metadata
    from torch.distributed.checkpoint.planner import SavePlan, WriteItem

# A checkpoint's reader, made anew for each load.
_MakeReader = Callable[[], "DcpStorageReader"]
# (fqn, metadata) of a checkpoint's entry, or (fqn, value) of an in-memory state dict.
_Entry = Tuple[str, object]
# Loads a batch of entries: fqn -> value (a tensor of the stored dtype, or the non-tensor value).
_Loader = Callable[[Sequence[_Entry]], Mapping[str, Any]]


# Tensors read from a source at once (the check reads this much from each side).
BATCH_BYTES = 128 << 20


def _reader_for(path: str) -> tuple[str, _MakeReader]:
    if os.path.exists(os.path.join(path, "shardpoint.meta")):
        return "shardpoint", lambda: StorageReader(path)
    if os.path.exists(os.path.join(path, ".metadata")):
        return "dcp", lambda: FileSystemReader(path)
    raise FileNotFoundError(f"{path} is not a shardpoint checkpoint (shardpoint.meta), a DCP one (.metadata) "
                            "or a torch.save file")


def _nbytes(md: object) -> int:
    return md.size.numel() * md.properties.dtype.itemsize if isinstance(md, TensorStorageMetadata) else 0


def _batches(entries: Iterable[_Entry]) -> Iterator[list[_Entry]]:
    """Consecutive runs of (fqn, md) of at most BATCH_BYTES tensor bytes (at least one entry each)."""
    budget = BATCH_BYTES
    batch: list[_Entry] = []
    size = 0
    for fqn, md in entries:
        if batch and size + _nbytes(md) > budget:
            yield batch
            batch, size = [], 0
        batch.append((fqn, md))
        size += _nbytes(md)
    if batch:
        yield batch


def _load_many(make_reader: _MakeReader, entries: Iterable[_Entry]) -> dict[str, Any]:
    """Entries of a checkpoint in one dcp.load: fqn -> a tensor of its stored dtype, or the
    non-tensor value. One load per batch, so the source's metadata is read once per batch."""
    state = {fqn: torch.empty(md.size, dtype=md.properties.dtype) if isinstance(md, TensorStorageMetadata) else None
             for fqn, md in entries}
    planner = DefaultLoadPlanner(flatten_state_dict=False, flatten_sharded_tensors=False)
    _load_state_dict(state, storage_reader=make_reader(), planner=planner, no_dist=True)
    return state


class _LazyPlanner(DefaultSavePlanner):
    """Plans from meta-device placeholders; resolve_data reads the tensors from the source then,
    a batch of the next ones in the source's order at a time, each dropped once handed over."""

    def __init__(self, make_reader: _MakeReader, metadata: Metadata) -> None:
        super().__init__(flatten_state_dict=False, flatten_sharded_tensors=False)
        self._make_reader = make_reader
        self._md = metadata.state_dict_metadata
        self._order = [fqn for fqn, md in self._md.items() if isinstance(md, TensorStorageMetadata)]
        self._position = {fqn: k for k, fqn in enumerate(self._order)}
        self._ready: dict[str, Any] = {}
        # A plain dict: the source's may be a view of an open reader, and DCP pickles this one.
        self._planner_data = None if metadata.planner_data is None else dict(metadata.planner_data)

    def create_global_plan(self, all_plans: list[SavePlan]) -> tuple[list[SavePlan], Metadata]:
        plans, metadata = super().create_global_plan(all_plans)
        # The state dict here is the flat one; the nesting is the source's flattening map.
        metadata.planner_data = self._planner_data
        return plans, metadata

    def resolve_data(self, write_item: WriteItem) -> torch.Tensor | io.BytesIO:
        if write_item.type == WriteItemType.BYTE_IO:
            return super().resolve_data(write_item)
        fqn = write_item.index.fqn
        if fqn not in self._ready:
            following = self._order[self._position[fqn]:]
            batch = next(_batches((f, self._md[f]) for f in following))
            self._ready = _load_many(self._make_reader, batch)
        tensor: torch.Tensor = self._ready.pop(fqn)
        return tensor


def _same(a: object, b: object) -> bool:
    """Equal values: tensors bit for bit (dtype and shape too), anything else by ==."""
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.dtype == b.dtype and a.shape == b.shape
                and torch.equal(a.contiguous().reshape(-1).view(torch.uint8), b.contiguous().reshape(-1).view(torch.uint8)))
    return type(a) is type(b) and a == b


def _check(src_entries: Mapping[str, object], load_src: _Loader, dst_entries: Mapping[str, object],
           load_dst: _Loader) -> None:
    """Every entry of DST equals SRC's, a batch at a time. *_entries: fqn -> metadata;
    load_*(batch of (fqn, md)) -> fqn -> value."""
    if set(dst_entries) != set(src_entries):
        raise RuntimeError(f"the converted checkpoint has other entries: {sorted(set(dst_entries) ^ set(src_entries))}")
    for batch in _batches(src_entries.items()):
        a = load_src(batch)
        b = load_dst([(fqn, dst_entries[fqn]) for fqn, _ in batch])
        for fqn, _ in batch:
            if not _same(a[fqn], b[fqn]):
                raise RuntimeError(f"{fqn!r} differs after conversion")


def _checkpoint_side(path: str) -> tuple[Mapping[str, object], _Loader]:
    """(fqn -> metadata, batch loader) of the checkpoint at `path`."""
    _, make_reader = _reader_for(path)
    entries = dict(make_reader().read_metadata().state_dict_metadata)
    return entries, lambda batch: _load_many(make_reader, batch)


def _flat_side(state: dict[str, Any]) -> tuple[dict[str, Any], _Loader]:
    """(fqn -> value, batch loader) of a flattened in-memory state dict."""
    return state, lambda batch: {fqn: state[fqn] for fqn, _ in batch}


def _torch_load(path: str, trust_pickle: bool) -> Any:
    """A torch.save file's state dict, memory-mapped when the file allows it (zip format)."""
    try:
        try:
            return torch.load(path, map_location="cpu", weights_only=not trust_pickle, mmap=True)
        except RuntimeError as e:
            if "mmap" not in str(e):
                raise
            return torch.load(path, map_location="cpu", weights_only=not trust_pickle)  # legacy format: in memory
    except pickle.UnpicklingError as e:
        if trust_pickle or "Weights only" not in str(e):
            raise
        raise ValueError(f"{path} holds objects other than tensors, containers, numbers and strings, which "
                         "torch.load(weights_only=True) refuses; pass --trust-pickle if you trust the file "
                         "(its pickle code then runs)") from None


def _from_torch_save(src: str, dst: str, trust_pickle: bool) -> int:
    state = _torch_load(src, trust_pickle)
    if not isinstance(state, dict):
        raise ValueError(f"{src} holds a {type(state).__name__}, not a state dict")
    _save_state_dict(state, storage_writer=StorageWriter(dst), planner=DefaultSavePlanner(), no_dist=True)
    flat, _ = flatten_state_dict(state)
    _check(*_flat_side(flat), *_checkpoint_side(dst))
    return len(flat)


def _to_torch_save(src: str, dst: str, trust_pickle: bool) -> int:
    state: dict[str, Any] = {}
    _load_state_dict(state, storage_reader=StorageReader(src), planner=_EmptyStateDictLoadPlanner(), no_dist=True)
    # Written under a temporary name, made durable, then renamed: DST is never a partial file.
    tmp = f"{dst}.tmp-{os.getpid()}"
    try:
        with open(tmp, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, dst)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    del state
    flat, _ = flatten_state_dict(_torch_load(dst, trust_pickle))
    _check(*_checkpoint_side(src), *_flat_side(flat))
    return len(flat)


def _placeholder(md: TensorStorageMetadata) -> torch.Tensor:
    """A meta-device tensor of a tensor entry's size and dtype."""
    return torch.empty(md.size, dtype=md.properties.dtype, device="meta")


def convert(src: str, dst: str, to: str = "dcp", trust_pickle: bool = False) -> tuple[int, str, str]:
    """Converts SRC into DST and checks every value; returns (entries, SRC's kind, DST's kind)."""
    if os.path.isfile(src):
        return _from_torch_save(src, dst, trust_pickle), "torch.save", "shardpoint"
    kind, make_reader = _reader_for(src)
    if kind == "shardpoint" and to == "torch-save":
        return _to_torch_save(src, dst, trust_pickle), kind, "torch.save"
    metadata = make_reader().read_metadata()
    # Tensors are meta-device placeholders the planner fills in when asked; the (small)
    # non-tensor values are read now, in one load.
    objects = [(fqn, md) for fqn, md in metadata.state_dict_metadata.items() if not isinstance(md, TensorStorageMetadata)]
    values = _load_many(make_reader, objects) if objects else {}
    # Every entry not among `objects` is a tensor entry.
    state = {fqn: values[fqn] if fqn in values else _placeholder(cast("TensorStorageMetadata", md))
             for fqn, md in metadata.state_dict_metadata.items()}
    writer = FileSystemWriter(dst) if kind == "shardpoint" else StorageWriter(dst)
    _save_state_dict(state, storage_writer=writer, planner=_LazyPlanner(make_reader, metadata), no_dist=True)
    _check(*_checkpoint_side(src), *_checkpoint_side(dst))
    return len(metadata.state_dict_metadata), kind, "DCP FileSystemWriter" if kind == "shardpoint" else "shardpoint"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m shardpoint.torch")
    sub = parser.add_subparsers(dest="command", required=True)
    c = sub.add_parser("convert", help="DCP checkpoint or torch.save file <-> shardpoint checkpoint, values checked")
    c.add_argument("src", help="a DCP FileSystemWriter checkpoint, a torch.save file, or a shardpoint checkpoint")
    c.add_argument("dst")
    c.add_argument("--to", choices=("dcp", "torch-save"), default="dcp",
                   help="what a shardpoint SRC becomes (default: a DCP FileSystemWriter checkpoint)")
    c.add_argument("--trust-pickle", action="store_true",
                   help="load torch.save files with weights_only=False (runs the file's pickle code)")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore", message="torch.distributed is disabled")
    try:
        if args.to == "torch-save" and not os.path.exists(os.path.join(args.src, "shardpoint.meta")):
            raise ValueError("--to torch-save converts a shardpoint checkpoint; SRC is not one")
        count, kind, target = convert(args.src, args.dst, args.to, args.trust_pickle)
    except Exception as e:
        print(f"convert: {e}", file=sys.stderr)
        return 1
    print(f"converted {count} entries of {args.src} ({kind}) into {args.dst} ({target}); every value checked")
    return 0


if __name__ == "__main__":
    sys.exit(main())
