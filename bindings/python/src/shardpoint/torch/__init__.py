"""shardpoint as the storage layer of torch.distributed.checkpoint (DCP).

    import torch.distributed.checkpoint as dcp
    from shardpoint.torch import StorageReader, StorageWriter

    dcp.save(state_dict, storage_writer=StorageWriter("ckpt/step-100"))
    dcp.load(state_dict, storage_reader=StorageReader("ckpt/step-100"))

Works with DCP's default planners, dcp.async_save, checkpoint_id= and any number of ranks (the
loading job may have another number of ranks and another sharding). CPU tensors are written
straight from their memory; every torch dtype with a shardpoint dtype is stored as itself (bool,
integers, float16/bfloat16/float32/float64, complex64/128, float8_e4m3fn/e5m2); non-tensor values
(DCP's BytesIO items) are bytes entries. What DCP needs beyond shardpoint's entries travels in the
checkpoint as a JSON document under the framework metadata key "torch.dcp" (no pickle), and
checkpoints written without torch (C, C++, Rust, Go, plain Python) load through DCP as well.
"""

from ._common import DTYPE_TO_TORCH, FRAMEWORK_KEY, TORCH_TO_DTYPE
from ._reader import StorageReader
from ._writer import StorageWriter

__all__ = ["DTYPE_TO_TORCH", "FRAMEWORK_KEY", "StorageReader", "StorageWriter", "TORCH_TO_DTYPE"]
