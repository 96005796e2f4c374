"""python -m shardpoint.torch convert SRC DST

Converts a DCP FileSystemWriter checkpoint into a shardpoint checkpoint, or a shardpoint
checkpoint into a DCP FileSystemWriter one (the direction is SRC's kind: a directory with
shardpoint.meta is shardpoint's, one with .metadata is DCP's), through DCP's own readers and
writers, then checks every value of DST against SRC.

Tensors are materialized one at a time when the writer asks for them (a SavePlanner over
meta-device placeholders), so converting into DCP's FileSystemWriter (which writes item by item)
holds about one tensor in memory; shardpoint's writer writes all of a rank's items in one call, so
converting into shardpoint holds the whole state. The check loads one tensor at a time from both.
Exit status: 0 converted and checked, 1 failure, 2 usage.
"""

import argparse
import os
import sys
import warnings

import torch
from torch.distributed.checkpoint import DefaultLoadPlanner, DefaultSavePlanner, FileSystemReader, FileSystemWriter
from torch.distributed.checkpoint.metadata import TensorStorageMetadata
from torch.distributed.checkpoint.planner import WriteItemType
from torch.distributed.checkpoint.state_dict_loader import _load_state_dict
from torch.distributed.checkpoint.state_dict_saver import _save_state_dict

from ._reader import StorageReader
from ._writer import StorageWriter


def _reader_for(path):
    if os.path.exists(os.path.join(path, "shardpoint.meta")):
        return "shardpoint", lambda: StorageReader(path)
    if os.path.exists(os.path.join(path, ".metadata")):
        return "dcp", lambda: FileSystemReader(path)
    raise FileNotFoundError(f"{path} is neither a shardpoint checkpoint (shardpoint.meta) nor a DCP one (.metadata)")


def _load_one(make_reader, fqn, md):
    """One entry of a checkpoint: a tensor of its stored dtype, or the non-tensor value."""
    value = torch.empty(md.size, dtype=md.properties.dtype) if isinstance(md, TensorStorageMetadata) else None
    state = {fqn: value}
    planner = DefaultLoadPlanner(flatten_state_dict=False, flatten_sharded_tensors=False)
    _load_state_dict(state, storage_reader=make_reader(), planner=planner, no_dist=True)
    return state[fqn]


class _LazyPlanner(DefaultSavePlanner):
    """Plans from meta-device placeholders; resolve_data loads each tensor from the source then."""

    def __init__(self, make_reader, metadata):
        super().__init__(flatten_state_dict=False, flatten_sharded_tensors=False)
        self._make_reader = make_reader
        self._md = metadata.state_dict_metadata
        # A plain dict: the source's may be a view of an open reader, and DCP pickles this one.
        self._planner_data = None if metadata.planner_data is None else dict(metadata.planner_data)

    def create_global_plan(self, all_plans):
        plans, metadata = super().create_global_plan(all_plans)
        # The state dict here is the flat one; the nesting is the source's flattening map.
        metadata.planner_data = self._planner_data
        return plans, metadata

    def resolve_data(self, write_item):
        if write_item.type == WriteItemType.BYTE_IO:
            return super().resolve_data(write_item)
        fqn = write_item.index.fqn
        return _load_one(self._make_reader, fqn, self._md[fqn])


def convert(src, dst):
    kind, make_reader = _reader_for(src)
    metadata = make_reader().read_metadata()
    state = {}
    for fqn, md in metadata.state_dict_metadata.items():
        if isinstance(md, TensorStorageMetadata):
            state[fqn] = torch.empty(md.size, dtype=md.properties.dtype, device="meta")
        else:
            state[fqn] = _load_one(make_reader, fqn, md)
    writer = FileSystemWriter(dst) if kind == "shardpoint" else StorageWriter(dst)
    planner = _LazyPlanner(make_reader, metadata)
    _save_state_dict(state, storage_writer=writer, planner=planner, no_dist=True)
    # Check: every entry of DST equals SRC's, one at a time.
    _, make_dst = _reader_for(dst)
    dst_md = make_dst().read_metadata().state_dict_metadata
    if dst_md.keys() != metadata.state_dict_metadata.keys():
        raise RuntimeError(f"converted checkpoint has other entries: {sorted(set(dst_md) ^ set(metadata.state_dict_metadata))}")
    for fqn, md in metadata.state_dict_metadata.items():
        a, b = _load_one(make_reader, fqn, md), _load_one(make_dst, fqn, dst_md[fqn])
        same = (a.dtype == b.dtype and a.shape == b.shape and
                torch.equal(a.contiguous().reshape(-1).view(torch.uint8), b.contiguous().reshape(-1).view(torch.uint8))) \
            if isinstance(a, torch.Tensor) else (type(a) is type(b) and a == b)
        if not same:
            raise RuntimeError(f"{fqn!r} differs after conversion")
    return len(metadata.state_dict_metadata), kind


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m shardpoint.torch")
    sub = parser.add_subparsers(dest="command", required=True)
    c = sub.add_parser("convert", help="DCP FileSystemWriter checkpoint <-> shardpoint checkpoint, values checked")
    c.add_argument("src")
    c.add_argument("dst")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore", message="torch.distributed is disabled")
    try:
        count, kind = convert(args.src, args.dst)
    except Exception as e:
        print(f"convert: {e}", file=sys.stderr)
        return 1
    target = "DCP FileSystemWriter" if kind == "shardpoint" else "shardpoint"
    print(f"converted {count} entries of {args.src} ({kind}) into {args.dst} ({target}); every value checked")
    return 0


if __name__ == "__main__":
    sys.exit(main())
