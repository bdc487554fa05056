"""Matrix products by NumPy's BLAS that leave no BLAS thread spinning after them.

OpenBLAS (NumPy's BLAS in its PyPI wheels) keeps its worker threads spinning for 60-100 ms after each
threaded product, so that whatever runs next gets a core less: on 2 cores, torch's 1x1x1 convolution
ran 30 ms instead of 0.3-0.9 ms 10 ms after one of our products, a torch k3 layer 80 ms instead of 34,
our depthwise kernel 1.25 ms instead of 0.93 (docs/ARCHITECTURE.md, "Networks suite and new routes").
Here a product is cut into pieces of rows or of columns (``_split``), computed by the calling thread
and a small pool of Python threads (as many in all as Numba's, ``numba.get_num_threads``), each with
OpenBLAS's thread-local thread count at 1 (``openblas_set_num_threads_local``, OpenBLAS >= 0.3.27): no
OpenBLAS worker runs. The calling thread's own count is put back after each product. The pieces depend
on the product's shape alone (``_piece_bounds``) and never split a sum, so the result is bitwise the same
for any thread count; OpenBLAS's own threads were not (a weight gradient's product differed from run to
run). Where NumPy's BLAS is not such an OpenBLAS (or is not found through ``/proc/self/maps``), a
product is NumPy's ``matmul`` as it is.
"""
import ctypes
import functools
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numba
import numpy as np

# A product is cut into pieces of at least MIN_PIECE_EXTENT rows (or columns), at most MAX_PIECES of them
# (an even number, which 2 and 4 threads share evenly; each piece streams the other operand again: C3D's
# conv4b product in 8 pieces took 86 ms, in 4 75 ms); one of fewer than SMALL_PRODUCT_FLOPS is one
# piece, as handing a piece to another thread costs tens of microseconds. Pieces of 64 rows ran 1.3x
# faster than pieces of 32 (a weight gradient's 256 x 784 x 1728 product, Zen 4), each piece packing
# the other operand again.
MIN_PIECE_EXTENT = 48
MAX_PIECES = 4
SMALL_PRODUCT_FLOPS = 4e6
# Pieces start at multiples of PIECE_ALIGNMENT rows (or columns), so that they hold whole tiles of the
# GEMM kernels' unrolling (216 rows in pieces of 54: 0.56 ms; 64, 48, 64, 40: 0.37 ms).
PIECE_ALIGNMENT = 16

_POOL_LOCK = threading.Lock()
_POOLS = {}


@functools.cache
def _local_thread_setter():
    """``openblas_set_num_threads_local`` of the OpenBLAS that NumPy loaded, or None."""
    numpy_root = os.path.dirname(os.path.dirname(np.__file__))
    try:
        with open("/proc/self/maps") as maps:
            paths = {line.split()[-1] for line in maps if "openblas" in line.rsplit("/", 1)[-1]}
    except OSError:
        return None
    for path in sorted(paths):
        if not path.startswith(numpy_root + os.sep + "numpy"):
            continue
        setter = getattr(ctypes.CDLL(path), "openblas_set_num_threads_local", None)
        if setter is not None:
            setter.argtypes, setter.restype = [ctypes.c_int], ctypes.c_int
            return setter
    return None


def _pool(workers):
    """The pool of ``workers`` Python threads (made once per size and process: a forked child has none
    of its parent's threads, and would wait on their pool forever)."""
    key = (os.getpid(), workers)
    with _POOL_LOCK:
        if key not in _POOLS:
            _POOLS[key] = ThreadPoolExecutor(workers, "numba-conv3d-blas")
        return _POOLS[key]


def _piece_bounds(extent, flops):
    """(start, stop) of each piece of ``extent`` rows (or columns) of a product of ``flops``
    floating-point operations (see ``MIN_PIECE_EXTENT``)."""
    pieces = min(MAX_PIECES, extent // MIN_PIECE_EXTENT) if flops >= SMALL_PRODUCT_FLOPS else 1
    pieces = max(1, pieces - pieces % 2)
    bounds = [min(extent, -(-extent * p // (pieces * PIECE_ALIGNMENT)) * PIECE_ALIGNMENT)
              for p in range(pieces)]
    return list(zip(bounds, bounds[1:] + [extent]))


def _split(a, b, out):
    """The product's operands and output as lists of pieces: along the columns where it has at least as
    many as rows (a short reduction over many output positions reads the right operand once that way;
    a 128 x 64 x 32768 product in row halves took 1.5x the time), else along the rows."""
    rows, columns = out.shape
    flops = 2.0 * rows * a.shape[1] * columns
    if columns >= rows:
        return [(a, b[:, start:stop], out[:, start:stop]) for start, stop in _piece_bounds(columns, flops)]
    return [(a[start:stop], b, out[start:stop]) for start, stop in _piece_bounds(rows, flops)]


def _pieces_single_threaded(setter, pieces):
    """:func:`_single_threaded` on each of ``pieces`` (operands and output) in turn."""
    for a, b, out in pieces:
        _single_threaded(setter, a, b, out)


def _single_threaded(setter, a, b, out):
    """``np.matmul(a, b, out=out)`` with the calling thread's OpenBLAS count at 1, then as it was."""
    previous = setter(1)
    try:
        np.matmul(a, b, out=out)
    finally:
        setter(previous)


def matmul(a, b, out=None):
    """``a @ b`` for 2-D arrays (into ``out``, C-contiguous, when given), as NumPy computes it, with no
    OpenBLAS thread left spinning (see the module's docstring).

    Returns
    -------
    numpy.ndarray
        ``out``, or a new C-contiguous array.
    """
    if out is None:
        out = np.empty((a.shape[0], b.shape[1]), np.result_type(a, b))
    setter = _local_thread_setter()
    if setter is None:
        return np.matmul(a, b, out=out)
    pieces = _split(a, b, out)
    threads = min(len(pieces), numba.get_num_threads())
    shares = [pieces[t::threads] for t in range(threads)]
    if threads == 1:
        _pieces_single_threaded(setter, pieces)
        return out
    pool = _pool(threads - 1)
    # The calling thread's count is put back once every piece is done: a pool thread putting its own
    # back could otherwise leave the caller's at 1 (seen once in CI under load).
    previous = setter(1)
    try:
        futures = [pool.submit(_pieces_single_threaded, setter, share) for share in shares[1:]]
        _pieces_single_threaded(setter, shares[0])
        for future in futures:
            future.result()
    finally:
        setter(previous)
    return out
