"""Winograd convolution point by point, for few tiles and many channels (the deep layers of 3-D
networks): the same transforms as ``winograd.py``, in three passes over all of a call's tiles.

1. The input points of every tile (``winograd.transform_input``), each computed once, in parallel over
   (group, chunk of tiles, split of the input channels).
2. For each transform point, the products of its weight points (C_out x C_in) with the input points
   (C_in x tiles): a matrix product, in register blocks of ``BLOCK_CHANNELS`` output channels x
   ``BLOCK_VECTORS`` SIMD vectors of tiles, in parallel over (group, point, split of the output channel
   blocks). A block's weights are read once, from memory, and stay in L1 while it runs over every
   chunk of tiles; the point's input points (C_in x tiles) stay in L2 while every block reads them.
3. The output transform of every tile (``winograd.transform_output``), in parallel over (group, chunk,
   split of the output channels).

The fused kernel of ``winograd.py`` transforms each chunk of tiles and multiplies it by all the
weight points in one task: where the weight points outgrow the caches (256-512 channels: 4-67 MB), each
chunk reads them from memory again, and where a call has few chunks its channel splits transform the
same input again. Here the weight points are read once per pass, at the cost of the transformed input
and products in memory: passes of at most ``WINOGRAD_POINTS_MAX_WORKSPACE_BYTES`` of them.

Where the tiles fit one pass, the weight points are made in ranges of output channels
(``WINOGRAD_POINTS_WEIGHT_RANGE_BYTES``), each multiplied (step 2) right after it is made, while it is
in the L3 cache: all of them at once would go to memory and come back (56-67 MB for 256 channels'
5x5x5 or 512 channels' 3x3x3 kernels; 1.05-1.15x faster on such layers).

Each output is summed in the same order as the fused kernel (points over input channels in order, then
the output transform, then the bias): with the same tile, its results are bitwise equal to it, for any
thread count. For 1x3x3 kernels it picks its own tile (``winograd_tiles.points_tile``): F(4x4, 3x3) also
on planes under 28x28 where enough tiles share its 2.25x the weight points.
"""
import math
import numpy as np
from numba import njit, prange

from ..config import (BLOCK_CHANNELS, BLOCK_VECTORS, VECTOR_BYTES, WINOGRAD_POINTS_MAX_WORKSPACE_BYTES,
                      WINOGRAD_POINTS_WEIGHT_RANGE_BYTES)
from ..shape_rules import ceil_div
from .register_blocks import NARROW_VECTORS
from .simd import fma_block, store_rows, vector_lanes, zero_block
from .slab import index_maps
from .tasks import channel_splits, split_range
from .unlinked import call_apart
from .winograd import store_tiles, tile_runs, transform_input, transform_output, transform_weights
from .winograd_tiles import (block_weight_bytes, call_tiles, chunk_tiles, depth_points, plan_points_tile,
                             plane_patch, points_of, points_tile, tiles_of)

# Ranges of weight points (``_range_blocks``) pay while the input points, read again for each range, are
# at most this many times a range's bytes: measured 1.05-1.15x faster on 512 channels at 2x7x7 and 16x7x7
# (6-7 MB of input points), 1.07x slower at 4x14x14 (19 MB).
_RANGE_READS = 3


@njit(cache=True)
def _input_task(x, maps, tiles, patch, tile, first_chunk, chunks, splits, points, task):
    """Task of :func:`input_kernel`: (group, chunk of the pass, split of the input channels)."""
    count, in_per_group, chunk = points.shape[2:]
    total = x.shape[0] * tiles[0] * tiles[1] * tiles[2]
    g, rest = task // (chunks * splits), task % (chunks * splits)
    k, split = rest // splits, rest % splits
    first, stop = split_range(split, in_per_group, splits)
    if first == stop:
        return
    runs = tile_runs((first_chunk + k) * chunk, chunk, total, tiles)
    along_w = np.empty(count * chunk, points.dtype)
    along_h = np.empty(count * chunk, points.dtype)
    row = np.empty(tile * chunk + patch, points.dtype)
    target = points[g, k].reshape(-1)[first * chunk:]
    transform_input(x, stop - first, g * in_per_group + first, maps, runs, count // (patch * patch), patch,
                    tile, chunk, target, in_per_group, along_w, along_h, row)


@njit(parallel=True, cache=True)
def input_kernel(x, maps, tiles, patch, tile, first_chunk, chunks, splits, points):
    """``points`` (groups, chunks, points, C_in/g, chunk) = the input points of the pass's chunks of
    tiles, from chunk ``first_chunk`` (``patch`` points and ``tile`` outputs along H and W)."""
    for task in prange(points.shape[0] * chunks * splits):
        call_apart(_input_task, x, maps, tiles, patch, tile, first_chunk, chunks, splits, points,
                   np.int64(task))


@njit(cache=True, inline='always')
def _chunk_products(packed, weights, points, source, in_per_group, chunk, products, target, vectors):
    """One register block of ``products`` (at ``target``): ``BLOCK_CHANNELS`` output channels (weight
    points at ``weights``) x the first ``vectors`` SIMD vectors of a chunk of input points (at
    ``source``), summed over the input channels."""
    acc = zero_block(points, BLOCK_CHANNELS, 1, vectors)
    for c in range(in_per_group):
        acc = fma_block(acc, packed, weights + c * BLOCK_CHANNELS, 1, points, source + c * chunk, 0, 1,
                        vectors)
    store_rows(acc, products, target, chunk, 0, 1, vectors)


@njit(cache=True)
def _product_task(packed, first_block, points, first_chunk, chunks, total, splits, products, task):
    """Task of :func:`_product_kernel`: (group, point, split of the output channel blocks). A call's
    last chunk is computed in as few vectors as hold its ``total`` tiles."""
    groups, count, blocks, in_per_group = packed.shape[:4]
    per_pass, chunk = points.shape[1], points.shape[4]
    product_blocks = products.shape[3] // BLOCK_CHANNELS
    lanes = vector_lanes(points)
    g, rest = task // (count * splits), task % (count * splits)
    p, split = rest // splits, rest % splits
    first, stop = split_range(split, blocks, splits)
    for block in range(first, stop):
        weights = ((g * count + p) * blocks + block) * in_per_group * BLOCK_CHANNELS
        for k in range(chunks):
            source = ((g * per_pass + k) * count + p) * in_per_group * chunk
            target = ((((g * per_pass + k) * count + p) * product_blocks + first_block + block)
                      * BLOCK_CHANNELS * chunk)
            vectors = ceil_div(min(chunk, total - (first_chunk + k) * chunk), lanes)
            if vectors > NARROW_VECTORS:
                _chunk_products(packed, weights, points, source, in_per_group, chunk, products, target,
                                BLOCK_VECTORS)
            elif vectors > 1:
                _chunk_products(packed, weights, points, source, in_per_group, chunk, products, target,
                                NARROW_VECTORS)
            else:
                _chunk_products(packed, weights, points, source, in_per_group, chunk, products, target, 1)


@njit(parallel=True, cache=True)
def _product_kernel(packed, first_block, points, first_chunk, chunks, total, splits, products):
    """``products`` (groups, chunks, points, channel blocks x ``BLOCK_CHANNELS``, chunk) = per point, the
    weight points ``packed`` (``transform_weights``: channel blocks from ``first_block``) times the input
    ``points``, summed over the input channels, for the pass's chunks of tiles from chunk
    ``first_chunk`` (of ``total`` tiles)."""
    for task in prange(packed.shape[0] * packed.shape[1] * splits):
        call_apart(_product_task, packed, first_block, points, first_chunk, chunks, total, splits, products,
                   np.int64(task))


@njit(cache=True)
def _output_task(products, bias, out, tiles, patch, tile, first_chunk, chunks, splits, nonfinite, task):
    """Task of :func:`_output_kernel`: (group, chunk of the pass, split of the output channels)."""
    groups = products.shape[0]
    count, padded_channels, chunk = products.shape[2:]
    out_per_group = out.shape[1] // groups
    total = out.shape[0] * tiles[0] * tiles[1] * tiles[2]
    g, rest = task // (chunks * splits), task % (chunks * splits)
    k, split = rest // splits, rest % splits
    first, stop = split_range(split, out_per_group, splits)
    runs = tile_runs((first_chunk + k) * chunk, chunk, total, tiles)
    planes = count // (patch * patch)
    along_w = np.empty(count * chunk, products.dtype)
    along_h = np.empty(count * chunk, products.dtype)
    source = products[g, k].reshape(-1)
    finite = True
    for lane in range(first, stop):
        o = g * out_per_group + lane
        transform_output(source, planes, patch, tile, padded_channels, lane, chunk, along_w, along_h)
        bias_value = bias[o] if bias.shape[0] else products.dtype.type(0)
        finite &= store_tiles(along_h, planes, tile, chunk, runs, out, o, bias_value)
    nonfinite[task] = not finite


@njit(parallel=True, cache=True)
def _output_kernel(products, bias, out, tiles, patch, tile, first_chunk, chunks, splits, nonfinite):
    """Write the pass's tiles of ``out`` from their ``products``; ``nonfinite[task]`` is set where a task
    wrote a NaN or Inf."""
    for task in prange(products.shape[0] * chunks * splits):
        call_apart(_output_task, products, bias, out, tiles, patch, tile, first_chunk, chunks, splits,
                   nonfinite, np.int64(task))


def points_chunk(itemsize, tile_count):
    """Tiles of a chunk: ``chunk_tiles``, or for a call of fewer tiles, as many whole SIMD vectors as
    hold them (the points of unused tiles would be written and read for nothing)."""
    lanes = VECTOR_BYTES // itemsize
    return min(chunk_tiles(itemsize), lanes * max(1, ceil_div(tile_count, lanes)))


def _chunk_bytes(itemsize, groups, count, in_per_group, blocks, chunk):
    """Bytes of one chunk's input points and products."""
    return itemsize * groups * count * chunk * (in_per_group + blocks * BLOCK_CHANNELS)


def _plan_chunk(plan):
    """``points_chunk`` of a plan."""
    return points_chunk(np.dtype(plan.dtype).itemsize, call_tiles(plan, plan_points_tile(plan)))


def chunk_bytes(plan):
    """Bytes of one chunk's input points and products for ``plan``."""
    return _chunk_bytes(np.dtype(plan.dtype).itemsize, plan.groups,
                        points_of(plan.kernel_size, plan_points_tile(plan)), plan.in_per_group,
                        ceil_div(plan.out_per_group, BLOCK_CHANNELS), _plan_chunk(plan))


def _pass_chunks(per_chunk, total):
    """Chunks of tiles per pass, of ``total``: as many as fit ``WINOGRAD_POINTS_MAX_WORKSPACE_BYTES`` of
    input points and products, ``per_chunk`` bytes a chunk (at least one)."""
    return max(1, min(total, WINOGRAD_POINTS_MAX_WORKSPACE_BYTES // per_chunk))


def compute(x, weight, bias, has_bias, out, stride, dilation, pad_front, padded, mode, groups, flipped=False):
    """Fill the batched ``out`` from the batched ``x`` by Winograd, point by point (real dtypes, a
    kernel ``winograd.serves`` takes). Returns whether every output is finite (where not, ``out`` holds
    what the transforms gave, and the caller computes it again directly).

    The arguments are the plan's numbers, as :func:`numba_conv3d.cpu.direct.compute` takes them, and
    ``flipped`` as :func:`numba_conv3d.cpu.winograd.compute` takes it.
    """
    in_per_group, out_per_group = x.shape[1] // groups, out.shape[1] // groups
    tile = points_tile(weight.shape[2:], out.shape[2:], out.shape[0], in_per_group, out_per_group,
                       weight.shape[0] * weight.shape[1] * weight.itemsize)
    patch = plane_patch(weight.shape[2:], tile)
    count = points_of(weight.shape[2:], tile)
    blocks = ceil_div(out_per_group, BLOCK_CHANNELS)
    tiles = tiles_of(out.shape[2:], weight.shape[2:], tile)
    tile_count = x.shape[0] * math.prod(tiles)
    chunk = points_chunk(weight.itemsize, tile_count)
    total = ceil_div(tile_count, chunk)
    per_pass = _pass_chunks(_chunk_bytes(weight.itemsize, groups, count, in_per_group, blocks, chunk), total)
    points = np.empty((groups, per_pass, count, in_per_group, chunk), weight.dtype)
    products = np.empty((groups, per_pass, count, blocks * BLOCK_CHANNELS, chunk), weight.dtype)
    maps = index_maps(x, padded, pad_front, mode)
    bias = bias if has_bias else bias[:0]
    range_blocks = _range_blocks(weight.itemsize, groups, count, in_per_group, blocks, chunk, total, per_pass)
    ranges = [(first, min(blocks, first + range_blocks)) for first in range(0, blocks, range_blocks)]
    depth_patch = depth_points(*weight.shape[2:4])
    whole = (transform_weights(weight, groups, depth_patch, patch, 0, blocks, flipped) if len(ranges) == 1
             else None)
    finite = True
    for first_chunk in range(0, total, per_pass):
        chunks = min(per_pass, total - first_chunk)
        input_splits = channel_splits(in_per_group, groups * chunks)
        input_kernel(x, maps, tiles, patch, tile, first_chunk, chunks, input_splits, points)
        for first_block, stop_block in ranges:
            packed = whole if whole is not None else transform_weights(weight, groups, depth_patch, patch,
                                                                        first_block, stop_block, flipped)
            product_splits = channel_splits(stop_block - first_block, groups * count)
            _product_kernel(packed, first_block, points, first_chunk, chunks, tile_count, product_splits,
                            products)
            del packed  # before the next range's points are made: a call holds one range at a time
        output_splits = channel_splits(out_per_group, groups * chunks)
        nonfinite = np.zeros(groups * chunks * output_splits, np.bool_)
        _output_kernel(products, bias, out, tiles, patch, tile, first_chunk, chunks, output_splits, nonfinite)
        finite &= not nonfinite.any()
    return finite


def _range_blocks(itemsize, groups, count, in_per_group, blocks, chunk, total, per_pass):
    """Channel blocks whose weight points a call transforms at once, of ``total`` chunks of ``chunk``
    tiles in passes of ``per_pass``. Where they fit one pass and their input points are at most
    ``_RANGE_READS`` times ``WINOGRAD_POINTS_WEIGHT_RANGE_BYTES``, ranges of blocks that fill those bytes:
    each range's points are multiplied while they are in the L3 cache, not written to memory and read
    back, for one more read of the input points per range. Else all of them (several passes each read
    them all)."""
    input_bytes = itemsize * groups * count * in_per_group * chunk * total
    if per_pass < total or input_bytes > _RANGE_READS * WINOGRAD_POINTS_WEIGHT_RANGE_BYTES:
        return blocks
    block_bytes = block_weight_bytes(itemsize, groups, count, in_per_group)
    return max(1, min(blocks, WINOGRAD_POINTS_WEIGHT_RANGE_BYTES // block_bytes))


def workspace_bytes(plan):
    """Scratch bytes one worker thread holds: its transform rows."""
    tile = plan_points_tile(plan)
    chunk = _plan_chunk(plan)
    return np.dtype(plan.dtype).itemsize * (2 * points_of(plan.kernel_size, tile) * chunk + tile * chunk
                                            + plane_patch(plan.kernel_size, tile))


def call_bytes(plan):
    """Bytes a call holds once, shared by its threads: the weight points (of all channel blocks or of
    one range, ``_range_blocks``) and one pass's input points and products."""
    itemsize = np.dtype(plan.dtype).itemsize
    tile = plan_points_tile(plan)
    count = points_of(plan.kernel_size, tile)
    blocks = ceil_div(plan.out_per_group, BLOCK_CHANNELS)
    chunk = _plan_chunk(plan)
    total = ceil_div(call_tiles(plan, tile), chunk)
    per_chunk = chunk_bytes(plan)
    per_pass = _pass_chunks(per_chunk, total)
    weight_blocks = _range_blocks(itemsize, plan.groups, count, plan.in_per_group, blocks, chunk, total,
                                  per_pass)
    return (block_weight_bytes(itemsize, plan.groups, count, plan.in_per_group) * weight_blocks
            + per_pass * per_chunk)
