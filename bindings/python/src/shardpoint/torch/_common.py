"""What the torch writer and reader share: the dtype table and the "torch.dcp" framework metadata.

The framework metadata (never pickle) is what DCP needs to rebuild its Metadata beyond what
shardpoint's entries say (fqn, dtype, global shape, chunks). Version 2 keeps it in four JSON
values of the checkpoint's framework metadata, so that read_metadata parses only the small head
and the per-tensor parts are parsed when DCP first looks at them:

    "torch.dcp"               {"format": "shardpoint.torch.dcp", "version": 2, "dcp_version": "1.0.0",
                               "storage_meta": {"checkpoint_id": str | null, "save_id": str | null,
                                                "modules": [str, ...]} | null,
                               "planner_data": true | false}
    "torch.dcp.tensors"       {"fqn": {"requires_grad": true, ...}, ...}: TensorProperties that
                              differ from the defaults (dtype is the entry's; layout "strided",
                              requires_grad false, memory_format "contiguous_format",
                              pin_memory false, strides the C-order strides of the global shape;
                              "strides": null records None), for those tensors only
    "torch.dcp.planner_data"  {"fqn": [["s", "optim"], ["s", "state"], ["i", 0], ["s", "exp_avg"]], ...}
                              DCP's flattening map, in the state dict's order (present when the
                              head says true)
    "torch.dcp.bytes"         ["fqn", ...]: DCP BytesIO items (torch.save payloads written by DCP)

Version 1 (shardpoint 0.2 development builds) held all of it in "torch.dcp" ("tensors" with every
tensor's properties, "planner_data", "bytes"); it is still read.

Path elements of planner_data are tagged "s" (str) or "i" (int): DCP's flattening map uses both
(optimizer state is keyed by parameter index) and JSON alone cannot tell "0" from 0.
"""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING, Any, Collection, Iterable, Mapping, Sequence, Tuple, TypeVar, Union

import torch
from torch.distributed.checkpoint.metadata import StorageMeta, TensorProperties

from ..dtypes import DType

if TYPE_CHECKING:
    from torch.distributed.checkpoint.metadata import Metadata

    from ..reader import Reader

_V = TypeVar("_V")

# A path of DCP's planner_data: the keys that lead to a value of the nested state dict.
PlannerPath = Tuple[Union[str, int], ...]

FRAMEWORK_KEY = "torch.dcp"
TENSORS_KEY = "torch.dcp.tensors"
PLANNER_DATA_KEY = "torch.dcp.planner_data"
BYTES_KEY = "torch.dcp.bytes"
FORMAT_NAME = "shardpoint.torch.dcp"
FORMAT_VERSION = 2

# torch dtype <-> shardpoint dtype: every torch dtype that has a shardpoint dtype.
TORCH_TO_DTYPE: dict[torch.dtype, DType] = {
    torch.bool: DType.BOOL,
    torch.uint8: DType.U8,
    torch.int8: DType.I8,
    torch.int16: DType.I16,
    torch.int32: DType.I32,
    torch.int64: DType.I64,
    torch.uint16: DType.U16,
    torch.uint32: DType.U32,
    torch.uint64: DType.U64,
    torch.float16: DType.F16,
    torch.bfloat16: DType.BF16,
    torch.float32: DType.F32,
    torch.float64: DType.F64,
    torch.complex64: DType.COMPLEX64,
    torch.complex128: DType.COMPLEX128,
    torch.float8_e4m3fn: DType.F8_E4M3FN,
    torch.float8_e5m2: DType.F8_E5M2,
}
DTYPE_TO_TORCH = {v: k for k, v in TORCH_TO_DTYPE.items()}
_TORCH_BY_NAME = {str(t).removeprefix("torch."): t for t in TORCH_TO_DTYPE}

_MEMORY_FORMATS: dict[str, torch.memory_format] = {
    "contiguous_format": torch.contiguous_format,
    "channels_last": torch.channels_last,
    "channels_last_3d": torch.channels_last_3d,
    "preserve_format": torch.preserve_format,
}
_LAYOUTS: dict[str, torch.layout] = {"strided": torch.strided}


def shardpoint_dtype(torch_dtype: torch.dtype, fqn: str | None = None) -> DType:
    """The shardpoint dtype of a torch dtype; TypeError naming the tensor for one it lacks."""
    try:
        return TORCH_TO_DTYPE[torch_dtype]
    except KeyError:
        where = f" ({fqn!r})" if fqn is not None else ""
        names = ", ".join(sorted(_TORCH_BY_NAME))
        raise TypeError(f"shardpoint cannot store torch dtype {torch_dtype}{where}; it stores {names}") from None


def torch_dtype(dtype: int) -> torch.dtype:
    return DTYPE_TO_TORCH[DType(dtype)]


def _name_of(value: _V, table: Mapping[str, _V], what: str) -> str:
    for name, candidate in table.items():
        if candidate == value:
            return name
    raise TypeError(f"cannot record {what} {value} in the checkpoint")


def _encode_path(path: Iterable[object], fqn: object) -> list[list[str | int]]:
    out: list[list[str | int]] = []
    for element in path:
        if isinstance(element, bool) or not isinstance(element, (str, int)):
            raise TypeError(f"planner_data of {fqn!r} has a path element {element!r} that is neither str nor int")
        out.append(["i", element] if isinstance(element, int) else ["s", element])
    return out


def _decode_path(path: Iterable[Sequence[object]]) -> PlannerPath:
    out: list[str | int] = []
    for tag, element in path:
        if tag == "i" and isinstance(element, int) and not isinstance(element, bool):
            out.append(element)
        elif tag == "s" and isinstance(element, str):
            out.append(element)
        else:
            raise ValueError(f"bad planner_data path element {[tag, element]!r}")
    return tuple(out)


_DEFAULT_PROPERTIES: dict[str, object] = {"layout": "strided", "requires_grad": False,
                                          "memory_format": "contiguous_format", "pin_memory": False}


def _contiguous_strides(size: Iterable[int]) -> list[int]:
    strides: list[int] = []
    step = 1
    for n in reversed(tuple(size)):
        strides.append(step)
        step *= max(int(n), 1)
    return strides[::-1]


def encode_properties(props: TensorProperties, size: Iterable[int]) -> dict[str, object]:
    """The TensorProperties that differ from the defaults (an empty dict for most tensors);
    strides default to the C-order strides of `size` (what DCP records for contiguous tensors)."""
    full: dict[str, object] = {
        "layout": _name_of(props.layout, _LAYOUTS, "layout"),
        "requires_grad": bool(props.requires_grad),
        "memory_format": _name_of(props.memory_format, _MEMORY_FORMATS, "memory format"),
        "pin_memory": bool(props.pin_memory),
    }
    out = {k: v for k, v in full.items() if v != _DEFAULT_PROPERTIES[k]}
    strides = getattr(props, "strides", None)
    strides = None if strides is None else [int(s) for s in strides]
    if strides != _contiguous_strides(size):
        out["strides"] = strides
    return out


def decode_properties(doc: object, stored_dtype: int, fqn: str, shape: Iterable[int]) -> TensorProperties:
    dtype = torch_dtype(stored_dtype)
    if doc is None:
        return TensorProperties(dtype=dtype)
    if not isinstance(doc, dict):
        raise ValueError(f"the torch.dcp metadata of {fqn!r} is not a JSON object")
    # Absent names look up "": not in the tables, so the defaults apply (as for unknown names).
    named = _TORCH_BY_NAME.get(doc.get("dtype", ""))
    if named is not None and named != dtype:
        raise ValueError(f"the torch.dcp metadata says {fqn!r} is {named}, the checkpoint stores {stored_dtype}")
    strides = doc.get("strides", _contiguous_strides(shape))
    return TensorProperties(
        dtype=dtype,
        layout=_LAYOUTS.get(doc.get("layout", ""), torch.strided),
        requires_grad=bool(doc.get("requires_grad", False)),
        memory_format=_MEMORY_FORMATS.get(doc.get("memory_format", ""), torch.contiguous_format),
        pin_memory=bool(doc.get("pin_memory", False)),
        strides=None if strides is None else tuple(int(s) for s in strides),
    )


def is_local_path(checkpoint_id: object) -> bool:
    """Whether a DCP checkpoint_id names a local directory (a path, not a URL such as s3://)."""
    if isinstance(checkpoint_id, os.PathLike):
        return True
    return isinstance(checkpoint_id, str) and "://" not in checkpoint_id


def encode_document(metadata: Metadata, storage_meta: StorageMeta | None, dcp_version: str | None,
                    raw_blobs: Collection[str] = ()) -> dict[str, str]:
    """The framework metadata values (key -> JSON text) for a DCP Metadata (given to the
    writer's finish) and our StorageMeta. `raw_blobs`: bytes entries stored as their raw bytes,
    not as torch.save payloads (left out of the document's list of payloads)."""
    from torch.distributed.checkpoint.metadata import BytesStorageMetadata, TensorStorageMetadata

    tensors: dict[str, dict[str, object]] = {}
    blobs: list[str] = []
    for fqn, md in metadata.state_dict_metadata.items():
        if isinstance(md, TensorStorageMetadata):
            props = encode_properties(md.properties, md.size)
            if props:
                tensors[fqn] = props
        elif isinstance(md, BytesStorageMetadata) and fqn not in raw_blobs:
            blobs.append(fqn)
    planner_data = metadata.planner_data
    if planner_data is not None:
        if not isinstance(planner_data, dict):
            raise TypeError(f"planner_data of type {type(planner_data).__name__} cannot be stored without pickle; "
                            "shardpoint.torch stores DCP's flattening map (dict of fqn -> path tuple)")
        planner_data = {str(fqn): _encode_path(path, fqn) for fqn, path in planner_data.items()}
    meta = None
    if storage_meta is not None:
        meta = {
            "checkpoint_id": None if storage_meta.checkpoint_id is None else str(storage_meta.checkpoint_id),
            "save_id": storage_meta.save_id,
            "modules": [str(m) for m in (storage_meta.modules or [])],
        }
    head: dict[str, object] = {
        "format": FORMAT_NAME,
        "version": FORMAT_VERSION,
        "dcp_version": dcp_version,
        "storage_meta": meta,
        "planner_data": planner_data is not None,
    }
    values: dict[str, object] = {FRAMEWORK_KEY: head, TENSORS_KEY: tensors, BYTES_KEY: blobs}
    if planner_data is not None:
        values[PLANNER_DATA_KEY] = planner_data
    return {key: json.dumps(value, separators=(",", ":"), allow_nan=False) for key, value in values.items()}


class Document:
    """The "torch.dcp" framework metadata of an open reader (empty for checkpoints written without
    torch). The head is parsed at once; the per-tensor parts when first used."""

    def __init__(self, reader: Reader) -> None:
        self._reader = reader
        text = reader.framework_metadata(FRAMEWORK_KEY)
        head = {} if text is None else json.loads(text)
        if not isinstance(head, dict) or (text is not None and head.get("format") != FORMAT_NAME):
            raise ValueError("the checkpoint's torch.dcp framework metadata is not a shardpoint.torch.dcp document")
        self.version = int(head.get("version", FORMAT_VERSION))
        if self.version > FORMAT_VERSION:
            raise ValueError(f"torch.dcp metadata version {head.get('version')} is newer than this shardpoint.torch reads")
        self.present = text is not None
        self._head: dict[str, Any] = head  # JSON
        self.dcp_version: str | None = head.get("dcp_version")
        self.has_planner_data = bool(head.get("planner_data")) if self.version >= 2 else head.get("planner_data") is not None
        meta = head.get("storage_meta")
        self.storage_meta: StorageMeta | None = None
        if meta is not None:
            self.storage_meta = StorageMeta(checkpoint_id=meta.get("checkpoint_id"), save_id=meta.get("save_id"),
                                            modules=list(meta.get("modules") or []))
        self._tensors: dict[str, dict[str, Any]] | None = None
        self._planner_data: dict[str, PlannerPath] | None = None
        self._bytes: set[str] | None = None

    def _part(self, key: str, v1_name: str, empty: _V) -> _V:
        if self.version < 2:
            part: _V = self._head.get(v1_name) or empty
            return part
        text = self._reader.framework_metadata(key)
        if text is None:
            if key == PLANNER_DATA_KEY and self.has_planner_data:
                raise ValueError(f"the checkpoint's torch.dcp metadata lacks its {key!r} part")
            return empty
        value = json.loads(text)
        if not isinstance(value, type(empty)):
            raise ValueError(f"the checkpoint's {key!r} framework metadata is not a JSON {type(empty).__name__}")
        return value

    @property
    def tensors(self) -> dict[str, dict[str, Any]]:
        """fqn -> the recorded TensorProperties fields (absent: all default)."""
        if self._tensors is None:
            self._tensors = self._part(TENSORS_KEY, "tensors", {})
        return self._tensors

    def properties_of(self, fqn: str) -> dict[str, Any] | None:
        """The recorded TensorProperties fields of a tensor: {} (all default) for tensors a
        version 2 document leaves out, None when nothing was recorded (no document)."""
        recorded = self.tensors.get(fqn)
        if recorded is None and self.present and self.version >= 2:
            return {}
        return recorded

    @property
    def bytes(self) -> set[str]:
        """The fqns of DCP BytesIO items (as opposed to raw blobs written without torch)."""
        if self._bytes is None:
            names: list[str] = self._part(BYTES_KEY, "bytes", [])
            self._bytes = set(names)
        return self._bytes

    @property
    def planner_data(self) -> dict[str, PlannerPath] | None:
        """DCP's flattening map in the state dict's order, or None."""
        if self._planner_data is None and self.has_planner_data:
            raw: dict[str, list[list[object]]] = self._part(PLANNER_DATA_KEY, "planner_data", {})
            self._planner_data = {fqn: _decode_path(path) for fqn, path in raw.items()}
        return self._planner_data
