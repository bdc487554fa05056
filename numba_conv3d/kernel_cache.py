"""Numba's disk cache for our kernels, invalidated by a change to any source file of the package.

Numba keys a cached function on its own source file only. Our kernels also freeze constants from
``config.py`` and compile in helpers from other modules (``shape_rules.py``, ``simd.py``, ...): after an
edit there, Numba would load machine code built from the old sources (wrong results, or a crash when a
block size no longer matches). These cache locators, used for functions defined in this package only,
add the stamp (path, modification time, size) of every ``.py`` file of the package to the one Numba
compares, so any such edit recompiles. Installed packages are unaffected until their files change.
Importing this module installs them (``numba_conv3d/__init__.py`` imports it before any kernel).
"""
import functools
from pathlib import Path

from numba.core import caching

PACKAGE = Path(__file__).resolve().parent


@functools.cache
def package_stamp():
    """(relative path, modification time in ns, size) of every source file of the package, sorted;
    read once per process."""
    stamps = []
    for path in sorted(PACKAGE.rglob("*.py")):
        status = path.stat()
        stamps.append((path.relative_to(PACKAGE).as_posix(), status.st_mtime_ns, status.st_size))
    return tuple(stamps)


def _in_package(py_file):
    try:
        return Path(py_file).resolve().is_relative_to(PACKAGE)
    except OSError:
        return False


def _package_locator(base):
    """``base`` (a Numba cache locator class) serving only this package's functions, with the package
    stamp added to the source stamp."""

    class PackageLocator(base):
        def get_source_stamp(self):
            return super().get_source_stamp(), package_stamp()

        @classmethod
        def from_function(cls, py_func, py_file):
            return super().from_function(py_func, py_file) if _in_package(py_file) else None

    PackageLocator.__name__ = PackageLocator.__qualname__ = f"Package{base.__name__}"
    return PackageLocator


def _numba_name(name):
    """``caching.<name>``, public since Numba 0.61, underscored before; None when absent."""
    return getattr(caching, name, None) or getattr(caching, f"_{name}", None)


def install():
    """Put the package's locators first in Numba's list (once), in Numba's own order of preference:
    ``NUMBA_CACHE_DIR``, beside the sources, the user-wide cache. A Numba whose caching internals
    differ keeps its own locators (and its per-file invalidation)."""
    implementation = _numba_name("CacheImpl")
    bases = [_numba_name(name) for name in ("UserProvidedCacheLocator", "InTreeCacheLocator",
                                            "UserWideCacheLocator")]
    classes = getattr(implementation, "_locator_classes", None)
    if not isinstance(classes, list) or None in bases:
        return
    if any(getattr(locator, "__module__", None) == __name__ for locator in classes):
        return
    classes[:0] = [_package_locator(base) for base in bases]


install()
