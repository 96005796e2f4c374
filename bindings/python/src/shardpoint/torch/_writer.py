"""StorageWriter: shardpoint as the storage layer of torch.distributed.checkpoint saves.

DCP's phases map one to one onto the storage-layer writer (shardpoint.Writer):

  set_up_storage_writer  a new shardpoint writer for this save, set up with (rank, world size)
  prepare_local_plan     every WriteItem declared (plan_tensor / plan_bytes) in the plan's order;
                         the SavePlan's storage_data = shardpoint's local plan (bytes)
  prepare_global_plan    coordinator: every rank's local plan -> shardpoint's final plans, one per
                         rank as that rank's storage_data (shardpoint decides who writes replicated
                         items, whatever DCP's own deduplication kept)
  write_data             the items shardpoint assigns this rank: planner.resolve_data, bound from
                         their memory (no copy for CPU tensors, strides for views), written
  finish                 coordinator: the torch.dcp JSON document + every rank's write results ->
                         the committed checkpoint
"""

from __future__ import annotations

import dataclasses
import io
import os
import uuid
import weakref
from typing import TYPE_CHECKING, Any, Mapping, TypeVar, cast

import torch
import torch.distributed as dist
from torch.distributed.checkpoint import StorageWriter as _DcpStorageWriter
from torch.distributed.checkpoint.metadata import MetadataIndex, StorageMeta
from torch.distributed.checkpoint.planner import WriteItemType
from torch.distributed.checkpoint.storage import WriteResult
from torch.futures import Future

from .._buffer import TensorBuffer
from ..dtypes import DType
from ..errors import NotDurableError
from ..writer import Writer
from ._common import encode_document, is_local_path, shardpoint_dtype

if TYPE_CHECKING:
    from torch.distributed.checkpoint.metadata import Metadata
    from torch.distributed.checkpoint.planner import SavePlan, SavePlanner, TensorWriteData, WriteItem

_W = TypeVar("_W", bound="StorageWriter")

if TYPE_CHECKING:  # (the name is a str where it exists; older torch lacks it)
    CURRENT_DCP_VERSION: str | None
else:
    try:
        from torch.distributed.checkpoint.filesystem import CURRENT_DCP_VERSION
    except ImportError:  # pragma: no cover - older torch
        CURRENT_DCP_VERSION = None


@dataclasses.dataclass(frozen=True)
class _RankResults:
    """What a rank's first WriteResult carries to the coordinator's finish: shardpoint's write
    results message, and the bytes entries it stored raw."""

    message: bytes
    raw_blobs: tuple[str, ...]


def _release(writer: Writer | None, coordinator: bool) -> None:
    """Frees a writer of a save that may not have finished. Only the coordinator aborts: it alone
    knows whether it committed (abort does nothing then); another rank cannot know, so it keeps
    its data file (the next save into the directory, or shardpoint gc, removes it if unused)."""
    if writer is None or writer.closed:
        return
    try:
        if coordinator and not writer.committed:
            writer.abort()
    finally:
        writer.close()


def tensor_buffer(tensor: torch.Tensor, dtype: DType | None) -> TensorBuffer:
    """A TensorBuffer over a CPU tensor's own memory (element strides; no copy)."""
    return TensorBuffer(tensor.data_ptr() if tensor.numel() else 0, dtype, tensor.element_size(), tuple(tensor.shape),
                        tuple(tensor.stride()), False, tensor)


def _host_tensor(tensor: torch.Tensor | io.BytesIO, planned: torch.dtype, fqn: str) -> torch.Tensor:
    """The tensor whose memory is written: the same tensor for CPU tensors of the planned dtype,
    else a staged host copy (GPU), the planned dtype (a planner that changes dtypes) or resolved
    conjugate / negative views (whose memory does not hold their values)."""
    if not isinstance(tensor, torch.Tensor):
        raise TypeError(f"{fqn!r}: resolve_data returned {type(tensor).__name__}, not a tensor")
    if tensor.is_sparse or tensor.is_quantized or tensor.layout != torch.strided:
        raise TypeError(f"{fqn!r}: shardpoint stores dense strided tensors, not {tensor.layout} ones")
    tensor = tensor.detach()
    if tensor.device.type != "cpu":
        tensor = tensor.to("cpu")  # staged through host memory
    if tensor.dtype != planned:
        tensor = tensor.to(planned)
    if tensor.is_conj():
        tensor = tensor.resolve_conj()
    if tensor.is_neg():
        tensor = tensor.resolve_neg()
    return tensor


class StorageWriter(_DcpStorageWriter):
    """Saves DCP checkpoints as shardpoint checkpoints (a directory; FORMAT.md).

        dcp.save(state_dict, storage_writer=shardpoint.torch.StorageWriter("ckpt/step-100"))
        dcp.save(state_dict, checkpoint_id="ckpt/step-200", storage_writer=writer)  # reuse it

    Options: `overwrite` (default True, as FileSystemWriter) replaces a checkpoint at the path,
    which stays intact until the new one commits; `durable=False` skips fsync; `compression` a
    zlib level or "zstd" / "zlib" (block compression, format 2; `shuffle=True` byte-shuffles floats
    first); `io_threads` (0: one per core), `alignment`; `allow_partial` accepts tensors the
    ranks together leave partly uncovered. `process_group` is the group DCP saves over (default:
    the default group), which gives the world size. `staging_bytes` bounds the memory write_data
    holds at once: once the items resolved so far reach it, they are written and released before
    more are resolved, so host copies of GPU tensors, dtype conversions and tensors a planner
    materializes (a conversion) take at most about that much memory (0: no bound).

    `metadata` (a dict of str -> str, e.g. {"step": "100"}) is stored as the checkpoint's user
    metadata, which every language reads (shardpoint.Reader(path).metadata); DCP's Metadata has no
    place for it. With `raw_bytes=True`, non-tensor values that are `bytes`, `bytearray` or
    `memoryview` are stored as their raw bytes instead of DCP's torch.save payload, so that C, Rust,
    Go or Julia programs read them as plain blobs; dcp.load still returns them as `bytes`. (The
    object is taken from the planner's lookup_object, bypassing its transform_object.)

    A save that fails on another rank after this rank wrote leaves the coordinator's writer
    holding the directory's save lock and its data file until the next save with this object,
    close(), or garbage collection releases it; other ranks' data files of that save are removed
    by the next successful save into the directory (or `shardpoint gc`).
    """

    def __init__(self, path: str | os.PathLike[str] | None = None, *, overwrite: bool = True, durable: bool = True,
                 compression: int | str = 0, shuffle: bool = False, io_threads: int = 0, alignment: int = 0,
                 allow_partial: bool = False, process_group: dist.ProcessGroup | None = None,
                 staging_bytes: int = 256 << 20, metadata: Mapping[str, str] | None = None,
                 raw_bytes: bool = False) -> None:
        super().__init__()
        self.path: str | None = None if path is None else os.fspath(path)
        self.overwrite = bool(overwrite)
        self.durable = bool(durable)
        self.compression: int | str = compression if isinstance(compression, str) else int(compression)
        self.shuffle = bool(shuffle)
        self.io_threads = int(io_threads)
        self.alignment = int(alignment)
        self.allow_partial = bool(allow_partial)
        self.process_group = process_group
        self.staging_bytes = int(staging_bytes)
        self.metadata: dict[str, str] = {} if metadata is None else dict(metadata)
        for key, value in self.metadata.items():
            if not isinstance(key, str) or not isinstance(value, str):
                raise TypeError(f"metadata maps str to str, not {type(key).__name__} to {type(value).__name__}")
        self.raw_bytes = bool(raw_bytes)
        self.save_id = uuid.uuid4().hex
        self._writer: Writer | None = None
        self._finalizer: weakref.finalize[..., StorageWriter] | None = None
        self._coordinator = False
        self._items: list[WriteItem] = []

    # --- the interface --------------------------------------------------------------------------

    def reset(self, checkpoint_id: str | os.PathLike[str] | None = None) -> None:
        self._release()
        if checkpoint_id:
            self.path = os.fspath(checkpoint_id)
        self.save_id = uuid.uuid4().hex

    @classmethod
    def validate_checkpoint_id(cls, checkpoint_id: str | os.PathLike[str]) -> bool:
        return is_local_path(checkpoint_id)

    @property
    def checkpoint_id(self) -> str | None:
        return self.path

    def storage_meta(self) -> StorageMeta:
        return StorageMeta(checkpoint_id=self.path, save_id=self.save_id)

    def set_up_storage_writer(self, is_coordinator: bool, *args: Any, **kwargs: Any) -> None:
        self._release()
        if self.path is None:
            raise ValueError("shardpoint.torch.StorageWriter has no path: pass one, or checkpoint_id= to dcp.save")
        rank, world = self._rank_and_world(is_coordinator, kwargs.get("rank"))
        if not kwargs.get("use_collectives", True) and world > 1:
            raise ValueError("shardpoint writes one checkpoint per save: dcp.save(use_collectives=False) is not supported")
        writer = Writer(self.path, overwrite=self.overwrite, durable=self.durable, allow_partial=self.allow_partial,
                        compression=self.compression, shuffle=self.shuffle, io_threads=self.io_threads, alignment=self.alignment,
                        checkpoint_id=self.path)
        self._finalizer = weakref.finalize(self, _release, writer, rank == 0)
        self._writer = writer
        self._coordinator = rank == 0
        writer.set_up(rank, world)
        for key, value in self.metadata.items():
            writer.set_metadata(key, value)
        self._items = []

    def prepare_local_plan(self, plan: SavePlan) -> SavePlan:
        if not plan.usable:
            raise ValueError("shardpoint.torch.StorageWriter does not support DCP's plan caching (enable_plan_caching)")
        writer = self._live()
        for item in plan.items:
            fqn = item.index.fqn
            if item.type == WriteItemType.BYTE_IO:
                writer.plan_bytes(fqn)
            else:
                td = cast("TensorWriteData", item.tensor_data)  # a tensor item has it
                dtype = shardpoint_dtype(td.properties.dtype, fqn)
                writer.plan_tensor(fqn, dtype, tuple(td.size), tuple(td.chunk.offsets), tuple(td.chunk.sizes))
            self._items.append(item)
        return dataclasses.replace(plan, storage_data=writer.local_plan())

    def prepare_global_plan(self, plans: list[SavePlan]) -> list[SavePlan]:
        writer = self._live()
        messages: list[bytes] = []
        for rank, plan in enumerate(plans):
            if not isinstance(plan.storage_data, bytes):
                raise ValueError(f"rank {rank}'s plan carries no shardpoint local plan (was it prepared by "
                                 "shardpoint.torch.StorageWriter on every rank?)")
            messages.append(plan.storage_data)
        writer.global_plan(messages)
        return [dataclasses.replace(plan, storage_data=writer.final_plan(rank)) for rank, plan in enumerate(plans)]

    def write_data(self, plan: SavePlan, planner: SavePlanner) -> Future[list[WriteResult]]:
        writer = self._live()
        try:
            final = plan.storage_data
            if not isinstance(final, bytes):
                raise ValueError("the plan carries no shardpoint final plan (prepare_global_plan did not run)")
            written: list[tuple[WriteItem, int]] = []
            raw_blobs: list[str] = []  # fqns of bytes written as their raw bytes
            held = 0  # bytes bound since the last batch was written
            data: torch.Tensor | io.BytesIO | None
            blob: memoryview | None
            tensor: torch.Tensor | None
            buf: TensorBuffer | None
            for k in writer.assigned(final):
                item = self._items[k]
                raw = self._raw_object(planner, item)
                if raw is not None:
                    blob = memoryview(raw).cast("B")
                    writer.bind_bytes(k, blob)
                    raw_blobs.append(item.index.fqn)
                    size = blob.nbytes
                    data = None
                elif item.type == WriteItemType.BYTE_IO:
                    data = planner.resolve_data(item)
                    if isinstance(data, io.BytesIO):
                        blob = data.getbuffer()
                    else:
                        blob = memoryview(bytes(data))
                    writer.bind_bytes(k, blob)
                    size = blob.nbytes
                else:
                    data = planner.resolve_data(item)
                    dtype = cast("TensorWriteData", item.tensor_data).properties.dtype  # a tensor item has it
                    tensor = _host_tensor(data, dtype, item.index.fqn)
                    buf = tensor_buffer(tensor, shardpoint_dtype(dtype, item.index.fqn))
                    writer.bind_tensor(k, buf)
                    size = tensor.numel() * tensor.element_size()
                written.append((item, size))
                data = blob = tensor = buf = None  # the writer holds what it still needs
                held += size
                if self.staging_bytes and held >= self.staging_bytes:
                    writer.write_bound(final)  # and drops its references to the batch
                    held = 0
            results = writer.write(final)
        except BaseException:
            # This rank's failure reaches the coordinator through DCP, so nothing can commit:
            # removing this rank's files is safe.
            self._abort_and_release(force=True)
            raise
        if not self._coordinator:
            self._release()  # the coordinator keeps its writer (and the save lock) until finish
        out = [WriteResult(index=item.index, size_in_bytes=int(size), storage_data=None) for item, size in written]
        if out:
            out[0] = dataclasses.replace(out[0], storage_data=_RankResults(results, tuple(raw_blobs)))
        future: Future[list[WriteResult]] = Future()
        future.set_result(out)
        return future

    def finish(self, metadata: Metadata, results: list[list[WriteResult]]) -> None:
        writer = self._live()
        try:
            messages: list[bytes] = []
            raw_blobs: set[str] = set()
            for rank_results in results:
                carried = rank_results[0].storage_data if rank_results else _RankResults(b"", ())
                if not isinstance(carried, _RankResults) or not isinstance(carried.message, bytes):
                    raise ValueError("a rank's write results carry no shardpoint write results message")
                messages.append(carried.message)
                raw_blobs.update(carried.raw_blobs)
            storage_meta = self.storage_meta()
            if metadata.storage_meta is not None and metadata.storage_meta.modules:
                storage_meta.modules = list(metadata.storage_meta.modules)
            for key, text in encode_document(metadata, storage_meta, CURRENT_DCP_VERSION, raw_blobs).items():
                writer.set_framework_metadata(key, text)
            writer.finish(messages)
        except NotDurableError:
            self._release()
            raise
        except BaseException:
            self._abort_and_release(force=True)
            raise
        metadata.storage_meta = self.storage_meta()
        if CURRENT_DCP_VERSION is not None:
            metadata.version = CURRENT_DCP_VERSION
        self._release()

    # --- our own ---------------------------------------------------------------------------------

    def close(self) -> None:
        """Releases this writer's unfinished save (see the class comment). Idempotent."""
        self._release()

    def __enter__(self: _W) -> _W:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __getstate__(self) -> dict[str, object]:
        # For DCP's process-based async save: the C writer stays behind; a new one is made at set up.
        state = self.__dict__.copy()
        state.update(_writer=None, _finalizer=None, _items=[])
        return state

    def _rank_and_world(self, is_coordinator: bool, rank: int | None) -> tuple[int, int]:
        if dist.is_available() and dist.is_initialized():
            world = dist.get_world_size(self.process_group)
            if rank is None:
                rank = dist.get_rank(self.process_group)
        else:
            world = 1
            rank = 0 if rank is None else rank
        if bool(is_coordinator) != (rank == 0):
            raise ValueError(f"shardpoint's coordinator is rank 0 (this is rank {rank}, "
                             f"{'' if is_coordinator else 'not '}DCP's coordinator)")
        return int(rank), int(world)

    def _raw_object(self, planner: SavePlanner, item: WriteItem) -> bytes | bytearray | memoryview | None:
        """With raw_bytes, the bytes-like object of a bytes item (to store as is), else None."""
        if not self.raw_bytes or item.type != WriteItemType.BYTE_IO or not hasattr(planner, "lookup_object"):
            return None
        obj = planner.lookup_object(item.index)
        return obj if isinstance(obj, (bytes, bytearray, memoryview)) else None

    def _live(self) -> Writer:
        if self._writer is None or self._writer.closed:
            raise RuntimeError("shardpoint.torch.StorageWriter: set_up_storage_writer did not run for this save")
        return self._writer

    def _abort_and_release(self, force: bool) -> None:
        writer = self._writer
        if writer is not None and not writer.closed:
            try:
                if force and not writer.committed:
                    writer.abort()
            finally:
                self._release()

    def _release(self) -> None:
        finalizer, self._finalizer = self._finalizer, None
        self._writer = None
        if finalizer is not None:
            finalizer()  # runs _release(writer, coordinator) once
