"""Base for objects owning a C handle: explicit close(), context manager, finalizer as safety net."""

from __future__ import annotations

import weakref
from typing import TYPE_CHECKING, ClassVar, Protocol, TypeVar

from . import _lib

if TYPE_CHECKING:
    from types import TracebackType

_H = TypeVar("_H", bound="Handle")


class _Closable(Protocol):
    def close(self) -> None: ...


def _free(free_name: str, ptr: int | None, _keepalive: object) -> None:
    # _keepalive: objects the C side may still use until this free returns (e.g. callback thunks).
    getattr(_lib.lib(), free_name)(ptr)


class Handle:
    _free_name: ClassVar[str]  # "shardpoint_..._free", set by every subclass

    _ptr: int | None = None
    _finalizer: weakref.finalize[..., Handle] | None = None
    _dependents: weakref.WeakSet[_Closable]

    def _adopt(self, ptr: int | None, keepalive: object = None) -> None:
        self._ptr = ptr
        # The finalizer must not reference self, or self would never be collected.
        self._finalizer = weakref.finalize(self, _free, self._free_name, ptr, keepalive)
        self._dependents = weakref.WeakSet()

    def _register(self, dependent: _Closable) -> None:
        """`dependent` borrows this handle: it is closed first when this handle closes."""
        self._dependents.add(dependent)

    @property
    def closed(self) -> bool:
        return self._ptr is None

    def _raw(self) -> int:
        if self._ptr is None:
            raise ValueError(f"{type(self).__name__} is closed")
        return self._ptr

    def close(self) -> None:
        """Frees the C handle now (idempotent). Objects borrowing it are closed first."""
        if self._ptr is None:
            return
        for dependent in list(self._dependents):
            dependent.close()
        self._ptr = None
        if self._finalizer is not None:  # always: _adopt set it with _ptr
            self._finalizer()

    def __enter__(self: _H) -> _H:
        self._raw()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
