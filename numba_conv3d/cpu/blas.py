"""Matrix products by NumPy's BLAS that leave no BLAS thread spinning after them.

OpenBLAS (NumPy's BLAS in its PyPI wheels) keeps its worker threads spinning for 60-100 ms after each
threaded product, so that whatever runs next gets a core less: on 2 cores, torch's 1x1x1 convolution
ran 30 ms instead of 0.3-0.9 ms 10 ms after one of our products, a torch k3 layer 80 ms instead of 34,
our depthwise kernel 1.25 ms instead of 0.93 (docs/ARCHITECTURE.md, "Networks suite and new routes").
Here a product is cut into pieces of rows or of columns (``_split``), each computed by one call of
OpenBLAS's ``cblas_?gemm`` on one of Numba's threads (``cblas.run_pieces``; a product of one piece:
NumPy's ``matmul`` on the calling thread) with OpenBLAS's thread count at 1
(``openblas_set_num_threads_local``, OpenBLAS >= 0.3.27): no OpenBLAS worker runs. In NumPy's OpenBLAS
that "local" count is shared by all threads (a count set on one thread is the one another thread reads
back), so the caller sets it around the whole product and puts it back after (``one_thread``);
meanwhile other threads' OpenBLAS products run on one thread too. The pieces depend on the product's
shape alone (``_piece_bounds``) and never split a sum, so the result
is bitwise the same for any thread count; OpenBLAS's own threads were not (a weight gradient's product
differed from run to run). Where NumPy's BLAS is not such an OpenBLAS (or is not found through
``/proc/self/maps``), a product is NumPy's ``matmul`` as it is; where CBLAS cannot read an operand in
place, NumPy's ``matmul`` with the thread's OpenBLAS count at 1.
"""
import contextlib
import ctypes
import functools
import os
from dataclasses import dataclass

import numpy as np

from .cblas import AS_STORED, TRANSPOSED, run_pieces

# A product is cut into pieces of at least MIN_PIECE_EXTENT rows (or columns), at most MAX_PIECES of them
# (an even number, which 2 and 4 threads share evenly; each piece streams the other operand again: C3D's
# conv4b product in 8 pieces took 86 ms, in 4 75 ms); one of fewer than SMALL_PRODUCT_FLOPS is one
# piece, as handing a piece to another thread costs tens of microseconds. That cost depends on what ran
# before: after 1 ms idle, when Numba's threads sleep, pieces lose on small products (2-core Zen 4, in
# pieces / on the calling thread: 12-17 MFLOP 192-293 / 146-235 us, 4.2-12 MFLOP 1.0-1.33x, 24-26 MFLOP
# 0.9-1.1, 51-54 MFLOP 0.70-0.78), right after a parallel kernel, as in a network, they win (2026-12-07:
# 4.2-26 MFLOP 0.70-0.95x). The threshold follows networks (the suite's timing, 2026-12-07, 4 MFLOP /
# 20 MFLOP, three alternations of 11 rounds): V-Net's down4.down (16.8 MFLOP) 0.37-0.43 / 0.46-0.48 ms,
# X3D-S's 12 MFLOP shortcuts 0.17-0.26 / 0.21-0.29 ms, their training steps 0.61-1.08 / 0.79-1.54 ms (an
# earlier run with 8 MFLOP and a slower piece table found those shortcuts 1.2-1.3x slower).
# Pieces of 64 rows ran 1.3x faster than pieces of 32 (a weight gradient's 256 x 784 x 1728 product,
# Zen 4), each piece packing the other operand again.
MIN_PIECE_EXTENT = 48
MAX_PIECES = 4
SMALL_PRODUCT_FLOPS = 4e6
# Pieces start at multiples of PIECE_ALIGNMENT rows (or columns), so that they hold whole tiles of the
# GEMM kernels' unrolling (216 rows in pieces of 54: 0.56 ms; 64, 48, 64, 40: 0.37 ms).
PIECE_ALIGNMENT = 16
# OpenBLAS computes a product of at most 4 x 65536 multiply-adds (m x n x k: SMP_THRESHOLD_MIN x
# GEMM_MULTITHREAD_THRESHOLD in its interface/gemm.c) on the calling thread whatever its thread count;
# products up to a quarter of that skip setting the count (X3D's squeeze-excitation layers: blas.matmul
# 6 -> 2 us per call in a loop, 40-60 -> 15-20 us right after a large layer).
CALLER_ONLY_MACS = 65536


@dataclass(frozen=True)
class _OpenBLAS:
    """NumPy's OpenBLAS: its thread count setter (a ctypes function and its address), the
    addresses of its ``cblas_?gemm`` by dtype, and the dtype of its integers."""

    set_local_threads: object
    set_local_threads_address: int
    gemm_addresses: dict
    integer: type


def _gemm_address(library, letter):
    """Address of ``cblas_{letter}gemm`` in ``library`` under the names OpenBLAS builds give it (the
    64-bit integer builds in NumPy's wheels add a prefix and a suffix), and whether its integers are
    64-bit; None if absent."""
    for name in (f"cblas_{letter}gemm", f"scipy_cblas_{letter}gemm64_", f"cblas_{letter}gemm64_",
                 f"scipy_cblas_{letter}gemm"):
        function = getattr(library, name, None)
        if function is not None:
            return ctypes.cast(function, ctypes.c_void_p).value, name.endswith("64_")
    return None


@functools.cache
def openblas():
    """The OpenBLAS that NumPy loaded, if it has ``openblas_set_num_threads_local`` and both real
    ``cblas_?gemm``; else None."""
    numpy_root = os.path.dirname(os.path.dirname(np.__file__))
    try:
        with open("/proc/self/maps") as maps:
            paths = {line.split()[-1] for line in maps if "openblas" in line.rsplit("/", 1)[-1]}
    except OSError:
        return None
    for path in sorted(paths):
        if not path.startswith(numpy_root + os.sep + "numpy"):
            continue
        library = ctypes.CDLL(path)
        setter = getattr(library, "openblas_set_num_threads_local", None)
        gemms = {np.dtype(dtype): _gemm_address(library, letter)
                 for dtype, letter in ((np.float32, "s"), (np.float64, "d"))}
        if setter is None or None in gemms.values() or len({wide for _, wide in gemms.values()}) != 1:
            continue
        setter.argtypes, setter.restype = [ctypes.c_int], ctypes.c_int
        wide = gemms[np.dtype(np.float32)][1]
        return _OpenBLAS(setter, ctypes.cast(setter, ctypes.c_void_p).value,
                         {dtype: address for dtype, (address, _) in gemms.items()},
                         np.int64 if wide else np.int32)
    return None


def _piece_bounds(extent, flops):
    """(start, stop) of each piece of ``extent`` rows (or columns) of a product of ``flops``
    floating-point operations (see ``MIN_PIECE_EXTENT``)."""
    pieces = min(MAX_PIECES, extent // MIN_PIECE_EXTENT) if flops >= SMALL_PRODUCT_FLOPS else 1
    pieces = max(1, pieces - pieces % 2)
    bounds = [min(extent, -(-extent * p // (pieces * PIECE_ALIGNMENT)) * PIECE_ALIGNMENT)
              for p in range(pieces)]
    return list(zip(bounds, bounds[1:] + [extent]))


def _split(out, inner):
    """(axis, piece bounds) of a product into ``out`` over ``inner`` terms: pieces of columns (axis 1)
    where it has at least as many columns as rows (a short reduction over many output positions reads
    the right operand once that way; a 128 x 64 x 32768 product in row halves took 1.5x the time), else
    of rows (axis 0)."""
    rows, columns = out.shape
    flops = 2.0 * rows * inner * columns
    if columns >= rows:
        return 1, _piece_bounds(columns, flops)
    return 0, _piece_bounds(rows, flops)


def _cblas_layout(matrix):
    """(flag, leading dimension) under which row-major CBLAS reads the 2-D ``matrix`` in place: as
    stored (unit column stride) or transposed (unit row stride); None where it cannot."""
    return _layout_of(_layout_key(matrix))


def _layout_key(matrix):
    """What a matrix's CBLAS layout depends on: shape, strides, alignment and item size."""
    return matrix.shape, matrix.strides, matrix.flags.aligned, matrix.itemsize


def _layout_of(key):
    """``_cblas_layout`` of the matrix with ``_layout_key`` ``key``."""
    (rows, columns), strides, aligned, itemsize = key
    if not aligned or any(stride % itemsize for stride in strides):
        return None
    row_step, column_step = (stride // itemsize for stride in strides)
    if column_step == 1 or columns == 1:
        leading = row_step if rows > 1 else columns
        if leading >= max(1, columns):
            return AS_STORED, leading
    if row_step == 1 or rows == 1:
        leading = column_step if columns > 1 else rows
        if leading >= max(1, rows):
            return TRANSPOSED, leading
    return None


@functools.lru_cache(maxsize=1024)
def _piece_layout(a_key, b_key, out_key, axis, bounds):
    """(flags, sizes, byte offsets) of ``cblas.run_pieces`` for the pieces of a product whose matrices
    have the ``_layout_key`` s given, or None where CBLAS cannot read one in place. A piece has its whole
    matrix's layout, so the table depends on the layouts alone; a network calls the same few, so the
    table is kept (building it took 16 us a call, 5% of a 25 MFLOP product)."""
    layouts = [_layout_of(key) for key in (a_key, b_key, out_key)]
    if 0 in a_key[0] + b_key[0] or None in layouts or layouts[2][0] != AS_STORED:
        return None
    (flag_a, leading_a), (flag_b, leading_b), (_, leading_out) = layouts
    edges = np.array(bounds, np.int64)
    starts, extents = edges[:, 0], edges[:, 1] - edges[:, 0]
    count = len(bounds)
    flags = np.empty((count, 2), np.int32)
    flags[:] = flag_a, flag_b
    sizes = np.empty((count, 6), np.int64)
    sizes[:] = out_key[0][0], out_key[0][1], a_key[0][1], leading_a, leading_b, leading_out
    sizes[:, axis] = extents
    offsets = np.zeros((count, 3), np.uint64)
    # rows of a and out, or columns of b and out
    offsets[:, axis] = (starts * (a_key[1][0], b_key[1][1])[axis]).astype(np.uint64)
    offsets[:, 2] = (starts * out_key[1][axis]).astype(np.uint64)
    return flags, sizes, offsets


def _piece_table(openblas, a, b, out, axis, bounds):
    """``cblas.run_pieces``'s arguments for the pieces of ``a @ b`` into ``out`` along ``axis`` of
    ``out`` (``bounds``: (start, stop) of each), or None where CBLAS cannot read an operand in place or
    one is empty."""
    layout = _piece_layout(_layout_key(a), _layout_key(b), _layout_key(out), axis, tuple(bounds))
    if layout is None:
        return None
    bases = np.array((a.ctypes.data, b.ctypes.data, out.ctypes.data), np.uint64)
    return (openblas.gemm_addresses[out.dtype], openblas.set_local_threads_address, openblas.integer(0),
            *layout, bases, out.dtype.type(1), out.dtype.type(0))


@contextlib.contextmanager
def one_thread(library):
    """OpenBLAS's thread count at 1 for the calling thread meanwhile (and for every thread, in builds
    where that count is shared), then as it was."""
    previous = library.set_local_threads(1)
    try:
        yield
    finally:
        library.set_local_threads(previous)


def matmul(a, b, out=None):
    """``a @ b`` for 2-D arrays (into ``out`` when given), as NumPy computes it, with no OpenBLAS thread
    left spinning (see the module's docstring).

    Returns
    -------
    numpy.ndarray
        ``out``, or a new C-contiguous array.
    """
    if out is None:
        out = np.empty((a.shape[0], b.shape[1]), np.result_type(a, b))
    library = openblas()
    if library is None or a.shape[0] * a.shape[1] * b.shape[1] <= CALLER_ONLY_MACS:
        with np.errstate(all="ignore"):
            return np.matmul(a, b, out=out)
    axis, bounds = _split(out, a.shape[1])
    table = None
    if len(bounds) > 1 and out.dtype in library.gemm_addresses and a.dtype == b.dtype == out.dtype:
        table = _piece_table(library, a, b, out, axis, bounds)
    # One piece is computed on the calling thread: starting Numba's threads for it cost 40 us after a
    # pause, more than a small product (an X3D squeeze-excitation layer: 0.12 -> 0.18 ms). NaN and Inf
    # pass through silently, as in the kernels (NumPy would warn).
    with one_thread(library), np.errstate(all="ignore"):
        if table is not None:
            run_pieces(*table)
        else:
            np.matmul(a, b, out=out)
    return out
