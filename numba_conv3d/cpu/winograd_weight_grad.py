"""The weight gradient of 3x3x3 and 1x3x3 unit-stride convolutions by Winograd F(3, 2), for real
dtypes.

Along one dimension, the weight gradient sums ``dw[k] = sum_p g[p] x[p + k]`` (``g`` the output
gradient, ``x`` the padded input). Cut the output positions into the forward Winograd tiles of
``TILE`` = 2: tile ``t`` adds ``g[2t] x[2t + k] + g[2t + 1] x[2t + 1 + k]``, a 2-tap correlation
giving 3 outputs from the 4 inputs of the tile's patch, F(3, 2). Transposing F(2, 3)'s identity
``sum_p A^T[j, p] G[p, k] B^T[p, i] = [i = j + k]`` gives

    dw = G^T [ sum_t (A g_t) * (B^T x_t) ]

with F(2, 3)'s own matrices: the input points ``B^T x_t`` are the forward's (``winograd.py``), the
output gradient's tile takes ``A`` (4 x 2: ``(g0, g0 + g1, g0 - g1, -g1)``), and ``G^T`` (3 x 4)
turns the summed points into weights. In 3-D each (output channel, input channel) pair takes 64
products per tile of 8 output positions where the direct sums take 216 (1x3x3: 16 per 4, instead of
36).

The sum over tiles lies inside, so per transform point it is one matrix product over every tile:
``M[p] (C_out/g x C_in/g) = Gp[:, p] (C_out/g x tiles) @ Xp[p]^T``. A call runs in passes of tiles
(``_pass_tiles``): the input points of the pass (``winograd_points.input_kernel``, the pass one chunk
of tiles), the output gradient's points, then every point's product at once, each on one thread
(``cblas.run_pieces``, one piece per group and point), added to the earlier passes'. Last, ``G^T``
along each dimension in float64, rounded once. The sums' order depends on the shape alone: bitwise the
same for any thread count. Where a weight comes out NaN or infinite, the caller computes the gradient
again by its other routes (an Inf in the operands makes Inf - Inf in the transforms).
"""
import math

import numpy as np
from numba import njit, prange

from ..grad_crossovers import WINOGRAD_WEIGHT_GRAD_MIN_CHANNELS, WINOGRAD_WEIGHT_GRAD_MIN_TILES
from ..shape_rules import ceil_div, round_up
from . import blas
from .cblas import AS_STORED, TRANSPOSED, run_pieces
from .slab import index_maps
from .tasks import channel_splits, split_range
from .winograd import tile_runs
from .winograd_points import input_kernel
from .winograd_tiles import points_of, tiles_of
from .winograd_transforms import TILE

# Bytes of a pass's input and output gradient points (passes of 8 MiB, whose points stay in L3 from the
# transforms to the products, ran 1.0-1.08x faster on a quiet machine but 1.3-1.6x slower while other
# processes loaded it), and its most and fewest tiles (an odd multiple of _PASS_MULTIPLE: whole SIMD
# vectors of the transforms, rows of points whose stride is no multiple of 128 bytes; an output
# channel's points end in _ROW_PAD elements: no rows of the products' operands lie a multiple of 4 KiB
# apart, where they would share cache sets).
_PASS_BYTES = 48 * 2 ** 20
_PASS_MOST_TILES = 2048
_PASS_FEWEST_TILES = 64
_PASS_MULTIPLE = 16
_PATCH = TILE + 2
_ROW_PAD = 16


def serves(plan):
    """Whether this route computes the weight gradient of the forward ``plan``: a real dtype, NumPy's
    OpenBLAS found, a 3x3x3 or 1x3x3 kernel at unit stride and dilation."""
    return (not plan.is_complex and blas.openblas() is not None and plan.kernel_size in ((3, 3, 3), (1, 3, 3))
            and plan.stride == (1, 1, 1) and plan.dilation == (1, 1, 1))


def preferred(plan):
    """Whether the weight gradient of ``plan`` takes this route: served, with enough channels per group
    on both sides and enough tiles (``grad_crossovers.WINOGRAD_WEIGHT_GRAD_*``, measured)."""
    tiles = plan.batch * math.prod(tiles_of(plan.output_size, plan.kernel_size, TILE))
    return (serves(plan) and min(plan.in_per_group, plan.out_per_group) >= WINOGRAD_WEIGHT_GRAD_MIN_CHANNELS
            and tiles >= WINOGRAD_WEIGHT_GRAD_MIN_TILES)


@njit(cache=True, inline='always')
def _grad_rows(source, at, step, target, to, target_step, count):
    """``A g`` along one dimension, ``count`` elements side by side: rows ``at`` and ``at + step`` of
    ``source`` -> rows ``to + j * target_step`` (j < 4) of ``target``."""
    for t in range(count):
        g0, g1 = source[at + t], source[at + step + t]
        target[to + t] = g0
        target[to + target_step + t] = g0 + g1
        target[to + 2 * target_step + t] = g0 - g1
        target[to + 3 * target_step + t] = -g1


@njit(cache=True)
def _grad_task(grad, runs, planes, count, width, splits, points, task):
    """Task of :func:`_grad_kernel`: (group, split of its output channels)."""
    groups, out_per_group = points.shape[:2]
    g, split = task // splits, task % splits
    start, stop = split_range(split, out_per_group, splits)
    tile_depth = TILE if planes > 1 else 1
    depth, height, columns = grad.shape[2:]
    pairs = np.zeros(tile_depth * TILE * TILE * width, grad.dtype)
    along_w = np.zeros(tile_depth * TILE * _PATCH * width, grad.dtype)
    along_h = np.zeros(tile_depth * _PATCH * _PATCH * width, grad.dtype)
    for o in range(start, stop):
        channel = g * out_per_group + o
        for run in range(runs.shape[0]):
            slot, length, n, tile_d, tile_h, tile_w = runs[run]
            for a in range(tile_depth):
                for b in range(TILE):
                    d, h = tile_depth * tile_d + a, TILE * tile_h + b
                    at = (a * TILE + b) * TILE * width + slot
                    whole = 0
                    if d < depth and h < height:
                        row = grad[n, channel, d, h]
                        whole = max(0, min(length, (columns - TILE * tile_w) // TILE))
                        for t in range(whole):
                            pairs[at + t] = row[TILE * (tile_w + t)]
                            pairs[at + width + t] = row[TILE * (tile_w + t) + 1]
                        if whole < length:  # a last tile half past the edge
                            pairs[at + whole] = row[TILE * (tile_w + whole)]
                            pairs[at + width + whole] = 0
                            whole += 1
                    for t in range(whole, length):
                        pairs[at + t] = 0
                        pairs[at + width + t] = 0
        for ab in range(tile_depth * TILE):
            _grad_rows(pairs, ab * TILE * width, width, along_w, ab * _PATCH * width, width, width)
        for a in range(tile_depth):
            for k in range(_PATCH):
                _grad_rows(along_w, (a * TILE * _PATCH + k) * width, _PATCH * width, along_h,
                           (a * _PATCH * _PATCH + k) * width, _PATCH * width, width)
        target = points[g, o, :count * width]
        if planes > 1:
            for bk in range(_PATCH * _PATCH):
                _grad_rows(along_h, bk * width, _PATCH * _PATCH * width, target, bk * width,
                           _PATCH * _PATCH * width, width)
        else:
            target[:] = along_h


@njit(parallel=True, cache=True)
def _grad_kernel(grad, runs, planes, count, width, splits, points):
    """``points`` (groups, C_out/g, ``count`` points x ``width`` tiles of the pass, then ``_ROW_PAD``) =
    ``A g`` of the pass's tiles of the output gradient (``runs``: ``winograd.tile_runs``; zeros past the
    output's edges and the last tile)."""
    for task in prange(points.shape[0] * splits):
        _grad_task(grad, runs, planes, count, width, splits, points, task)


@njit(cache=True, inline='always')
def _weight_rows(source, at, step, target, to, target_step, count):
    """``G^T m`` along one dimension, ``count`` elements side by side: rows ``at + j * step`` (j < 4)
    of ``source`` -> rows ``to + i * target_step`` (i < 3) of ``target``."""
    for c in range(count):
        m0, m1 = source[at + c], source[at + step + c]
        m2, m3 = source[at + 2 * step + c], source[at + 3 * step + c]
        half_sum, half_difference = (m1 + m2) * 0.5, (m1 - m2) * 0.5
        target[to + c] = m0 + half_sum
        target[to + target_step + c] = half_difference
        target[to + 2 * target_step + c] = half_sum + m3


@njit(parallel=True, cache=True)
def _output_kernel(sums, planes, out):
    """``out`` (C_out, C_in/g, KD, 3, 3) = ``G^T`` of ``sums`` (groups, points, C_out/g, C_in/g) along
    W, H and (3x3x3) D, in float64, rounded once; whether every weight is finite."""
    groups, count, out_per_group, in_per_group = sums.shape
    nonfinite = np.zeros(out.shape[0], np.bool_)
    for channel in prange(out.shape[0]):
        g, o = channel // out_per_group, channel % out_per_group
        points = np.empty(count * in_per_group, np.float64)
        along_w = np.empty(planes * _PATCH * 3 * in_per_group, np.float64)
        along_h = np.empty(planes * 9 * in_per_group, np.float64)
        along_d = np.empty(27 * in_per_group, np.float64)
        for p in range(count):
            for c in range(in_per_group):
                points[p * in_per_group + c] = sums[g, p, o, c]
        for ab in range(planes * _PATCH):
            _weight_rows(points, ab * _PATCH * in_per_group, in_per_group, along_w, ab * 3 * in_per_group,
                         in_per_group, in_per_group)
        for a in range(planes):
            for k in range(3):
                _weight_rows(along_w, (a * _PATCH * 3 + k) * in_per_group, 3 * in_per_group, along_h,
                             (a * 9 + k) * in_per_group, 3 * in_per_group, in_per_group)
        result = along_h
        if planes > 1:
            for hk in range(9):
                _weight_rows(along_h, hk * in_per_group, 9 * in_per_group, along_d, hk * in_per_group,
                             9 * in_per_group, in_per_group)
            result = along_d
        flat = out[channel].reshape(in_per_group, -1)
        taps = flat.shape[1]
        found = False
        for c in range(in_per_group):
            for t in range(taps):
                value = out.dtype.type(result[t * in_per_group + c])
                flat[c, t] = value
                found |= not np.isfinite(value)
        nonfinite[channel] = found
    return not nonfinite.any()


def _pass_tiles(total, count, in_per_group, out_per_group, groups, itemsize):
    """Tiles of a pass: the fewest equal passes whose input and output gradient points fit
    ``_PASS_BYTES`` (a pass between ``_PASS_FEWEST_TILES`` and ``_PASS_MOST_TILES``), rounded up to an odd
    number of ``_PASS_MULTIPLE``."""
    per_tile = itemsize * groups * count * (in_per_group + out_per_group)
    fitting = max(_PASS_FEWEST_TILES, min(_PASS_MOST_TILES, _PASS_BYTES // per_tile))
    width = round_up(ceil_div(total, ceil_div(total, fitting)), _PASS_MULTIPLE)
    return width + _PASS_MULTIPLE if width // _PASS_MULTIPLE % 2 == 0 else width


def _product_table(groups, count, out_per_group, in_per_group, width, valid, itemsize):
    """``cblas.run_pieces``' flags, sizes and byte offsets: one piece per (group, point), ``Gp[g, :, p]``
    (C_out/g x ``valid`` of ``width`` tiles) times ``Xp[g, 0, p]`` transposed into ``sums[g, p]``."""
    pieces = groups * count
    flags = np.empty((pieces, 2), np.int32)
    flags[:] = AS_STORED, TRANSPOSED
    sizes = np.empty((pieces, 6), np.int64)
    sizes[:] = out_per_group, in_per_group, valid, count * width + _ROW_PAD, width, in_per_group
    g, p = np.divmod(np.arange(pieces, dtype=np.uint64), np.uint64(count))
    offsets = np.stack([g * out_per_group * (count * width + _ROW_PAD) + p * width,
                        (g * count + p) * in_per_group * width,
                        (g * count + p) * out_per_group * in_per_group], axis=1) * np.uint64(itemsize)
    return flags, sizes, offsets


def weight_grad(x, grad, weight_shape, stride, dilation, pad_front, padded, mode, groups):
    """The weight's gradient (``weight_shape``) from the batched input ``x`` and output gradient
    ``grad`` (C-contiguous), or None where a weight came out NaN or infinite (see the module's
    docstring). The other arguments are the forward plan's numbers."""
    out_channels, in_per_group, kernel = weight_shape[0], weight_shape[1], tuple(weight_shape[2:])
    out_per_group = out_channels // groups
    tiles = tiles_of(grad.shape[2:], kernel, TILE)
    count = points_of(kernel, TILE)
    planes = count // (_PATCH * _PATCH)
    total = x.shape[0] * math.prod(tiles)
    width = _pass_tiles(total, count, in_per_group, out_per_group, groups, x.itemsize)
    input_points = np.empty((groups, 1, count, in_per_group, width), x.dtype)
    grad_points = np.empty((groups, out_per_group, count * width + _ROW_PAD), x.dtype)
    sums = np.empty((groups, count, out_per_group, in_per_group), x.dtype)
    maps = index_maps(x, padded, pad_front, mode)
    library = blas.openblas()
    bases = np.array([grad_points.ctypes.data, input_points.ctypes.data, sums.ctypes.data], np.uint64)
    input_splits = channel_splits(in_per_group, groups)
    grad_splits = channel_splits(out_per_group, groups)
    for first in range(0, total, width):
        input_kernel(x, maps, tiles, _PATCH, TILE, first // width, 1, input_splits, input_points)
        _grad_kernel(grad, tile_runs(first, width, total, tiles), planes, count, width, grad_splits,
                     grad_points)
        table = _product_table(groups, count, out_per_group, in_per_group, width,
                               min(width, total - first), x.itemsize)
        with blas.one_thread(library):
            run_pieces(library.gemm_addresses[x.dtype], library.set_local_threads_address, library.integer(0),
                       *table, bases, x.dtype.type(1), x.dtype.type(0 if first == 0 else 1))
    out = np.empty(weight_shape, x.dtype)
    return out if _output_kernel(sums, planes, out) else None
