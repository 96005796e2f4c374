"""StorageReader: loading shardpoint checkpoints through torch.distributed.checkpoint.

read_metadata builds DCP's Metadata from shardpoint's entries (with the torch.dcp document when the
checkpoint has one; checkpoints written by C, Rust, Go or plain Python load too: properties from the
dtype, a flat planner_data, raw blobs loaded as `bytes`). It is lazy: state_dict_metadata and
planner_data are mappings over the open reader that build an entry's TensorStorageMetadata (one
bulk call for its chunk boxes) when DCP first asks for it, so opening a checkpoint of 20,000
tensors costs one metadata decode and one call for all names, and a partial load pays only for
the entries it loads. read_data hands every ReadItem to one
shardpoint load (parallel, merged, CRC-verified): straight into the destination tensor when it is
a CPU tensor of the stored dtype, else through a temporary that is then copied (DCP's dtype cast).
"""

from __future__ import annotations

import io
import os
import uuid
import weakref
from collections.abc import Iterable, Iterator, Mapping, MutableMapping
from typing import TYPE_CHECKING, Any, Literal, NoReturn, Optional, Tuple, TypeVar, cast, overload

import torch
from torch.distributed.checkpoint import StorageReader as _DcpStorageReader
from torch.distributed.checkpoint.metadata import (
    STORAGE_TYPES,
    BytesStorageMetadata,
    ChunkStorageMetadata,
    Metadata,
    MetadataIndex,
    StorageMeta,
    TensorStorageMetadata,
)
from torch.distributed.checkpoint.planner import LoadItemType
from torch.futures import Future

from ..dtypes import DType
from ..reader import EntryKind, Load, Reader
from ._common import Document, PlannerPath, decode_properties, is_local_path, torch_dtype
from ._writer import tensor_buffer

if TYPE_CHECKING:
    from torch.distributed.checkpoint.planner import LoadPlan, LoadPlanner, ReadItem

    from .._typing import Shape

_V = TypeVar("_V", bound="ReaderView")
_R = TypeVar("_R", bound="StorageReader")

# A read waiting for its load: (item, destination, temporary or None, blob or None).
_Pending = Tuple["ReadItem", Optional[torch.Tensor], Optional[torch.Tensor], Optional[bytearray]]


class ReaderView:
    """Parts of a Metadata that are views of the open reader: copies of the Metadata share them,
    and they are not picklable (every rank reads the metadata itself)."""

    def __copy__(self: _V) -> _V:
        return self

    def __deepcopy__(self: _V, memo: dict[int, object]) -> _V:
        return self

    def __getstate__(self) -> NoReturn:
        raise TypeError(f"shardpoint's {type(self).__name__} refers to an open reader and is not picklable; "
                        "every rank reads the metadata itself (StorageReader.read_metadata)")


class ChunkLocator(ReaderView):
    """Metadata.storage_data of a shardpoint checkpoint: MetadataIndex(fqn, offset) ->
    (entry index, chunk index), found with the reader's chunk index (shardpoint_reader_find_chunk)."""

    def __init__(self, reader: Reader) -> None:
        self._reader = reader
        self._entries: dict[str, int] = {}
        self._chunks: dict[tuple[str, Shape | None], tuple[int, int]] = {}

    def entry(self, fqn: str) -> int:
        index = self._entries.get(fqn)
        if index is None:
            index = self._entries[fqn] = self._reader._find(fqn)
        return index

    def __getitem__(self, index: MetadataIndex) -> tuple[int, int]:
        offset: Shape | None = None if index.offset is None else tuple(index.offset)
        key = (index.fqn, offset)
        found = self._chunks.get(key)
        if found is None:
            entry = self.entry(index.fqn)
            chunk = 0 if offset is None else self._reader.find_chunk(entry, offset)
            found = self._chunks[key] = (entry, chunk)
        return found

    def __contains__(self, index: MetadataIndex) -> bool:
        try:
            self[index]
        except Exception:
            return False
        return True



class LazyEntries(ReaderView, MutableMapping[str, STORAGE_TYPES]):
    """Metadata.state_dict_metadata of a shardpoint checkpoint: fqn -> TensorStorageMetadata or
    BytesStorageMetadata, each built on first access and kept. Iterates in the state dict's order
    when the checkpoint records it (DCP's planner_data), else in fqn order. Assignments and
    deletions (planners may edit the metadata) apply to this mapping only."""

    def __init__(self, reader: Reader, doc: Document, names: Iterable[str]) -> None:
        self._reader = reader
        self._doc = doc
        self._index: dict[str, int | None] = {fqn: i for i, fqn in enumerate(names)}  # None: gone, or not ours
        self._built: dict[str, STORAGE_TYPES] = {}
        self._order: list[str] | None = None

    def __getitem__(self, fqn: str) -> STORAGE_TYPES:
        found = self._built.get(fqn)
        if found is None:
            index = self._index[fqn]  # KeyError for unknown names, as a dict
            if index is None:
                raise KeyError(fqn)
            found = self._built[fqn] = self._build(index, fqn)
        return found

    def _build(self, index: int, fqn: str) -> STORAGE_TYPES:
        entry = self._reader._entry_at(index)
        if entry.kind != EntryKind.TENSOR:
            return BytesStorageMetadata()
        chunks = [ChunkStorageMetadata(offsets=torch.Size(o), sizes=torch.Size(z))
                  for o, z in self._reader.chunk_boxes(entry)]
        stored = cast(DType, entry.dtype)  # a tensor entry has a dtype
        props = decode_properties(self._doc.properties_of(fqn), stored, fqn, entry.shape)
        return TensorStorageMetadata(properties=props, size=torch.Size(entry.shape), chunks=chunks)

    def __contains__(self, fqn: object) -> bool:
        # (Mapping's signature takes any object; a non-str simply is not found.)
        return self._index.get(fqn, None) is not None or fqn in self._built  # type: ignore[call-overload]

    def detach(self) -> None:
        """Builds every entry not built yet (and parses the planner data), so that the mapping
        outlives the reader: StorageReader.close() calls it while the Metadata is still in use."""
        for fqn, index in self._index.items():
            if index is not None and fqn not in self._built:
                self._built[fqn] = self._build(index, fqn)
        self._names()
        self._index = {fqn: None for fqn in self._index}

    def __len__(self) -> int:
        return len(self._names())

    def __iter__(self) -> Iterator[str]:
        return iter(self._names())

    def _names(self) -> list[str]:
        if self._order is None:
            names = [fqn for fqn in self._index if fqn in self]
            planner_data = self._doc.planner_data
            if planner_data is not None:
                position = {fqn: k for k, fqn in enumerate(planner_data)}
                names.sort(key=lambda fqn: position.get(fqn, len(position)))  # stable: others after
            self._order = names
        return self._order

    def __setitem__(self, fqn: str, value: STORAGE_TYPES) -> None:
        if fqn not in self:
            self._order = None
        self._built[fqn] = value
        self._index.setdefault(fqn, None)

    def __delitem__(self, fqn: str) -> None:
        if fqn not in self:
            raise KeyError(fqn)
        self._built.pop(fqn, None)
        self._index[fqn] = None
        self._order = None

    def __repr__(self) -> str:
        return f"<shardpoint.torch state_dict_metadata of {len(self)} entries>"



class PlannerData(ReaderView, Mapping[str, PlannerPath]):
    """Metadata.planner_data: DCP's flattening map (fqn -> path), parsed from the checkpoint when
    first used; for checkpoints written without torch, every fqn is its own path."""

    def __init__(self, doc: Document, entries: LazyEntries) -> None:
        self._doc = doc
        self._entries = entries

    def _map(self) -> dict[str, PlannerPath] | None:
        return self._doc.planner_data if self._doc.has_planner_data else None

    def __getitem__(self, fqn: str) -> PlannerPath:
        mapping = self._map()
        if mapping is not None:
            return mapping[fqn]
        if fqn not in self._entries:
            raise KeyError(fqn)
        return (fqn,)

    def __iter__(self) -> Iterator[str]:
        mapping = self._map()
        return iter(mapping if mapping is not None else self._entries)

    def __len__(self) -> int:
        mapping = self._map()
        return len(mapping if mapping is not None else self._entries)

    def __repr__(self) -> str:
        return f"<shardpoint.torch planner_data of {len(self)} entries>"


def _raw_blob_payload(data: bytearray) -> io.BytesIO:
    """A raw blob (written without torch) as DCP's load_bytes expects it: a torch.save stream,
    which torch.load turns into the blob's `bytes`."""
    out = io.BytesIO()
    torch.save(bytes(data), out)
    out.seek(0)
    return out


class StorageReader(_DcpStorageReader):
    """Loads shardpoint checkpoints (from any language) with dcp.load.

        dcp.load(state_dict, storage_reader=shardpoint.torch.StorageReader("ckpt/step-100"))

    `verify_checksums` (default True) checks every CRC-32 read; `io_threads` 0 means one per core.
    `temporary_bytes` bounds the memory of temporaries (reads that need a dtype cast or a
    non-CPU / non-strided destination): beyond it, read_data runs several loads in turn.
    """

    def __init__(self, path: str | os.PathLike[str] | None = None, *, verify_checksums: bool = True, io_threads: int = 0,
                 temporary_bytes: int = 256 << 20) -> None:
        super().__init__()
        self.path: str | None = None if path is None else os.fspath(path)
        self.verify_checksums = bool(verify_checksums)
        self.io_threads = int(io_threads)
        self.temporary_bytes = int(temporary_bytes)
        self.load_id = uuid.uuid4().hex
        # Set together by read_metadata, cleared by close (the entries: by their last user).
        self._reader: Reader | None = None
        self._locator: ChunkLocator | None = None
        self._doc: Document | None = None
        self._entries_ref: weakref.ref[LazyEntries] | None = None

    def reset(self, checkpoint_id: str | os.PathLike[str] | None = None) -> None:
        self.close()
        if checkpoint_id:
            self.path = os.fspath(checkpoint_id)
        self.load_id = uuid.uuid4().hex

    @classmethod
    def validate_checkpoint_id(cls, checkpoint_id: str | os.PathLike[str]) -> bool:
        return is_local_path(checkpoint_id)

    @property
    def checkpoint_id(self) -> str | None:
        return self.path

    def close(self) -> None:
        """Closes the open checkpoint (reopened by the next read_metadata). A Metadata that
        read_metadata returned and that is still referenced stays usable: its remaining entries
        are built first."""
        entries = self._entries_ref() if self._entries_ref is not None else None
        self._entries_ref = None
        if entries is not None:
            entries.detach()
        if self._reader is not None:
            self._reader.close()
        self._reader = None
        self._locator = None

    def __enter__(self: _R) -> _R:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def read_metadata(self, *args: Any, **kwargs: Any) -> Metadata:
        if kwargs.get("rank") is not None:
            raise FileNotFoundError("shardpoint checkpoints have one metadata file, no rank-local ones")
        if self.path is None:
            raise ValueError("shardpoint.torch.StorageReader has no path: pass one, or checkpoint_id= to dcp.load")
        self.close()
        reader = Reader(self.path, verify_checksums=self.verify_checksums, io_threads=self.io_threads)
        try:
            doc = Document(reader)
            entries = LazyEntries(reader, doc, reader.keys())
            planner_data = PlannerData(doc, entries)
            if doc.storage_meta is not None:
                storage_meta = doc.storage_meta
            else:
                info = reader.storage_info
                storage_meta = StorageMeta(checkpoint_id=info.checkpoint_id, save_id=info.save_id)
            storage_meta.load_id = self.load_id
        except BaseException:
            reader.close()
            raise
        self._reader = reader
        self._locator = ChunkLocator(reader)
        self._doc = doc
        self._entries_ref = weakref.ref(entries)
        # The lazy mapping stands in for the dict DCP declares (it reads it as a mapping).
        return Metadata(state_dict_metadata=cast("dict[str, STORAGE_TYPES]", entries), planner_data=planner_data,
                        storage_data=self._locator, storage_meta=storage_meta, version=doc.dcp_version)

    def set_up_storage_reader(self, metadata: Metadata, is_coordinator: bool, *args: Any, **kwargs: Any) -> None:
        if self._reader is None or metadata.storage_data is not self._locator:
            raise RuntimeError("set_up_storage_reader needs the Metadata this reader's read_metadata returned")

    def prepare_local_plan(self, plan: LoadPlan) -> LoadPlan:
        return plan

    def prepare_global_plan(self, plans: list[LoadPlan]) -> list[LoadPlan]:
        return plans

    def read_data(self, plan: LoadPlan, planner: LoadPlanner) -> Future[None]:
        if self._reader is None:
            raise RuntimeError("read_data before read_metadata")
        pending: list[_Pending] = []  # (item, target, temporary or None, blob or None)
        temporary = 0
        load = self._reader.load()
        try:
            for item in plan.items:
                fqn = item.storage_index.fqn
                entry_index, chunk = cast(ChunkLocator, self._locator)[item.storage_index]  # set with _reader
                if item.type == LoadItemType.BYTE_IO:
                    blob = load.add_bytes(fqn, bytearray(self._reader._entry_at(entry_index).nbytes))
                    pending.append((item, None, None, blob))
                    continue
                stored = cast(DType, self._reader._entry_at(entry_index).dtype)  # a tensor entry has one
                dtype = torch_dtype(stored)
                target = planner.resolve_tensor(item).detach()
                lengths = tuple(int(n) for n in item.lengths)
                if tuple(target.shape) != lengths:
                    raise ValueError(f"{item.dest_index.fqn!r}: the destination has shape {tuple(target.shape)}, "
                                     f"the read item {lengths}")
                if _direct(target, dtype):
                    load.add_chunk(fqn, chunk, tensor_buffer(target, stored),
                                   storage_offsets=tuple(item.storage_offsets))
                    pending.append((item, target, None, None))
                    continue
                nbytes = target.numel() * dtype.itemsize
                if temporary and temporary + nbytes > self.temporary_bytes:
                    load = self._execute(load, pending, planner)
                    pending, temporary = [], 0
                tmp = torch.empty(lengths, dtype=dtype)
                load.add_chunk(fqn, chunk, tensor_buffer(tmp, stored), storage_offsets=tuple(item.storage_offsets))
                pending.append((item, target, tmp, None))
                temporary += nbytes
            self._execute(load, pending, planner, last=True)
        finally:
            load.close()
        future: Future[None] = Future()
        future.set_result(None)
        return future

    @overload
    def _execute(self, load: Load, pending: list[_Pending], planner: LoadPlanner,
                 last: Literal[False] = False) -> Load: ...
    @overload
    def _execute(self, load: Load, pending: list[_Pending], planner: LoadPlanner, last: Literal[True]) -> None: ...

    def _execute(self, load: Load, pending: list[_Pending], planner: LoadPlanner, last: bool = False) -> Load | None:
        """Runs `load`, hands its reads to the planner; returns a new load (None when `last`)."""
        load.execute()
        load.close()
        for item, target, tmp, blob in pending:
            if blob is not None:
                if item.storage_index.fqn not in cast(Document, self._doc).bytes:  # a raw blob, written without torch
                    planner.load_bytes(item, _raw_blob_payload(blob))
                else:
                    planner.load_bytes(item, io.BytesIO(bytes(blob)))
                continue
            target = cast(torch.Tensor, target)  # a tensor read has one
            if tmp is not None:
                target.copy_(tmp)
            planner.commit_tensor(item, target)
        return None if last else cast(Reader, self._reader).load()


def _direct(target: torch.Tensor, dtype: torch.dtype) -> bool:
    """Whether the library can write straight into `target`'s memory."""
    if target.device.type != "cpu" or target.dtype != dtype or target.layout != torch.strided:
        return False
    if target.is_conj() or target.is_neg() or target.is_quantized:
        return False
    # Overlapping memory (expanded dimensions) would be written several times at once.
    return all(stride != 0 or size <= 1 for size, stride in zip(target.shape, target.stride()))
