"""Conversion between checkpoints and safetensors, Hugging Face's tensor files: one file, or a
sharded model directory (model-0000k-of-0000n.safetensors plus model.safetensors.index.json).

    shardpoint.convert_to_safetensors("ckpt", "model.safetensors")
    shardpoint.convert_to_safetensors("ckpt", "hf-model/", max_shard_size="5GB")
    shardpoint.convert_from_safetensors("hf-model/", "ckpt2", compression="zstd")

The library does the work (shardpoint_convert_to_safetensors / _from_safetensors in shardpoint.h,
which documents every rule): values are copied bit for bit, in bounded memory, and nothing is
left behind by a conversion that fails or is canceled.
"""

from __future__ import annotations

import ctypes
from typing import TYPE_CHECKING, Callable, cast

from . import _lib
from .errors import error_for
from .progress import ProgressCallback, Reporter, install
from .save import save_options

if TYPE_CHECKING:
    from ._typing import PathArg


def _size(value: int | str | None, what: str) -> int:
    """A byte count from an int or a text such as "5GB" (parsed by the library); None is 0."""
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise TypeError(f"{what} must be an int or a size such as '5GB', not {type(value).__name__}")
    if isinstance(value, str):
        out = ctypes.c_uint64()
        code = _lib.lib().shardpoint_parse_size(_lib.encode(value, what), ctypes.byref(out))
        if code != 0:
            raise error_for(code)
        size = out.value
    else:
        size = value
    if size <= 0:
        raise ValueError(f"{what} must be positive, not {value!r}")
    return size


def _options(flags: int, max_shard_size: int, buffer_size: int, io_threads: int,
             save: _lib.SaveOptions | None) -> _lib.ConvertOptions:
    options = _lib.ConvertOptions()
    code = _lib.lib().shardpoint_convert_options_init(ctypes.byref(options), _lib.CONVERT_OPTIONS_VERSION)
    if code != 0:
        raise error_for(code)
    options.flags = flags
    options.max_shard_size = max_shard_size
    options.buffer_size = buffer_size
    options.io_threads = int(io_threads)
    if save is not None:
        options.save_options = ctypes.pointer(save)
    return options


def _run(function: str, source: PathArg, target: PathArg, options: _lib.ConvertOptions,
         progress: ProgressCallback | None) -> None:
    def set_progress(c_function: object) -> int:
        options.progress = cast("Callable[..., int]", c_function)  # a ProgressFn the reporter keeps alive
        return 0

    reporter: Reporter | None = install(set_progress, progress)
    try:
        code = getattr(_lib.lib(), function)(_lib.encode_path(source), _lib.encode_path(target), ctypes.byref(options))
    finally:
        if reporter is not None:
            reporter.finish()  # what the callable raised, or Ctrl-C, outranks the CanceledError
    if code != 0:
        raise error_for(code)


def convert_to_safetensors(ckpt: PathArg, path: PathArg, *, max_shard_size: int | str | None = None,
                           overwrite: bool = False, skip_bytes: bool = False, durable: bool = True,
                           buffer_size: int | str | None = None, io_threads: int = 0,
                           progress: ProgressCallback | None = None) -> None:
    """Writes every tensor of the checkpoint at `ckpt`, whole, and its metadata (as the files'
    __metadata__) to safetensors at `path`.

    `path` is a file, or (an existing directory, or with `max_shard_size`) a model directory:
    DIR/model.safetensors, or with `max_shard_size` (bytes, or a text such as "5GB", "500MB")
    model-0000k-of-0000n.safetensors files of at most that many tensor bytes each plus
    model.safetensors.index.json. `overwrite` replaces a file or model already there (else
    ExistsError). A checkpoint with blobs raises KindError unless `skip_bytes` leaves them out;
    complex128 raises DtypeError; a tensor only partly saved raises UncoveredError.
    `durable=False` skips the fsyncs. `buffer_size` bounds the memory used (two buffers of it;
    default 64 MiB); `io_threads` read the checkpoint (0: one per core). `progress` receives
    Progress("convert", done, total) in tensor bytes; returning False cancels (CanceledError) and
    nothing is written.
    """
    flags = ((_lib.CONVERT_OVERWRITE if overwrite else 0) | (_lib.CONVERT_SKIP_BYTES if skip_bytes else 0)
             | (0 if durable else _lib.CONVERT_NO_FSYNC))
    options = _options(flags, _size(max_shard_size, "max_shard_size"), _size(buffer_size, "buffer_size"), io_threads, None)
    _run("shardpoint_convert_to_safetensors", ckpt, path, options, progress)


def convert_from_safetensors(path: PathArg, ckpt: PathArg, *, overwrite: bool = False, durable: bool = True,
                             compression: int | str = 0, compression_level: int = 0, shuffle: bool = False,
                             io_threads: int = 0, alignment: int = 0, checkpoint_id: str | None = None,
                             buffer_size: int | str | None = None,
                             progress: ProgressCallback | None = None) -> None:
    """Saves the tensors and __metadata__ of safetensors input `path` as a checkpoint at `ckpt`.

    `path` is a safetensors file, an index (*.json) or a model directory (its model.safetensors,
    else its model.safetensors.index.json). A malformed or truncated file raises FormatError, a
    dtype shardpoint lacks DtypeError, each naming the file and the tensor. The save options are
    Save's (`overwrite`, `durable`, `compression`, `compression_level`, `shuffle`, `io_threads`,
    `alignment`, `checkpoint_id`); `buffer_size` bounds the memory used (two buffers of it) and
    the size of a chunk (default 64 MiB; a larger tensor is saved as several chunks). `progress`
    as for convert_to_safetensors; a failed or canceled conversion commits nothing.
    """
    save = save_options(overwrite=overwrite, durable=durable, allow_partial=False, compression=compression,
                        compression_level=compression_level, shuffle=shuffle, io_threads=io_threads,
                        alignment=alignment, checkpoint_id=checkpoint_id)
    options = _options(0, 0, _size(buffer_size, "buffer_size"), io_threads, save)
    _run("shardpoint_convert_from_safetensors", path, ckpt, options, progress)
