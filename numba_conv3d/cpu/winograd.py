"""Winograd F(2x2x2, 3x3x3) and F(2x2x2, 5x5x5) convolution on the CPU, for real dtypes: 3x3x3 and 5x5x5
kernels at unit stride and dilation, and 1x3x3 and 1x5x5 kernels plane by plane (F(2x2, 3x3), F(2x2,
5x5); on wide planes F(4, 3) along H and W, for 1x3x3 and 3x3x3 kernels, ``plane_tile``). What follows
describes F(2, 3); F(2, 5) takes 6x6x6 patches to 216 points, 216 multiplies instead of 1000 (4.63x
fewer), F(4x4, 3x3) 6x6 patches to 36 points for 16 outputs, and the 2x4x4 tiles of a 3x3x3 kernel
4x6x6 patches to 144 points for 32 outputs, by the transforms of ``winograd_transforms.py``.

Each tile of 2x2x2 outputs is computed from the 4x4x4 padded input patch under it (Lavin and Gray 2016;
Jia et al., PPoPP 2018, for N dimensions): the patch is transformed to 64 points (``B^T d B`` along each
dimension, additions only), each point of each output channel is a dot product over the input channels
of the transformed weight (``G g G^T``, computed once per call in float64) with the transformed input,
and the 64 products go back to the 8 outputs (``A^T m A``). That is 64 multiplies per channel pair and
tile instead of 216: 3.4x fewer than a direct convolution. A 1x3x3 kernel (the spatial convolutions of
video networks) takes tiles of 1x2x2 outputs from 1x4x4 patches, transformed along H and W only: 16
multiplies instead of 36, 2.25x fewer.

Tiles are flattened over (batch item, tile plane, tile row, tile column), so that a small volume fills
the SIMD lanes as well as a large one; a task transforms a chunk of ``BLOCK_VECTORS`` vectors of tiles
(its input points stay in cache, never a transformed copy of the volume), then multiplies them by
register blocks of ``BLOCK_CHANNELS`` output channels x ``BLOCK_VECTORS`` vectors of tiles
(``simd.fma_block``, as the blocked kernel) and transforms each block back. Each output element is
computed in a fixed order (points summed over input channels in order, then the output transform,
then the bias): results are bitwise equal for any thread count.

Non-finite values: one Inf in a patch turns into NaN in the points it meets with the opposite sign,
and large finite values can overflow in the transforms, so a Winograd output is not always what the
direct sum gives. ``compute`` reports whether every output is finite; where one is not, the caller
computes the convolution again by a direct algorithm (``cpu.ALGORITHMS``), which keeps torch's NaN and
Inf exactly.

Rounding: each output is ``A^T [sum_c U_c * V_c] A`` with float rounding in the sums over input channels
(``C_in/g`` terms) and in the transforms (at most 8 terms each way); its error is within about ``(C_in/g
+ 12) * eps`` times the same expression computed on absolute values (``|A|^T [sum_c |U_c| |V_c|] |A|``),
a bound 1.7-4.6x the direct sums' on random data; the errors measured are of the direct sums' order.
F(2, 5): ``(C_in/g + 32) * eps`` times that expression; errors measured about 1.5x the direct kernels'
(``docs/ARCHITECTURE.md``).
"""
import math
import numpy as np
from numba import njit, prange

from ..config import BLOCK_CHANNELS, BLOCK_VECTORS, WINOGRAD_PASS_BLOCKS
from ..shape_rules import ceil_div
from .simd import fma_block, store_block, vector_lanes, zero_block
from .simd_bfloat16 import stored_element
from .slab import index_maps, padded_row
from .tasks import channel_splits, split_range
from .unlinked import call_apart
from .winograd_tiles import (chunk_tiles, depth_points, plan_tile, plane_patch, plane_tile, points_of,
                             tiles_of, transform_weight_bytes)
from .winograd_transforms import TILE, WIDE_TILE, input_points, kernel_points, output_pair, output_points

# Input channels whose weight points a task of ``transform_weights`` buffers before copying them out: as
# many as fill ``_WEIGHT_TAPS`` taps per output channel (64 channels of a 3x3x3 kernel, 12 of a 5x5x5
# one), a multiple of 4, so that the rows of pairs its transforms run along are long and whole vectors
# (6 channels of a 5x5x5 kernel took 1.3x as long).
_WEIGHT_TAPS = 64 * 27
_UNSIGNED = np.uint64


@njit(parallel=True, cache=True)
def transform_weights(weight, groups, depth_patch, patch, first_block, stop_block, flipped):
    """Weights (C_out, C_in/g, KD, K, K), K 3 or 5 and KD K or 1 -> the points ``G g G^T`` of each
    group's channel blocks ``[first_block, stop_block)`` (g, points, blocks, C_in/g, ``BLOCK_CHANNELS``),
    computed in float64 and rounded once; missing channels of a group's last block are zeros. With P =
    ``patch`` points along H and W (``plane_patch``; ``STRIDED_PATCH`` for the stride-2 ``G``) and
    ``depth_patch`` along D (1 for KD = 1, no transform), point ``(a * P + b) * P + k`` is row a of
    ``G`` along D, b along H, k along W. Where ``flipped``, the points of
    ``gradients.flipped_transpose(weight, groups)`` (the input gradient's correlation), read from
    ``weight`` in place: C_out and C_in/g swap roles and each pair's taps are gathered in mirrored order.

    A task transforms one channel block, a few input channels at a time (``_WEIGHT_TAPS``): their taps
    gathered into rows of (input channel, output channel) pairs, in the order the points are stored,
    so that each transform runs along rows of pairs and the last one writes its points in place. The
    gather reads each pair's taps in order (a stream per output channel); its rows are a cache line
    longer than they hold, so that the taps of a pair, one row apart, do not all fall in one set of
    the L1 cache (rows of 2 KB would: the gather of 512 channels' 3x3x3 weights took 4x as long)."""
    kernel_depth, taps = weight.shape[2:4]
    if flipped:
        out_per_group, in_per_group = weight.shape[1], weight.shape[0] // groups
    else:
        out_per_group, in_per_group = weight.shape[0] // groups, weight.shape[1]
    blocks = stop_block - first_block
    plane_points = patch * patch
    count = depth_patch * plane_points
    packed = np.empty((groups, count, blocks, in_per_group, BLOCK_CHANNELS), weight.dtype)
    flat_packed = packed.reshape(-1)
    point_row = blocks * in_per_group * BLOCK_CHANNELS
    taps_per_channel = kernel_depth * taps * taps
    flat = weight.reshape(weight.shape[0], weight.shape[1] * taps_per_channel)
    last_tap = taps_per_channel - 1
    chunk_channels = max(4, _WEIGHT_TAPS // taps_per_channel // 4 * 4)
    width = chunk_channels * BLOCK_CHANNELS
    gathered_row = width + BLOCK_CHANNELS
    for unit in prange(groups * blocks):
        g, block = unit // blocks, unit % blocks
        first = g * out_per_group + (first_block + block) * BLOCK_CHANNELS
        lanes = min(BLOCK_CHANNELS, out_per_group - (first_block + block) * BLOCK_CHANNELS)
        gathered = np.zeros(taps_per_channel * gathered_row)
        along_w = np.empty(kernel_depth * taps * patch * width)
        along_h = np.empty(kernel_depth * plane_points * width)
        for c0 in range(0, in_per_group, chunk_channels):
            pairs = min(chunk_channels, in_per_group - c0) * BLOCK_CHANNELS
            for c in range(pairs // BLOCK_CHANNELS):
                for lane in range(lanes):
                    if flipped:
                        row = g * in_per_group + c0 + c
                        at = (first - g * out_per_group + lane) * taps_per_channel
                        to, step = last_tap * gathered_row + c * BLOCK_CHANNELS + lane, -gathered_row
                    else:
                        row, at = first + lane, (c0 + c) * taps_per_channel
                        to, step = c * BLOCK_CHANNELS + lane, gathered_row
                    taps_of_pair = flat[row]
                    for tap in range(taps_per_channel):
                        gathered[_UNSIGNED(to + step * tap)] = taps_of_pair[_UNSIGNED(at + tap)]
            for ij in range(kernel_depth * taps):
                kernel_points(gathered, ij * taps, 1, gathered_row, along_w, ij * patch, 1, width, pairs,
                              taps, patch)
            for i in range(kernel_depth):
                for k in range(patch):
                    kernel_points(along_w, i * taps * patch + k, patch, width, along_h, i * plane_points + k,
                                  patch, width, pairs, taps, patch)
            target = flat_packed[_UNSIGNED((g * count * blocks + block) * in_per_group * BLOCK_CHANNELS
                                           + c0 * BLOCK_CHANNELS):]
            for bk in range(plane_points):
                if kernel_depth == 1:
                    for t in range(pairs):
                        target[_UNSIGNED(bk * point_row + t)] = along_h[_UNSIGNED(bk * width + t)]
                else:
                    kernel_points(along_h, bk, plane_points, width, target, bk, plane_points, point_row,
                                  pairs, kernel_depth, depth_patch)
    return packed


@njit(cache=True)
def tile_runs(first, count, total, tiles):
    """The chunk of tiles ``[first, first + count)`` (clipped to ``total``) as runs of consecutive tile
    columns of one tile row: rows of (slot in the chunk, length, batch item, tile plane, tile row,
    first tile column)."""
    tile_planes, tile_rows, tile_columns = tiles
    runs = np.empty((count, 6), np.int64)
    found = 0
    slot = 0
    while slot < count and first + slot < total:
        tile = first + slot
        column = tile % tile_columns
        row = tile // tile_columns
        length = min(tile_columns - column, count - slot, total - tile)
        runs[found, 0], runs[found, 1] = slot, length
        runs[found, 2], runs[found, 3] = row // (tile_planes * tile_rows), row // tile_rows % tile_planes
        runs[found, 4], runs[found, 5] = row % tile_rows, column
        found += 1
        slot += length
    return runs[:found]


@njit(cache=True, inline='always')
def transform_input(x, n_channels, c0, maps, runs, planes, patch, tile, chunk, points, layout_channels,
                    along_w, along_h, row):
    """``points[p, c, t]`` (``planes`` * P^2, ``layout_channels``, ``chunk``, P = ``patch``) = the input
    points of the chunk's tiles, for c < ``n_channels``: input channels ``c0 ...``, ``planes`` (P or 1)
    points along D; ``along_w`` and ``along_h`` (``planes`` * P^2 * chunk) hold the W and H transforms,
    ``row`` (2 * chunk + P - 2) one padded input row."""
    map_d, map_h = maps[0], maps[1]
    tile_depth = TILE if planes > 1 else 1
    plane_points = patch * patch
    for c in range(n_channels):
        for run in range(runs.shape[0]):
            slot, length, n, tile_d, tile_h, tile_w = runs[run]
            for a in range(planes):
                pd = tile_depth * tile_d + a
                sd = map_d[pd] if pd < map_d.shape[0] else -1
                for b in range(patch):
                    ph = tile * tile_h + b
                    sh = map_h[ph] if ph < map_h.shape[0] else -1
                    at = (a * patch + b) * patch * chunk + slot
                    if sd < 0 or sh < 0:
                        for k in range(patch):
                            for t in range(length):
                                along_w[at + k * chunk + t] = 0
                        continue
                    padded_row(x, n, c0 + c, sd, sh, maps, tile * tile_w, tile * length + patch - tile, row)
                    if tile == TILE:  # a constant stride, which LLVM vectorizes
                        input_points(row, 0, 1, TILE, along_w, at, chunk, length, patch)
                    else:
                        input_points(row, 0, 1, WIDE_TILE, along_w, at, chunk, length, patch)
        for a in range(planes):
            for k in range(patch):
                at = (a * plane_points + k) * chunk
                input_points(along_w, at, patch * chunk, 1, along_h, at, patch * chunk, chunk, patch)
        for bk in range(plane_points):
            if planes > 1:
                input_points(along_h, bk * chunk, plane_points * chunk, 1, points,
                             (bk * layout_channels + c) * chunk, plane_points * layout_channels * chunk,
                             chunk, planes)
                continue
            for t in range(chunk):
                points[_UNSIGNED((bk * layout_channels + c) * chunk + t)] = along_h[_UNSIGNED(bk * chunk + t)]


@njit(cache=True, inline='always')
def multiply_points(packed, g, first, stop, points, n_channels, chunk, products):
    """``products[p, c_out, t]`` (points, channels of blocks ``[first, stop)``, chunk) = the sum over
    input channels of the output channels' weight points times the input points, in register blocks.
    Point by point, so that the input points of one (C_in/g x chunk) stay in L1 while every block
    reads them."""
    count, blocks = packed.shape[1], packed.shape[2]
    channels = (stop - first) * BLOCK_CHANNELS
    for p in range(count):
        for block in range(first, stop):
            acc = zero_block(points, BLOCK_CHANNELS, 1, BLOCK_VECTORS)
            weights = ((g * count + p) * blocks + block) * n_channels * BLOCK_CHANNELS
            for c in range(n_channels):
                acc = fma_block(acc, packed, weights + c * BLOCK_CHANNELS, 1, points,
                                (p * n_channels + c) * chunk, 0, 1, BLOCK_VECTORS)
            store_block(acc, products, (p * channels + (block - first) * BLOCK_CHANNELS) * chunk)


@njit(cache=True, inline='always')
def transform_output(products, planes, patch, tile, channels, lane, chunk, along_w, along_h):
    """``along_h`` (``planes`` * T^2 * chunk: rows ``(a * T + j) * T + k``, T = ``tile``) = the products
    of channel ``lane`` (of ``channels``) transformed back along W and H (``along_w``: ``planes`` * T *
    P * chunk, scratch; P = ``patch``)."""
    for ab in range(planes * patch):
        output_points(products, (ab * patch * channels + lane) * chunk, channels * chunk,
                      along_w, ab * tile * chunk, chunk, chunk, patch, tile)
    for a in range(planes):
        for k in range(tile):
            output_points(along_w, (a * tile * patch + k) * chunk, tile * chunk, along_h,
                          (a * tile * tile + k) * chunk, tile * chunk, chunk, patch, tile)


@njit(cache=True, inline='always')
def store_tiles(values, planes, tile, chunk, runs, out, o, bias_value):
    """Write the chunk's tiles of output channel ``o``: ``values`` (rows ``(a * T + j) * T + k``, T =
    ``tile``, transformed along W and H) transformed along D from its ``planes`` points where there are
    more than one, plus the bias, clipped to the output. Returns whether every value written is
    finite."""
    if tile == TILE:  # constant strides and trip counts, which LLVM vectorizes and unrolls
        return _store_tiles(values, planes, TILE, chunk, runs, out, o, bias_value)
    return _store_tiles(values, planes, WIDE_TILE, chunk, runs, out, o, bias_value)


@njit(cache=True, inline='always')
def _store_tiles(values, planes, tile, chunk, runs, out, o, bias_value):
    """:func:`store_tiles` for one ``tile``."""
    out_depth, out_height, out_width = out.shape[2:]
    tile_depth = TILE if planes > 1 else 1
    finite = True
    for run in range(runs.shape[0]):
        slot, length, n, tile_d, tile_h, tile_w = runs[run]
        for i in range(tile_depth):
            od = tile_depth * tile_d + i
            if od >= out_depth:
                continue
            for j in range(tile):
                oh = tile * tile_h + j
                if oh >= out_height:
                    continue
                target = out[n, o, od, oh]
                for k in range(tile):
                    at = (j * tile + k) * chunk + slot
                    for t in range(length):
                        ow = tile * (tile_w + t) + k
                        if planes > 1:
                            pair = output_pair(values, at + t, tile * tile * chunk, planes)
                            value = pair[i] + bias_value
                        else:
                            value = values[_UNSIGNED(at + t)] + bias_value
                        if ow < out_width:
                            target[_UNSIGNED(ow)] = stored_element(target, value)
                            finite &= np.isfinite(value)
    return finite


@njit(cache=True)
def _winograd_task(x, packed, bias, out, maps, tiles, patch, tile, splits, nonfinite, task):
    """Task ``task`` of :func:`_winograd_kernel`: (group, chunk of tiles, split of the output channel
    blocks)."""
    groups, count, blocks, in_per_group = packed.shape[:4]
    planes = count // (patch * patch)
    out_per_group = out.shape[1] // groups
    chunk = BLOCK_VECTORS * vector_lanes(packed)
    total = x.shape[0] * tiles[0] * tiles[1] * tiles[2]
    chunks = ceil_div(total, chunk)
    g, rest = task // (chunks * splits), task % (chunks * splits)
    first_tile, split = rest // splits * chunk, rest % splits
    runs = tile_runs(first_tile, chunk, total, tiles)
    points = np.empty(count * in_per_group * chunk, packed.dtype)
    along_w = np.empty(count * chunk, packed.dtype)
    along_h = np.empty(count * chunk, packed.dtype)
    row = np.empty(tile * chunk + patch, packed.dtype)
    transform_input(x, in_per_group, g * in_per_group, maps, runs, planes, patch, tile, chunk, points,
                    in_per_group, along_w, along_h, row)
    products = np.empty(count * WINOGRAD_PASS_BLOCKS * BLOCK_CHANNELS * chunk, packed.dtype)
    first, stop = split_range(split, blocks, splits)
    finite = True
    for pass_first in range(first, stop, WINOGRAD_PASS_BLOCKS):
        pass_stop = min(stop, pass_first + WINOGRAD_PASS_BLOCKS)
        multiply_points(packed, g, pass_first, pass_stop, points, in_per_group, chunk, products)
        first_channel = pass_first * BLOCK_CHANNELS
        for lane in range(min(pass_stop * BLOCK_CHANNELS, out_per_group) - first_channel):
            o = g * out_per_group + first_channel + lane
            transform_output(products, planes, patch, tile, (pass_stop - pass_first) * BLOCK_CHANNELS, lane,
                             chunk, along_w, along_h)
            finite &= store_tiles(along_h, planes, tile, chunk, runs, out, o,
                                  bias[o] if bias.shape[0] else packed.dtype.type(0))
    nonfinite[task] = not finite


@njit(parallel=True, cache=True)
def _winograd_kernel(x, packed, bias, out, maps, tiles, patch, tile, splits, nonfinite):
    """Fill ``out`` from ``x`` and the weight points ``packed`` (``transform_weights``; ``patch`` points
    and ``tile`` outputs along H and W), in tasks of (group, chunk of tiles, split of the output channel
    blocks), each run apart (``unlinked.py``); ``nonfinite[task]`` is set where a task wrote a NaN or
    Inf."""
    for task in prange(nonfinite.shape[0]):
        call_apart(_winograd_task, x, packed, bias, out, maps, tiles, patch, tile, splits, nonfinite,
                   np.int64(task))


def compute(x, weight, bias, has_bias, out, stride, dilation, pad_front, padded, mode, groups, flipped=False):
    """Fill the batched ``out`` from the batched ``x`` by Winograd (real dtypes, a kernel ``serves``
    takes). Returns whether every output is finite (where not, ``out`` holds what the transforms gave,
    and the caller computes it again directly).

    The arguments are the plan's numbers, as :func:`numba_conv3d.cpu.direct.compute` takes them; where
    ``flipped``, ``weight`` is unflipped and the plan made for its ``gradients.flipped_transpose`` (the
    input gradient's correlation), whose weight points are read from it in place.
    """
    tile = plane_tile(weight.shape[2:], out.shape[2:], out.shape[0],
                      weight.shape[0] * weight.shape[1] * weight.itemsize)
    patch = plane_patch(weight.shape[2:], tile)
    packed = transform_weights(weight, groups, depth_points(*weight.shape[2:4]), patch, 0,
                               ceil_div(out.shape[1] // groups, BLOCK_CHANNELS), flipped)
    tiles = tiles_of(out.shape[2:], weight.shape[2:], tile)
    chunk = chunk_tiles(weight.itemsize)
    chunks = ceil_div(x.shape[0] * math.prod(tiles), chunk)
    splits = channel_splits(packed.shape[2], groups * chunks)
    nonfinite = np.zeros(groups * chunks * splits, np.bool_)
    _winograd_kernel(x, packed, bias if has_bias else bias[:0], out,
                     index_maps(x, padded, pad_front, mode), tiles, patch, tile, splits, nonfinite)
    return not nonfinite.any()


# The kernels Winograd serves: F(2x2x2, 3x3x3) and F(2x2x2, 5x5x5), and plane by plane F(2x2, 3x3) and
# F(2x2, 5x5).
KERNELS = ((3, 3, 3), (1, 3, 3), (5, 5, 5), (1, 5, 5))


def serves(plan):
    """Whether Winograd computes a plan: a real dtype, a kernel of ``KERNELS``, unit stride and
    dilation."""
    return (not plan.is_complex and plan.kernel_size in KERNELS
            and plan.stride == (1, 1, 1) and plan.dilation == (1, 1, 1))


def workspace_bytes(plan):
    """Scratch bytes one worker thread holds: a chunk's input points, products and transform rows."""
    itemsize = np.dtype(plan.dtype).itemsize
    chunk = chunk_tiles(itemsize)
    products = WINOGRAD_PASS_BLOCKS * BLOCK_CHANNELS
    tile = plan_tile(plan)
    return (itemsize * chunk * points_of(plan.kernel_size, tile) * (plan.in_per_group + products + 2)
            + itemsize * (tile * chunk + plane_patch(plan.kernel_size, tile)))


def call_bytes(plan):
    """Bytes a call holds once: its weight points (``winograd_tiles.transform_weight_bytes``)."""
    return transform_weight_bytes(plan, plan_tile(plan))
