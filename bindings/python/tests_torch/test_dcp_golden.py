"""The committed golden checkpoints (written by C, Rust, Go and Python, without torch) through dcp.load."""

import warnings

import numpy as np
import pytest
import torch
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint.metadata import TensorStorageMetadata

import shardpoint as sp
from conftest import GOLDEN
from shardpoint.torch import DTYPE_TO_TORCH, StorageReader

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")
COMMITTED = sorted(p for p in GOLDEN.glob("v[0-9]-*") if p.is_dir())


def as_torch(array, dtype):
    """A numpy array read by shardpoint's reader (raw carriers for bf16 / f8) as a torch tensor."""
    t = torch.from_numpy(np.array(array, copy=True, order="C"))
    return t.view(dtype) if t.dtype != dtype else t


@pytest.mark.parametrize("directory", COMMITTED, ids=[p.name for p in COMMITTED])
def test_golden_loads_through_dcp(directory):
    assert COMMITTED, "no committed golden checkpoints found"
    metadata = StorageReader(directory).read_metadata()
    assert metadata.planner_data == {fqn: (fqn,) for fqn in metadata.state_dict_metadata}
    state = {}
    for fqn, md in metadata.state_dict_metadata.items():
        if isinstance(md, TensorStorageMetadata):
            state[fqn] = torch.full(md.size, 1, dtype=md.properties.dtype) if md.properties.dtype.is_floating_point \
                else torch.zeros(md.size, dtype=md.properties.dtype)
        else:
            state[fqn] = None
    dcp.load(state, storage_reader=StorageReader(directory))
    with sp.Reader(directory) as reader:
        names = reader.keys()
        assert sorted(state) == sorted(names)
        for entry in reader.entries():
            if entry.is_tensor:
                dtype = DTYPE_TO_TORCH[entry.dtype]
                expected = as_torch(reader.read_tensor(entry.fqn), dtype)
                got = state[entry.fqn]
                assert got.dtype == dtype and got.shape == expected.shape, entry.fqn
                assert torch.equal(got.contiguous().reshape(-1).view(torch.uint8),
                                   expected.reshape(-1).view(torch.uint8)), entry.fqn
            else:
                # Raw blobs (not torch.save payloads) load as bytes.
                assert state[entry.fqn] == reader.read_bytes(entry.fqn), entry.fqn
