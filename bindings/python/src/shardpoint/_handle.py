"""Base for objects owning a C handle: explicit close(), context manager, finalizer as safety net."""

import weakref

from . import _lib


def _free(free_name, ptr, _keepalive):
    # _keepalive: objects the C side may still use until this free returns (e.g. callback thunks).
    getattr(_lib.lib(), free_name)(ptr)


class Handle:
    _free_name = None  # "shardpoint_..._free"

    _ptr = None
    _finalizer = None

    def _adopt(self, ptr, keepalive=None):
        self._ptr = ptr
        # The finalizer must not reference self, or self would never be collected.
        self._finalizer = weakref.finalize(self, _free, self._free_name, ptr, keepalive)
        self._dependents = weakref.WeakSet()

    def _register(self, dependent):
        """`dependent` borrows this handle: it is closed first when this handle closes."""
        self._dependents.add(dependent)

    @property
    def closed(self):
        return self._ptr is None

    def _raw(self):
        if self._ptr is None:
            raise ValueError(f"{type(self).__name__} is closed")
        return self._ptr

    def close(self):
        """Frees the C handle now (idempotent). Objects borrowing it are closed first."""
        if self._ptr is None:
            return
        for dependent in list(self._dependents):
            dependent.close()
        self._ptr = None
        self._finalizer()

    def __enter__(self):
        self._raw()
        return self

    def __exit__(self, exc_type, exc, tb):
        self.close()
