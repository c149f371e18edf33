"""numba, where installed, and a compiled-kernel cache outside the installed package.

The fused kernels (compression's frame pass, the data step's expected amplitude) are
compiled on first use and cached per user; without numba their NumPy forms run instead.
"""

from __future__ import annotations

import os
from pathlib import Path

try:  # optional accelerator
    import numba
except ImportError:  # pragma: no cover - exercised where numba is missing
    numba = None

__all__ = ["enable_user_cache", "numba", "numba_cache_directory"]


def numba_cache_directory() -> Path:
    """Directory of the compiled-kernel cache, outside the installed package.

    numba's own ``cache=True`` writes next to the source file, i.e. into the
    installed package's ``__pycache__``; a later ``pip install -e`` leaves that
    folder behind as an empty namespace package that shadows the editable install.

    Returns
    -------
    pathlib.Path
        ``$NUMBA_CACHE_DIR`` (numba's setting) if set, else
        ``$XDG_CACHE_HOME/py4dstem-compressed/numba``, else
        ``~/.cache/py4dstem-compressed/numba``.
    """
    configured = getattr(getattr(numba, "config", None), "CACHE_DIR", "")
    if configured:
        return Path(configured).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "py4dstem-compressed" / "numba"


def enable_user_cache(dispatcher) -> bool:
    """Cache a numba dispatcher's compiled code in :func:`numba_cache_directory`.

    Only this dispatcher is affected (no global numba setting changes). Where
    numba's caching internals differ or the directory is not writable, the
    kernel is compiled on first use in every process instead (about 5 s).

    Returns
    -------
    bool
        Whether caching is on.
    """
    try:
        from numba.core.caching import (
            CompileResultCacheImpl,
            FunctionCache,
            _CacheLocator,
            _SourceFileBackedLocatorMixin,
        )
    except ImportError:  # pragma: no cover - other numba versions
        return False

    class _UserCacheLocator(_SourceFileBackedLocatorMixin, _CacheLocator):
        def __init__(self, py_func, py_file):
            self._py_file = py_file
            self._lineno = py_func.__code__.co_firstlineno
            subpath = self.get_suitable_cache_subpath(py_file)
            self._cache_path = str(numba_cache_directory() / subpath)

        def get_cache_path(self):
            return self._cache_path

    class _UserCacheImpl(CompileResultCacheImpl):
        _locator_classes = (_UserCacheLocator,)

    class _UserFunctionCache(FunctionCache):
        _impl_class = _UserCacheImpl

    try:
        dispatcher._cache = _UserFunctionCache(dispatcher.py_func)
    except (RuntimeError, OSError):  # no writable cache directory
        return False
    return True
