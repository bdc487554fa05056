"""Winograd for 3x3 kernels at stride 2 (3x3x3 at stride 2, 1x3x3 at stride 2 along H and W): the
downsampling convolutions of 3-D ResNets and U-Nets, fused as ``winograd.py`` runs unit strides.

Along a dimension, a tile of 2 outputs ``y_j = w0 x_{2j} + w1 x_{2j+1} + w2 x_{2j+2}`` reads 5 inputs
``x0 ... x4``. Its even inputs ``(x0, x2, x4)`` meet the 2-tap kernel ``(w0, w2)`` (F(2, 2): 3
multiplies instead of 4), its odd ones ``(x1, x3)`` the single tap ``w1`` (2 multiplies): 5 points.

- input ``B^T d``: ``(x0 - x2, x2, x4 - x2, x1, x3)``;
- weight ``G g``: ``(w0, w0 + w2, w2, w1, w1)``, in float64, rounded once;
- output ``A^T m``: ``y0 = m0 + m1 + m3``, ``y1 = m1 + m2 + m4``.

A 3x3x3 kernel takes 5^3 = 125 multiplies per channel pair and tile of 2x2x2 outputs instead of 216
(1.73x fewer), a 1x3x3 kernel 25 per tile of 1x2x2 outputs instead of 36 (1.44x fewer); consecutive
tiles start 4 inputs apart. A task transforms a chunk of tiles (its input points stay in cache),
multiplies them by the weight points of its output channel blocks (``winograd.multiply_points``) and
transforms each block back, as ``winograd.py``'s tasks do; each output is summed in a fixed order, so
results are bitwise the same for any thread count. Where an output is not finite, the caller computes
the convolution again by a direct algorithm. Its weight points come from ``winograd.transform_weights``
(``G`` picked by its ``STRIDED_PATCH`` points); its input and output transforms and tasks are written
apart from ``winograd.py``'s, with the 5-point geometry as constants: sharing ``winograd.py``'s kernel (its
transforms picking the 5-point ones by the patch at run time) gave bitwise the same results, but the
unit-stride kernels ran 2-5% slower and this one 3-7% (2026-12-06, Zen 4, both builds alternating in
one process).

Rounding: the transforms hold additions only (no fractions), at most 3 terms along each dimension, so
an output is within about ``(C_in/g + 11) * eps`` times the same expression on absolute values
(``|A|^T [sum_c |U_c| |V_c|] |A|``; 3 roundings in the input transform, 1 in the weight points, 6
in the output transform, 1 for the bias).
"""
import math
import numpy as np
from numba import njit, prange

from ..config import BLOCK_CHANNELS, BLOCK_VECTORS, WINOGRAD_PASS_BLOCKS
from ..shape_rules import ceil_div
from .simd import vector_lanes
from .slab import index_maps, padded_row
from .tasks import channel_splits, split_range
from .unlinked import call_apart
from .winograd import multiply_points, tile_runs, transform_weights
from .winograd_tiles import chunk_tiles
from .winograd_transforms import STRIDED_PATCH as PATCH
from .winograd_transforms import row_span

# Points along a transformed dimension, outputs of a tile along it, and inputs between consecutive tiles.
TILE = 2
STEP = 4
_PLANE_POINTS = PATCH * PATCH
_UNSIGNED = np.uint64


@njit(cache=True, inline='always')
def _input_points(source, start, step, stride, target, at, target_step, count):
    """Rows ``at + i * target_step`` (i < 5) of ``target`` = ``B^T`` times the elements ``start + j *
    step + t * stride`` (j < 5) of ``source``, for t < ``count``."""
    patch_rows = row_span(source, start, step, PATCH, (count - 1) * stride + 1)
    points = row_span(target, at, target_step, PATCH, count)
    for t in range(count):
        s = t * stride
        d0, d1 = patch_rows[_UNSIGNED(s)], patch_rows[_UNSIGNED(s + step)]
        d2, d3 = patch_rows[_UNSIGNED(s + 2 * step)], patch_rows[_UNSIGNED(s + 3 * step)]
        d4 = patch_rows[_UNSIGNED(s + 4 * step)]
        points[_UNSIGNED(t)] = d0 - d2
        points[_UNSIGNED(t + target_step)] = d2
        points[_UNSIGNED(t + 2 * target_step)] = d4 - d2
        points[_UNSIGNED(t + 3 * target_step)] = d1
        points[_UNSIGNED(t + 4 * target_step)] = d3


@njit(cache=True, inline='always')
def _output_pair(source, s, step):
    """``A^T`` times the elements ``s + j * step`` (j < 5) of ``source``: a tile's two outputs."""
    m0, m1 = source[_UNSIGNED(s)], source[_UNSIGNED(s + step)]
    m2, m3 = source[_UNSIGNED(s + 2 * step)], source[_UNSIGNED(s + 3 * step)]
    m4 = source[_UNSIGNED(s + 4 * step)]
    return m0 + m1 + m3, m1 + m2 + m4


@njit(cache=True, inline='always')
def _output_points(source, start, step, target, at, target_step, count):
    """Rows ``at`` and ``at + target_step`` of ``target`` = ``A^T`` times rows ``start + j * step`` (j <
    5) of ``source``, element by element over ``count``."""
    products = row_span(source, start, step, PATCH, count)
    outputs = row_span(target, at, target_step, TILE, count)
    for t in range(count):
        outputs[_UNSIGNED(t)], outputs[_UNSIGNED(target_step + t)] = _output_pair(products, t, step)


@njit(cache=True, inline='always')
def _transform_input(x, c0, maps, runs, planes, depth_step, chunk, points, along_w, along_h, row):
    """``points[p, c, t]`` (``planes`` * 25, C_in/g, ``chunk``) = the input points of the chunk's tiles
    (``runs``: ``winograd.tile_runs``) for the group's input channels from ``c0``: rows transformed
    along W as they are read (``row``: one padded input row), then along H and D (``along_w`` and
    ``along_h``: ``planes`` * 25 * ``chunk`` each); tile plane ``d`` reads from padded plane
    ``depth_step * d``."""
    map_d, map_h = maps[0], maps[1]
    in_per_group = points.shape[0] // (planes * _PLANE_POINTS * chunk)
    for c in range(in_per_group):
        for run in range(runs.shape[0]):
            slot, length, n, tile_d, tile_h, tile_w = runs[run]
            for a in range(planes):
                pd = depth_step * tile_d + a
                sd = map_d[pd] if pd < map_d.shape[0] else -1
                for b in range(PATCH):
                    ph = STEP * tile_h + b
                    sh = map_h[ph] if ph < map_h.shape[0] else -1
                    at = (a * PATCH + b) * PATCH * chunk + slot
                    if sd < 0 or sh < 0:
                        for k in range(PATCH):
                            for t in range(length):
                                along_w[at + k * chunk + t] = 0
                        continue
                    padded_row(x, n, c0 + c, sd, sh, maps, STEP * tile_w, STEP * length + 1, row)
                    _input_points(row, 0, 1, STEP, along_w, at, chunk, length)
        for a in range(planes):
            for k in range(PATCH):
                at = (a * _PLANE_POINTS + k) * chunk
                _input_points(along_w, at, PATCH * chunk, 1, along_h, at, PATCH * chunk, chunk)
        for bk in range(_PLANE_POINTS):
            if planes > 1:
                _input_points(along_h, bk * chunk, _PLANE_POINTS * chunk, 1, points,
                              (bk * in_per_group + c) * chunk, _PLANE_POINTS * in_per_group * chunk, chunk)
                continue
            for t in range(chunk):
                points[_UNSIGNED((bk * in_per_group + c) * chunk + t)] = along_h[_UNSIGNED(bk * chunk + t)]


@njit(cache=True, inline='always')
def _transform_output(products, planes, channels, lane, chunk, along_w, along_h):
    """``along_h`` (rows ``(a * 2 + j) * 2 + k``) = the products of channel ``lane`` (of ``channels``)
    transformed back along W and H (``along_w``: ``planes`` * 10 * ``chunk``, scratch)."""
    for ab in range(planes * PATCH):
        _output_points(products, (ab * PATCH * channels + lane) * chunk, channels * chunk,
                       along_w, ab * TILE * chunk, chunk, chunk)
    for a in range(planes):
        for k in range(TILE):
            _output_points(along_w, (a * PATCH * TILE + k) * chunk, TILE * chunk, along_h,
                           (a * TILE * TILE + k) * chunk, TILE * chunk, chunk)


@njit(cache=True, inline='always')
def _value(values, at, planes, i, chunk, bias_value):
    """Output ``i`` along D (of ``planes`` points) of the tile column at ``at``, plus the bias."""
    if planes > 1:
        return _output_pair(values, at, TILE * TILE * chunk)[i] + bias_value
    return values[_UNSIGNED(at)] + bias_value


@njit(cache=True, inline='always')
def _store_tiles(values, planes, chunk, runs, out, o, bias_value):
    """Write the chunk's tiles of output channel ``o``: ``values`` (:func:`_transform_output`)
    transformed along D where ``planes`` is 5, plus the bias, clipped to the output; a row's two
    columns of each tile side by side. Returns whether every value written is finite."""
    out_depth, out_height, out_width = out.shape[2:]
    tile_depth = TILE if planes > 1 else 1
    finite = True
    for run in range(runs.shape[0]):
        slot, length, n, tile_d, tile_h, tile_w = runs[run]
        first = TILE * tile_w
        pairs = min(length, (out_width - first) // TILE)
        for i in range(tile_depth):
            od = tile_depth * tile_d + i
            if od >= out_depth:
                continue
            for j in range(TILE):
                oh = TILE * tile_h + j
                if oh >= out_height:
                    continue
                row = out[n, o, od, oh]
                target = row[first:first + TILE * pairs]
                at = j * TILE * chunk + slot
                for t in range(pairs):
                    left = _value(values, at + t, planes, i, chunk, bias_value)
                    right = _value(values, at + chunk + t, planes, i, chunk, bias_value)
                    target[_UNSIGNED(TILE * t)] = left
                    target[_UNSIGNED(TILE * t + 1)] = right
                    finite &= np.isfinite(left) & np.isfinite(right)
                if pairs < length:
                    value = _value(values, at + pairs, planes, i, chunk, bias_value)
                    row[first + TILE * pairs] = value
                    finite &= np.isfinite(value)
    return finite


@njit(cache=True)
def _task(x, packed, bias, out, maps, tiles, planes, depth_step, splits, nonfinite, task):
    """Task ``task`` of :func:`_kernel`: (group, chunk of tiles, split of the output channel blocks)."""
    groups, count, blocks, in_per_group = packed.shape[:4]
    out_per_group = out.shape[1] // groups
    chunk = BLOCK_VECTORS * vector_lanes(x)
    total = x.shape[0] * tiles[0] * tiles[1] * tiles[2]
    chunks = ceil_div(total, chunk)
    g, rest = task // (chunks * splits), task % (chunks * splits)
    first_tile, split = rest // splits * chunk, rest % splits
    runs = tile_runs(first_tile, chunk, total, tiles)
    points = np.empty(count * in_per_group * chunk, x.dtype)
    along_w = np.empty(count * chunk, x.dtype)
    along_h = np.empty(count * chunk, x.dtype)
    row = np.empty(STEP * chunk + PATCH, x.dtype)
    _transform_input(x, g * in_per_group, maps, runs, planes, depth_step, chunk, points, along_w, along_h,
                     row)
    products = np.empty(count * WINOGRAD_PASS_BLOCKS * BLOCK_CHANNELS * chunk, x.dtype)
    first, stop = split_range(split, blocks, splits)
    finite = True
    for pass_first in range(first, stop, WINOGRAD_PASS_BLOCKS):
        pass_stop = min(stop, pass_first + WINOGRAD_PASS_BLOCKS)
        multiply_points(packed, g, pass_first, pass_stop, points, in_per_group, chunk, products)
        first_channel = pass_first * BLOCK_CHANNELS
        for lane in range(min(pass_stop * BLOCK_CHANNELS, out_per_group) - first_channel):
            o = g * out_per_group + first_channel + lane
            _transform_output(products, planes, (pass_stop - pass_first) * BLOCK_CHANNELS, lane, chunk,
                              along_w, along_h)
            finite &= _store_tiles(along_h, planes, chunk, runs, out, o,
                                   bias[o] if bias.shape[0] else x.dtype.type(0))
    nonfinite[task] = not finite


@njit(parallel=True, cache=True)
def _kernel(x, packed, bias, out, maps, tiles, planes, depth_step, splits, nonfinite):
    """Fill ``out`` from ``x`` and the weight points ``packed`` (:func:`transform_weights`), in tasks of
    (group, chunk of tiles, split of the output channel blocks), each run apart (``unlinked.py``);
    ``nonfinite[task]`` is set where a task wrote a NaN or Inf."""
    for task in prange(nonfinite.shape[0]):
        call_apart(_task, x, packed, bias, out, maps, tiles, planes, depth_step, splits, nonfinite,
                   np.int64(task))


def _geometry(kernel_size, stride, output_size):
    """(points along D, padded planes between consecutive tile planes, tiles along (D, H, W))."""
    if kernel_size[0] == 3:
        return PATCH, STEP, tuple(ceil_div(extent, TILE) for extent in output_size)
    return 1, stride[0], (output_size[0], ceil_div(output_size[1], TILE), ceil_div(output_size[2], TILE))


def compute(x, weight, bias, has_bias, out, stride, dilation, pad_front, padded, mode, groups):
    """Fill the batched ``out`` from the batched ``x`` by stride-2 Winograd (real dtypes, a plan
    ``serves`` takes). Returns whether every output is finite (where not, ``out`` holds what the
    transforms gave, and the caller computes it again directly).

    The arguments are the plan's numbers, as :func:`numba_conv3d.cpu.direct.compute` takes them.
    """
    planes, depth_step, tiles = _geometry(weight.shape[2:], stride, out.shape[2:])
    packed = transform_weights(weight, groups, planes, PATCH, 0,
                               ceil_div(out.shape[1] // groups, BLOCK_CHANNELS), False)
    chunks = ceil_div(x.shape[0] * math.prod(tiles), chunk_tiles(x.itemsize))
    splits = channel_splits(packed.shape[2], groups * chunks)
    nonfinite = np.zeros(groups * chunks * splits, np.bool_)
    _kernel(x, packed, bias if has_bias else bias[:0], out, index_maps(x, padded, pad_front, mode), tiles,
            planes, depth_step, splits, nonfinite)
    return not nonfinite.any()


def serves(plan):
    """Whether stride-2 Winograd computes a plan: a real dtype, a 3x3x3 kernel at stride 2 or a 1x3x3
    kernel at stride 2 along H and W (any along D), no dilation."""
    return (not plan.is_complex and plan.dilation == (1, 1, 1) and plan.stride[1:] == (2, 2)
            and (plan.kernel_size == (1, 3, 3) or (plan.kernel_size == (3, 3, 3) and plan.stride[0] == 2)))


def _points(plan):
    return _geometry(plan.kernel_size, plan.stride, plan.output_size)[0] * _PLANE_POINTS


def call_tiles(plan):
    """Tiles of a call, over its batch and output volume."""
    return plan.batch * math.prod(_geometry(plan.kernel_size, plan.stride, plan.output_size)[2])


def workspace_bytes(plan):
    """Scratch bytes one worker thread holds: a chunk's input points, products and transform rows."""
    itemsize = np.dtype(plan.dtype).itemsize
    chunk = chunk_tiles(itemsize)
    products = WINOGRAD_PASS_BLOCKS * BLOCK_CHANNELS
    return itemsize * (chunk * _points(plan) * (plan.in_per_group + products + 2) + STEP * chunk + PATCH)


def call_bytes(plan):
    """Bytes a call holds once: its weight points."""
    blocks = ceil_div(plan.out_per_group, BLOCK_CHANNELS)
    return (np.dtype(plan.dtype).itemsize * plan.groups * _points(plan) * blocks * plan.in_per_group
            * BLOCK_CHANNELS)
