"""Channel-vectorized direct convolution on the CPU, for real dtypes.

The channel-blocked kernel (``blocked.py``) lays SIMD vectors along output rows, so a row that is not
a whole number of vectors wide (the 56 columns of a stem, the 7, 8, 14 and 28 of later layers)
computes lanes past its end and throws them away: half of them on 8-wide rows. This kernel turns the
block around: a tile of output positions (rows x columns) x ``CHANNEL_BLOCK_VECTORS`` SIMD vectors of
output channels, held in registers across every input channel and tap. Per tap, the block's weights
(packed so that one tap's channels lie side by side) are loaded as vectors once and each position's
input element is broadcast (``simd.fma_tile``). Planes are cut into wide tiles (2 x 7 with AVX-512)
or tall ones (2 x 4), whichever fills more of its positions (``tall_tiles``): 7-, 14-, 28- and 56-wide
planes take wide tiles, 4-, 8- and 16-wide ones tall tiles. The planner takes this kernel where that
keeps more of the computed lanes (``preferred``).

A task gathers the padded input of all its output planes into one slab (gathered and padded as
``slab.py`` does), and each block of output channels adds a chunk of input channels, whose weights
stay in L1, to the tiles of several of those planes before the next chunk (``STATIONARY_BLOCKS``
tiles); where a layer's weights outweigh its input (the small planes of deep layers: 4x8x8 with
128-512 channels), the output channels are split over tasks first, so that each weight is read about
once per task rather than once per plane (``register_blocks.stationary_grid``). Taps that read zero
padding for every row of a strip are skipped (``register_blocks.fill_tap_runs``), and each other tap
multiplies only the tile's positions that read the input and exist (``tile_spans.py``). Called from
Python (``compute_kept``), the kernel keeps its packed weights between calls (``packed_weights.py``).
A block reaches the
output through in-register transposes and masked stores, one per tile row
(``simd_masked.store_channel_rows``). Each output element is summed by one thread in the order (bias,
input channel, kd, kh, kw) with fused multiply-adds, less products with zero padding, as in the
channel-blocked kernel: results are those of that kernel (up to the sign of a zero result), for any
thread count.
"""
import functools
import math

import numpy as np
from numba import njit, prange
from numba.extending import register_jitable

from ..config import (BLOCK_CHANNELS, BLOCK_VECTORS, CHANNEL_BLOCK_VECTORS, CHANNEL_TALL_TILE,
                      CHANNEL_WEIGHT_CHUNK_BYTES, CHANNEL_WIDE_TILE, STATIONARY_BLOCKS, VECTOR_BYTES)
from ..crossovers import (CHANNEL_VECTORS_LONG_SHARE, CHANNEL_VECTORS_MARGIN, CHANNEL_VECTORS_MIN_REDUCTION,
                          WIDE_BLOCK_GAIN)
from . import packed_weights
from .blocked import pack_weights
from .register_blocks import (fill_tap_offsets, fill_tap_runs, output_offset, pads_with_zeros, row_blocks,
                              skips_padding, slab_offset, stationary_grid, tap_columns)
from ..shape_rules import ceil_div, dilated_extent, round_up
from .simd import fma_tile, load_block, load_rows, store_block, vector_lanes, zero_block
from .simd_masked import store_channel_rows
from .slab import gather_slab, index_maps, slab_shape, task_start
from .tasks import balanced, task_count, thread_count
from .tile_spans import task_spans
from .unlinked import call_apart

# The two tiles (output rows x columns) of the kernel, as module ints that jitted code reads as
# compile-time constants.
WIDE_ROWS, WIDE_COLUMNS = CHANNEL_WIDE_TILE
WIDE_POSITIONS = WIDE_ROWS * WIDE_COLUMNS
TALL_ROWS, TALL_COLUMNS = CHANNEL_TALL_TILE
TALL_POSITIONS = TALL_ROWS * TALL_COLUMNS


@register_jitable
def block_channels(itemsize):
    """Output channels of one block: ``CHANNEL_BLOCK_VECTORS`` vectors of the dtype."""
    return CHANNEL_BLOCK_VECTORS * VECTOR_BYTES // itemsize


@register_jitable
def tile_shape(tall):
    """(rows, columns) of the kernel's tall tiles or of its wide ones."""
    return (TALL_ROWS, TALL_COLUMNS) if tall else (WIDE_ROWS, WIDE_COLUMNS)


@register_jitable
def tile_fill(out_height, out_width, tall):
    """Share of the positions of a plane's tiles (tall or wide) that are output positions."""
    rows, columns = tile_shape(tall)
    return out_height * out_width / (round_up(out_height, rows) * round_up(out_width, columns))


@register_jitable
def tall_tiles(out_height, out_width):
    """Whether the kernel cuts output planes of ``out_height`` x ``out_width`` into tall tiles: where
    they fill more of their positions than wide ones (on a tie, wide tiles load each weight for more
    positions). Planes 8 or 16 wide take tall tiles, 7, 14, 28 or 56 wide wide ones."""
    return tile_fill(out_height, out_width, True) > tile_fill(out_height, out_width, False)


@register_jitable
def kept_lanes(out_width, out_per_group, columns, channels):
    """Fraction of a kernel's computed lanes that reach the output when it computes rows in whole
    blocks of ``columns`` and a group's output channels in whole blocks of ``channels``."""
    return out_width * out_per_group / (round_up(out_width, columns) * round_up(out_per_group, channels))


@register_jitable
def preferred(out_height, out_width, out_per_group, reduction, itemsize):
    """Whether the planner takes this kernel rather than the channel-blocked one for output planes of
    ``out_height`` x ``out_width``, ``out_per_group`` output channels and ``reduction`` (input channels
    x taps) per group (see ``CHANNEL_VECTORS_MARGIN`` and ``WIDE_BLOCK_GAIN``): the channel-blocked kernel
    computes rows in whole vectors (blocks of ``BLOCK_VECTORS`` vectors where they fit, see
    ``row_blocks``) and channels in blocks of ``BLOCK_CHANNELS``. Stems and 1x7x7 convolutions with
    56-wide rows, and 7-, 14-, 24- and 28-wide rows of 64 or 128 channels: 1.04-1.25x faster (same
    process, alternating). With AVX2, also long reductions that keep nearly as many lanes
    (``CHANNEL_VECTORS_MIN_REDUCTION``)."""
    lanes = VECTOR_BYTES // itemsize
    wide = row_blocks(out_width, lanes)[0] * BLOCK_VECTORS
    vectors = ceil_div(out_width, lanes)
    kept_blocked = kept_lanes(out_width, out_per_group, lanes, BLOCK_CHANNELS)
    channels = block_channels(itemsize)
    kept = (tile_fill(out_height, out_width, tall_tiles(out_height, out_width)) * out_per_group
            / round_up(out_per_group, channels))
    if reduction >= CHANNEL_VECTORS_MIN_REDUCTION and kept >= CHANNEL_VECTORS_LONG_SHARE * kept_blocked:
        return True
    return kept > CHANNEL_VECTORS_MARGIN * kept_blocked * (1 + WIDE_BLOCK_GAIN * wide / vectors)


@njit(cache=True, inline='always')
def _tile(slab, packed, packed_bias, taps, runs, run_count, spans, g, block, channel_first, channel_stop,
          partial, partial_start, source, row_step, out, n, od, oh, col0, tile_rows, tile_columns,
          tile_positions):
    """Input channels ``[channel_first, channel_stop)`` of output channels ``block_channels`` of group
    ``g``'s block ``block`` x a tile of ``tile_rows`` x ``tile_columns`` (``tile_positions`` in all,
    compile-time ints) output positions from (``od``, ``oh``, ``col0``), reading the slab from offset
    ``source``, ``row_step`` per row, at the taps of the first ``run_count`` runs of ``runs``
    (``fill_tap_runs``), each at the positions of its span in ``spans`` (``tile_spans.py``). The tile
    starts from the bias at the first input channel, else from its sums so far in ``partial`` (from
    ``partial_start``); it goes to the output after the last input channel, else back to ``partial``."""
    channels = block_channels(slab.itemsize)
    blocks, in_channels, ntaps = packed.shape[1], packed.shape[2], packed.shape[3]
    unit = g * blocks + block
    like = zero_block(packed_bias, tile_positions, 1, CHANNEL_BLOCK_VECTORS)
    if channel_first == 0:
        # every position starts from the same bias vectors
        acc = load_rows(like, packed_bias, unit * channels, 0, tile_positions, CHANNEL_BLOCK_VECTORS)
    else:
        acc = load_block(like, partial, partial_start)
    channel_size = slab.shape[1] * slab.shape[2] * slab.shape[3] * slab.shape[4]
    for i in range(channel_first, channel_stop):
        start = source + i * channel_size
        weight = (unit * in_channels + i) * ntaps * channels
        for run in range(run_count):
            for t in range(runs[2 * run], runs[2 * run + 1]):
                acc = fma_tile(acc, slab, start + taps[t], 1, row_step, tile_columns, packed,
                               weight + t * channels, CHANNEL_BLOCK_VECTORS, spans[t])
    if channel_stop < in_channels:
        store_block(acc, partial, partial_start)
        return
    out_per_group = out.shape[1] // packed.shape[0]
    store_channel_rows(acc, out, output_offset(out, n, g * out_per_group + block * channels, od, oh, col0),
                       out.shape[2] * out.shape[3] * out.shape[4], out.shape[4],
                       min(channels, out_per_group - block * channels),
                       min(tile_rows, out.shape[3] - oh), min(tile_columns, out.shape[4] - col0),
                       tile_columns, CHANNEL_BLOCK_VECTORS)


@register_jitable
def weight_chunk(in_per_group, ntaps, itemsize):
    """Input channels whose weights for one block (``block_channels`` x taps each) fit in
    ``CHANNEL_WEIGHT_CHUNK_BYTES``, balanced over ``in_per_group``: at least one."""
    per_channel = ntaps * block_channels(itemsize) * itemsize
    return balanced(in_per_group, CHANNEL_WEIGHT_CHUNK_BYTES // per_channel, 1)[0]


@njit(cache=True, inline='always')
def _tiled_task(x, packed, packed_bias, out, stride, dilation, kernel, grid, maps, slab_dims,
                skip_padding, task, tile_rows, tile_columns, tile_positions):
    """Task ``task`` of :func:`_channel_vectorized_kernel` in tiles of ``tile_rows`` x ``tile_columns``
    (``tile_positions``) output positions: its slab gathers the input of all its output planes at
    once; each block of output channels adds a chunk of input channels at a time to every tile of as
    many planes as hold ``STATIONARY_BLOCKS`` tiles (planes in strips of ``tile_rows`` rows cut into
    tiles)."""
    groups, blocks, in_per_group = packed.shape[:3]
    out_depth, out_height, out_width = out.shape[2:]
    chunk = weight_chunk(in_per_group, packed.shape[3], x.itemsize)
    items = tile_positions * CHANNEL_BLOCK_VECTORS * vector_lanes(x)
    tiles = ceil_div(out_width, tile_columns)
    n, g, od0, oh0, first, stop, slab = task_start(x, task, grid, blocks, groups, slab_dims)
    planes, rows = min(grid[0], out_depth - od0), min(grid[2], out_height - oh0)
    strips = ceil_div(rows, tile_rows)
    origin = od0 * stride[0]
    call_apart(gather_slab, x, n, g * in_per_group, origin, origin, origin + slab.shape[1],
               oh0 * stride[1], maps, slab)
    taps = np.empty((planes, kernel[0] * kernel[1] * kernel[2]), np.int64)
    runs = np.empty((planes, strips, 2 * kernel[0]), np.int64)
    run_counts = np.empty((planes, strips), np.int64)
    for p in range(planes):
        fill_tap_offsets(taps[p], kernel, dilation, slab.shape, p * stride[0])
        for strip in range(strips):
            row = strip * tile_rows
            run_counts[p, strip] = fill_tap_runs(runs[p, strip], kernel, stride, dilation, maps, od0 + p,
                                                 oh0 + row, min(tile_rows, rows - row), skip_padding)
    spans = task_spans(kernel, stride, dilation, maps, oh0, rows, out_height, out_width, tile_rows,
                       tile_columns, skip_padding)
    # planes whose tiles each chunk of weights serves before the next
    together = min(planes, ceil_div(STATIONARY_BLOCKS, strips * tiles))
    partial = np.empty(together * strips * tiles * items, packed_bias.dtype)
    row_step = slab_offset(slab, 1, 0, stride)
    for first_plane in range(0, planes, together):
        for block in range(first, stop):
            for channel_first in range(0, in_per_group, chunk):
                channel_stop = min(in_per_group, channel_first + chunk)
                for p in range(first_plane, min(planes, first_plane + together)):
                    for strip in range(strips):
                        row = strip * tile_rows
                        for k in range(tiles):
                            col0 = k * tile_columns
                            _tile(slab, packed, packed_bias, taps[p], runs[p, strip], run_counts[p, strip],
                                  spans[strip, k], g, block, channel_first, channel_stop, partial,
                                  (((p - first_plane) * strips + strip) * tiles + k) * items,
                                  slab_offset(slab, row, col0, stride), row_step, out, n, od0 + p,
                                  oh0 + row, col0, tile_rows, tile_columns, tile_positions)


@njit(cache=True)
def _channel_vectorized_task(x, packed, packed_bias, out, stride, dilation, kernel, grid, maps,
                             slab_dims, skip_padding, tall, task):
    """Task ``task`` of :func:`_channel_vectorized_kernel`, in tall tiles or in wide ones."""
    if tall:
        _tiled_task(x, packed, packed_bias, out, stride, dilation, kernel, grid, maps, slab_dims,
                    skip_padding, task, TALL_ROWS, TALL_COLUMNS, TALL_POSITIONS)
    else:
        _tiled_task(x, packed, packed_bias, out, stride, dilation, kernel, grid, maps, slab_dims,
                    skip_padding, task, WIDE_ROWS, WIDE_COLUMNS, WIDE_POSITIONS)


@njit(parallel=True, cache=True)
def _channel_vectorized_kernel(x, packed, packed_bias, out, stride, dilation, pad_front, padded,
                               mode, kernel, grid, slab_dims, skip_padding, tall):
    """Fill ``out`` (N, C_out, OD, OH, OW) from ``x`` with the weights and bias packed by
    ``pack_weights`` in blocks of ``block_channels``, in the tasks of ``grid``, each with a slab of
    ``slab_dims`` (``task_layout``) and run apart (``unlinked.py``), in tall tiles or in wide ones,
    skipping the products with zero padding if ``skip_padding`` (taps, and each tap's tile positions,
    ``tile_spans.py``); products at positions past the output's end are skipped in any case."""
    maps = index_maps(x, padded, pad_front, mode)
    for task in prange(task_count(x.shape[0], packed.shape[0], grid)):
        call_apart(_channel_vectorized_task, x, packed, packed_bias, out, stride, dilation, kernel,
                   grid, maps, slab_dims, skip_padding, tall, np.int64(task))


@register_jitable
def task_layout(batch, out_size, itemsize, in_per_group, kernel, stride, dilation, out_per_group,
                groups):
    """How the kernel runs a convolution: whether in tall tiles (``tall_tiles``), its task grid
    (``register_blocks.stationary_grid``: rows in whole strips of tiles but the last) and the shape of
    a task's slab (all its output planes' input, rows in whole strips, columns in whole tiles plus
    those its taps reach: no more, as the kernel broadcasts single elements of the slab rather than
    loading vectors of it, so its rows need not end on a vector; 7-wide outputs of k3 gather 9
    columns, not 32)."""
    tall = tall_tiles(out_size[1], out_size[2])
    rows, columns = tile_shape(tall)
    width = round_up(out_size[2], columns)
    grid = stationary_grid(batch, (out_size[0], out_size[1], width), itemsize, in_per_group, kernel,
                           stride, dilation, ceil_div(out_per_group, block_channels(itemsize)), groups,
                           rows, in_per_group * kernel[0] * kernel[1] * kernel[2] * out_per_group * itemsize)
    return tall, grid, task_slab_shape(in_per_group, kernel, stride, dilation, width, grid, rows)


@register_jitable
def task_slab_shape(in_per_group, kernel, stride, dilation, width, grid, tile_rows):
    """The slab of a task of ``grid`` whose tiles of ``tile_rows`` rows cover ``width`` columns: the
    input of all its output planes, rows in whole strips, columns in whole tiles plus those the taps
    reach (see :func:`task_layout`)."""
    rows = (round_up(grid[2], tile_rows) - 1) * stride[1] + dilated_extent(kernel[1], dilation[1])
    return slab_shape(in_per_group, kernel[0], dilation[0], stride[0], grid[0], rows, stride[2],
                      width + tap_columns(kernel, dilation, stride))


def workspace_bytes(plan):
    """Scratch bytes one worker thread holds: its slab, and the sums of its tiles between chunks of
    input channels (counted for all of a task's planes, an upper bound)."""
    itemsize = np.dtype(plan.dtype).itemsize
    tall, grid, slab_dims = task_layout(plan.batch, plan.output_size, itemsize, plan.in_per_group,
                                        plan.kernel_size, plan.stride, plan.dilation, plan.out_per_group,
                                        plan.groups)
    rows, columns = tile_shape(tall)
    partial = (grid[0] * round_up(grid[2], rows) * round_up(plan.output_size[2], columns)
               * block_channels(itemsize))
    return (math.prod(slab_dims) + partial) * itemsize


@register_jitable
def compute(x, weight, bias, has_bias, out, stride, dilation, pad_front, padded, mode, groups):
    """Fill the batched ``out`` from the batched ``x`` with the channel-vectorized kernel (real
    dtypes).

    The arguments are the plan's numbers, as :func:`numba_conv3d.cpu.direct.compute` takes them.
    """
    packed, packed_bias = pack_weights(weight, bias, has_bias, groups, block_channels(x.itemsize))
    tall, grid, slab_dims = task_layout(x.shape[0], out.shape[2:], x.itemsize, weight.shape[1],
                                        weight.shape[2:], stride, dilation, weight.shape[0] // groups,
                                        groups)
    _channel_vectorized_kernel(x, packed, packed_bias, out, stride, dilation, pad_front, padded, mode,
                               weight.shape[2:], grid, slab_dims, skips_padding(x, weight, padded, mode),
                               tall)


@functools.lru_cache(maxsize=256)
def kept_layout(threads, batch, out_size, itemsize, in_per_group, kernel, stride, dilation, out_per_group,
                groups):
    """:func:`task_layout`, kept per shape and thread count (the grid depends on the thread count; 6 us
    a call from Python)."""
    return task_layout(batch, out_size, itemsize, in_per_group, kernel, stride, dilation, out_per_group,
                       groups)


@njit(cache=True)
def _pack_kept(weight, groups, channels):
    """The weights packed as :func:`compute` packs them (without the bias), and whether all are
    finite."""
    packed, _ = pack_weights(weight, weight.reshape(-1)[:0], False, groups, channels)
    return packed, np.isfinite(weight).all()


def pack_bias(bias, has_bias, groups, out_per_group, channels, dtype):
    """The bias (zeros without one) in ``dtype`` -> (g * blocks * ``channels``,), as ``pack_weights``
    packs it."""
    packed = np.zeros((groups, ceil_div(out_per_group, channels) * channels), dtype)
    if has_bias:
        packed[:, :out_per_group] = bias.reshape(groups, out_per_group)
    return packed.reshape(-1)


def compute_kept(x, weight, bias, has_bias, out, stride, dilation, pad_front, padded, mode, groups):
    """:func:`compute` from Python: the weights packed once while their bytes stay the same
    (``packed_weights.py``; a deep layer's packing took as long as its convolution), their finiteness
    read in the same pass."""
    channels = block_channels(x.itemsize)
    packed, finite = packed_weights.packed(np.ascontiguousarray(weight), (groups, channels), _pack_kept)
    out_per_group = weight.shape[0] // groups
    tall, grid, slab_dims = kept_layout(thread_count(), x.shape[0], out.shape[2:], x.itemsize,
                                        weight.shape[1], weight.shape[2:], tuple(stride), tuple(dilation),
                                        out_per_group, groups)
    packed_bias = pack_bias(bias, has_bias, groups, out_per_group, channels, x.dtype)
    _channel_vectorized_kernel(x, packed, packed_bias, out, stride, dilation, pad_front, padded, mode,
                               weight.shape[2:], grid, slab_dims, pads_with_zeros(x, padded, mode) and finite,
                               tall)
