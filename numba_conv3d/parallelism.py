"""Which Numba threading layer runs the CPU kernels, and what keeps concurrent callers safe on it.

Numba's layers differ (its threading-layer documentation): ``tbb`` is safe with threads and with
``fork``; GNU OpenMP (``omp``) is safe with threads but terminates a forked child that uses it;
``workqueue`` is safe with ``fork`` but aborts the process when two threads launch parallel work at
once. Numba prefers tbb, then omp, then workqueue. The pip ``tbb`` package puts its library where
Numba does not look, so :func:`make_pip_tbb_findable` loads it first; on workqueue our calls take turns
under a lock; a forked child of an OpenMP parent gets a clear error instead of being terminated.
"""
import ctypes
import os
import sys
import threading

import numba
from numba import njit, prange

_TBB_LIBRARY = "libtbb.so.12"
_serial_calls = threading.Lock()
_fork = {"child_of_omp_parent": False}


@njit(parallel=True, cache=True)
def _start_threads(n):
    total = 0
    for i in prange(n):
        total += i
    return total


def make_pip_tbb_findable():
    """Load the pip ``tbb`` package's library (``<prefix>/lib``) so that Numba can pick its tbb layer.

    Does nothing when the library is absent, when the user chose a layer without tbb, or when Numba's
    layer is already running. Returns whether the library was loaded.
    """
    library = os.path.join(sys.prefix, "lib", _TBB_LIBRARY)
    if not os.path.exists(library) or numba.config.THREADING_LAYER not in ("default", "tbb", "safe",
                                                                          "threadsafe", "forksafe"):
        return False
    try:
        numba.threading_layer()
        return False  # a layer is already running: too late to change it
    except ValueError:
        pass
    try:
        ctypes.CDLL(library, mode=ctypes.RTLD_GLOBAL)
    except OSError:
        return False
    return True


def threading_layer():
    """The threading layer Numba runs parallel kernels on (started now if it was not yet)."""
    try:
        return numba.threading_layer()
    except ValueError:
        _start_threads(numba.get_num_threads())
        return numba.threading_layer()


def _note_fork():
    try:
        parent_layer = numba.threading_layer()
    except ValueError:
        return
    _fork["child_of_omp_parent"] = parent_layer == "omp"


os.register_at_fork(after_in_child=_note_fork)


class safe_to_run:
    """Enter around a parallel kernel call: serialises calls on workqueue, and refuses to run in a forked
    child of a process that used GNU OpenMP (OpenMP would terminate it). A class rather than a
    generator-based context manager: entering costs about a microsecond less, on every call."""

    __slots__ = ("_op", "_lock")

    def __init__(self, op="conv3d"):
        self._op = op
        self._lock = None

    def __enter__(self):
        if _fork["child_of_omp_parent"]:
            raise RuntimeError(f"{self._op}: this process was forked from one that already ran parallel "
                               f"kernels on GNU OpenMP, which terminates forked children that use it. "
                               f"Start workers with multiprocessing's 'spawn' or 'forkserver' method, or "
                               f"install tbb (pip install tbb), whose threading layer is fork-safe")
        if threading_layer() == "workqueue":
            self._lock = _serial_calls
            self._lock.acquire()
        return self

    def __exit__(self, *exception):
        if self._lock is not None:
            self._lock.release()
            self._lock = None
        return False
