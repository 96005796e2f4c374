"""Exceptions carrying shardpoint's C error codes.

Every failing C call becomes a ShardpointError subclass chosen by its code; the exception holds
the code, its stable name (shardpoint_error_name) and shardpoint_last_error()'s message, which is
read right after the failing call on the same thread.
"""

from __future__ import annotations

import errno as _errno

from . import _lib

OK = 0
EINVAL = -1
ENOMEM = -2
EIO = -3
ENOTFOUND = -4
EEXISTS = -5
EFORMAT = -6
ECHECKSUM = -7
ETRUNCATED = -8
EVERSION = -9
EDTYPE = -10
ESHAPE = -11
EPATH = -12
ECONFLICT = -13
ERANK = -14
ECOMM = -15
EUNCOVERED = -16
ESTATE = -17
EKIND = -18
ERANGE = -19
ENOSPC = -20
ENOTDURABLE = -21
ECANCELED = -22
EINTERNAL = -99


class ShardpointError(Exception):
    """A shardpoint C call failed. `code` is the negative C code, `name` e.g. "SHARDPOINT_ECHECKSUM"."""

    code: int | None = None  # set on subclasses; instances always carry the actual code
    os_errno: int | None = None  # subclasses that are also OSErrors: the errno they stand for

    def __init__(self, code: int, name: str, message: str) -> None:
        super().__init__(code, name, message)
        self.code = code
        self.name = name
        self.message = message
        if isinstance(self, OSError):
            # OSError.__init__ took (code, name, message) as (errno, strerror, filename): fix them.
            # (Set through an OSError-typed name: they are OSError's attributes, not ours.)
            os_error: OSError = self
            os_error.errno = self.os_errno
            os_error.strerror = message
            os_error.filename = None

    def __str__(self) -> str:
        return f"{self.name}: {self.message}" if self.message else self.name


class InvalidArgumentError(ShardpointError, ValueError):
    code = EINVAL


class OutOfMemoryError(ShardpointError, MemoryError):
    code = ENOMEM


class IoError(ShardpointError, OSError):
    """An I/O call failed (SHARDPOINT_EIO); also an OSError with errno.EIO."""

    code = EIO
    os_errno = _errno.EIO


class NotFoundError(ShardpointError, FileNotFoundError, KeyError):
    """A checkpoint, file or entry does not exist (SHARDPOINT_ENOTFOUND). Also a
    FileNotFoundError (errno.ENOENT), for missing checkpoints, and a KeyError, for missing
    entries, so the handlers either kind of code already has catch it."""

    code = ENOTFOUND
    os_errno = _errno.ENOENT


class ExistsError(ShardpointError, FileExistsError):
    """The checkpoint already exists and overwriting was not asked for (SHARDPOINT_EEXISTS); also
    a FileExistsError (errno.EEXIST)."""

    code = EEXISTS
    os_errno = _errno.EEXIST


class FormatError(ShardpointError):
    code = EFORMAT


class ChecksumError(ShardpointError):
    code = ECHECKSUM


class TruncatedError(ShardpointError):
    code = ETRUNCATED


class VersionError(ShardpointError):
    code = EVERSION


class DtypeError(ShardpointError):
    code = EDTYPE


class ShapeError(ShardpointError):
    code = ESHAPE


class PathError(ShardpointError):
    code = EPATH


class ConflictError(ShardpointError):
    code = ECONFLICT


class RankError(ShardpointError):
    code = ERANK


class CommError(ShardpointError):
    code = ECOMM


class UncoveredError(ShardpointError):
    code = EUNCOVERED


class StateError(ShardpointError):
    code = ESTATE


class KindError(ShardpointError):
    code = EKIND


class RangeError(ShardpointError):
    code = ERANGE


class NoSpaceError(IoError):
    """No space left on the device, or a disk quota is exhausted (SHARDPOINT_ENOSPC).

    Also an OSError with errno.ENOSPC, so `except OSError` handlers that look for a full disk see
    it, and an IoError, which is what the library reported for a full disk before 0.2.
    """

    code = ENOSPC
    os_errno = _errno.ENOSPC


class NotDurableError(ShardpointError):
    """The save WAS committed (the new checkpoint is in place and loads), but a step after the
    commit point failed (the directory fsync), so it may not survive a power loss
    (SHARDPOINT_ENOTDURABLE). `committed` is True."""

    code = ENOTDURABLE
    committed = True


class CanceledError(ShardpointError):
    """A progress callback asked to stop (it returned False): nothing was committed, and a
    checkpoint already in the directory is untouched (SHARDPOINT_ECANCELED)."""

    code = ECANCELED


class InternalError(ShardpointError):
    code = EINTERNAL


_BY_CODE = {
    cls.code: cls
    for cls in (
        InvalidArgumentError, OutOfMemoryError, IoError, NotFoundError, ExistsError, FormatError,
        ChecksumError, TruncatedError, VersionError, DtypeError, ShapeError, PathError,
        ConflictError, RankError, CommError, UncoveredError, StateError, KindError, RangeError,
        NoSpaceError, NotDurableError, CanceledError, InternalError,
    )
}


def error_name(code: int) -> str:
    name: bytes = _lib.lib().shardpoint_error_name(code)
    return _lib.decode(name)


def error_for(code: int) -> ShardpointError:
    """The exception for a failed call; must run right after it, on the same thread."""
    dll = _lib.lib()
    # Both strings are never NULL (shardpoint.h).
    message: str = _lib.decode(dll.shardpoint_last_error())
    name: str = _lib.decode(dll.shardpoint_error_name(code))
    return _BY_CODE.get(code, ShardpointError)(code, name, message)


def shape_error(message: str) -> ShapeError:
    """A ShapeError raised by the binding itself (before calling C), in the library's terms."""
    return ShapeError(ESHAPE, error_name(ESHAPE), message)


def check(code: int) -> None:
    if code != 0:
        raise error_for(code)
