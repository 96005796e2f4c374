"""What the torch writer and reader share: the dtype table and the "torch.dcp" framework metadata.

The framework metadata is one JSON document (never pickle) stored in the checkpoint's framework
metadata field under FRAMEWORK_KEY. It holds what DCP needs to rebuild its Metadata beyond what
shardpoint's entries say (fqn, dtype, global shape, chunks):

    {"format": "shardpoint.torch.dcp", "version": 1,
     "dcp_version": "1.0.0",
     "planner_data": {"fqn": [["s", "optim"], ["s", "state"], ["i", 0], ["s", "exp_avg"]], ...} | null,
     "tensors": {"fqn": {"dtype": "bfloat16", "layout": "strided", "requires_grad": false,
                         "memory_format": "contiguous_format", "pin_memory": false,
                         "strides": [4, 1] | null}, ...},
     "bytes": ["fqn", ...],            # DCP BytesIO items (torch.save payloads written by DCP)
     "storage_meta": {"checkpoint_id": str | null, "save_id": str | null, "modules": [str, ...]} | null}

Path elements of planner_data are tagged "s" (str) or "i" (int): DCP's flattening map uses both
(optimizer state is keyed by parameter index) and JSON alone cannot tell "0" from 0.
"""

import json

import torch
from torch.distributed.checkpoint.metadata import StorageMeta, TensorProperties

from ..dtypes import DType

FRAMEWORK_KEY = "torch.dcp"
FORMAT_NAME = "shardpoint.torch.dcp"
FORMAT_VERSION = 1

# torch dtype <-> shardpoint dtype: every torch dtype that has a shardpoint dtype.
TORCH_TO_DTYPE = {
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

_MEMORY_FORMATS = {
    "contiguous_format": torch.contiguous_format,
    "channels_last": torch.channels_last,
    "channels_last_3d": torch.channels_last_3d,
    "preserve_format": torch.preserve_format,
}
_LAYOUTS = {"strided": torch.strided}


def shardpoint_dtype(torch_dtype, fqn=None):
    """The shardpoint dtype of a torch dtype; TypeError naming the tensor for one it lacks."""
    try:
        return TORCH_TO_DTYPE[torch_dtype]
    except KeyError:
        where = f" ({fqn!r})" if fqn is not None else ""
        names = ", ".join(sorted(_TORCH_BY_NAME))
        raise TypeError(f"shardpoint cannot store torch dtype {torch_dtype}{where}; it stores {names}") from None


def torch_dtype(dtype):
    return DTYPE_TO_TORCH[DType(dtype)]


def _name_of(value, table, what):
    for name, candidate in table.items():
        if candidate == value:
            return name
    raise TypeError(f"cannot record {what} {value} in the checkpoint")


def _encode_path(path, fqn):
    out = []
    for element in path:
        if isinstance(element, bool) or not isinstance(element, (str, int)):
            raise TypeError(f"planner_data of {fqn!r} has a path element {element!r} that is neither str nor int")
        out.append(["i", element] if isinstance(element, int) else ["s", element])
    return out


def _decode_path(path):
    out = []
    for tag, element in path:
        if tag == "i" and isinstance(element, int) and not isinstance(element, bool):
            out.append(element)
        elif tag == "s" and isinstance(element, str):
            out.append(element)
        else:
            raise ValueError(f"bad planner_data path element {[tag, element]!r}")
    return tuple(out)


def encode_properties(props):
    return {
        "dtype": str(props.dtype).removeprefix("torch."),
        "layout": _name_of(props.layout, _LAYOUTS, "layout"),
        "requires_grad": bool(props.requires_grad),
        "memory_format": _name_of(props.memory_format, _MEMORY_FORMATS, "memory format"),
        "pin_memory": bool(props.pin_memory),
        "strides": None if getattr(props, "strides", None) is None else [int(s) for s in props.strides],
    }


def decode_properties(doc, stored_dtype, fqn):
    dtype = torch_dtype(stored_dtype)
    if doc is None:
        return TensorProperties(dtype=dtype)
    named = _TORCH_BY_NAME.get(doc.get("dtype"))
    if named is not None and named != dtype:
        raise ValueError(f"the torch.dcp metadata says {fqn!r} is {named}, the checkpoint stores {stored_dtype}")
    strides = doc.get("strides")
    return TensorProperties(
        dtype=dtype,
        layout=_LAYOUTS.get(doc.get("layout"), torch.strided),
        requires_grad=bool(doc.get("requires_grad", False)),
        memory_format=_MEMORY_FORMATS.get(doc.get("memory_format"), torch.contiguous_format),
        pin_memory=bool(doc.get("pin_memory", False)),
        strides=None if strides is None else tuple(int(s) for s in strides),
    )


def encode_document(metadata, storage_meta, dcp_version):
    """The JSON text for a DCP Metadata (given to the writer's finish) and our StorageMeta."""
    from torch.distributed.checkpoint.metadata import BytesStorageMetadata, TensorStorageMetadata

    tensors, blobs = {}, []
    for fqn, md in metadata.state_dict_metadata.items():
        if isinstance(md, TensorStorageMetadata):
            tensors[fqn] = encode_properties(md.properties)
        elif isinstance(md, BytesStorageMetadata):
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
    doc = {
        "format": FORMAT_NAME,
        "version": FORMAT_VERSION,
        "dcp_version": dcp_version,
        "planner_data": planner_data,
        "tensors": tensors,
        "bytes": blobs,
        "storage_meta": meta,
    }
    return json.dumps(doc, separators=(",", ":"), allow_nan=False)


class Document:
    """The decoded "torch.dcp" document (empty for checkpoints written without torch)."""

    def __init__(self, text=None):
        doc = {} if text is None else json.loads(text)
        if not isinstance(doc, dict) or (text is not None and doc.get("format") != FORMAT_NAME):
            raise ValueError("the checkpoint's torch.dcp framework metadata is not a shardpoint.torch.dcp document")
        if int(doc.get("version", FORMAT_VERSION)) > FORMAT_VERSION:
            raise ValueError(f"torch.dcp metadata version {doc.get('version')} is newer than this shardpoint.torch reads")
        self.present = text is not None
        self.dcp_version = doc.get("dcp_version")
        raw = doc.get("planner_data")
        self.planner_data = None if raw is None else {fqn: _decode_path(path) for fqn, path in raw.items()}
        self.tensors = doc.get("tensors") or {}
        self.bytes = set(doc.get("bytes") or [])
        meta = doc.get("storage_meta")
        self.storage_meta = None
        if meta is not None:
            self.storage_meta = StorageMeta(checkpoint_id=meta.get("checkpoint_id"), save_id=meta.get("save_id"),
                                            modules=list(meta.get("modules") or []))
