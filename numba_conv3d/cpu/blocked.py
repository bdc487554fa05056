"""Register-blocked direct convolution on the CPU, for real dtypes.

Each inner step computes a block of ``BLOCK_CHANNELS`` output channels x ``BLOCK_VECTORS`` SIMD vectors
of output columns (4 x 24 float32 or 4 x 12 float64 on AVX2, 8 x 48 or 8 x 24 with AVX-512), held in
registers as a tuple of vectors (``simd.py``) across a chunk of input channels and every kernel tap;
per tap, the block's input vectors are loaded once and multiplied by each channel's weight (packed
contiguously, broadcast). The vectors that remain at a row's end go in blocks of ``BLOCK_VECTORS``
output rows x 1 vector (``row_ends``), so the kernel has two block shapes in all: each shape costs
seconds of a cold first call's compilation. Padding is that of the direct kernel (``slab.py``); a task
computes its output planes in turn over a ring slab of input planes, and slab rows carry zero columns
up to a whole vector. Taps that read zero padding for every row of a block (the first and last planes
and rows of small outputs) are skipped (``register_blocks.fill_tap_runs``). Each output element is
summed by one thread in the fixed order (bias, input channel, kd, kh, kw), with fused multiply-adds
(a block's sums wait in memory between chunks of input channels, unchanged), less products with zero
padding: results are bitwise equal for any thread count. The sums take the packed bias's dtype: the
input's, or float32 for the bfloat16 pairs of ``bfloat16_dot.compute_rows``.
"""

import numpy as np
from numba import njit, prange
from numba.extending import register_jitable

from ..config import BLOCKED_MIN_CHANNELS, BLOCK_CHANNELS, BLOCK_VECTORS, INPUT_CHUNK_BYTES, VECTOR_BYTES
from ..crossovers import BLOCKED_MIN_FILL
from ..shape_rules import ceil_div, round_up
from .register_blocks import (blocked_setup, blocked_workspace_bytes, enter_plane, fill_tap_runs,
                              output_offset, skips_padding, slab_offset, store_output, tap_columns,
                              task_grid)
from .simd import fma_block, load_block, splat_channels, store_block, vector_lanes, zero_block
from .slab import task_start
from .tasks import balanced, task_count
from .unlinked import call_apart


@njit(cache=True, inline='always')
def add_channels(acc, slab, taps, runs, run_count, first, stop, source_start, source_step, weights,
                 weight_start, weights_per_tap, weight_step, rows, vectors):
    """Add to the register block ``acc`` (channels x ``rows`` x ``vectors``), for every input channel
    i in ``[first, stop)`` and tap t of the slab in the first ``run_count`` runs of ``runs`` (see
    ``fill_tap_runs``), ``weights[weight_start + (i * taps + t) * weights_per_tap + c *
    weight_step]`` times the slab's vectors at ``source_start + r * source_step`` + channel i + tap
    t (see :func:`numba_conv3d.cpu.simd.fma_block`)."""
    ntaps = taps.shape[0]
    channel_size = slab.shape[1] * slab.shape[2] * slab.shape[3] * slab.shape[4]
    for i in range(first, stop):
        source = source_start + i * channel_size
        weight = weight_start + i * ntaps * weights_per_tap
        for run in range(run_count):
            for t in range(runs[2 * run], runs[2 * run + 1]):
                acc = fma_block(acc, weights, weight + t * weights_per_tap, weight_step, slab,
                                source + taps[t], source_step, rows, vectors)
    return acc


@register_jitable
def row_ends(out_width, lanes):
    """How the channel-blocked kernel cuts a row of ``out_width`` output columns: the number of blocks
    of ``BLOCK_VECTORS`` vectors along the row, and the vectors that remain (fewer than
    ``BLOCK_VECTORS``, the last maybe partial), each computed in a block of ``BLOCK_VECTORS`` rows x 1
    vector once per stack of rows. A block of rows keeps as many sums in flight as a block along the
    row, where narrower blocks along the row would keep too few to hide the multiply-add latency
    (stacks of rows ran 0.93-1.08x the time of blocks of 2 vectors per vector: dense k3, k5, dilated,
    pointwise, float64 at 32 columns); and the kernel compiles two block shapes, not one per row
    ending."""
    return divmod(ceil_div(out_width, lanes), BLOCK_VECTORS)


@register_jitable
def rows_multiple(out_width, lanes):
    """The multiple of output rows a task of the channel-blocked kernel covers: ``BLOCK_VECTORS`` where
    rows end in stacked vectors (``row_ends``), else 1."""
    return BLOCK_VECTORS if row_ends(out_width, lanes)[1] else 1


@njit(cache=True, inline='always')
def _block(slab, packed, packed_bias, taps, runs, run_count, g, block, channel_first, channel_stop,
           partial, partial_start, source, row_step, out, n, od, oh, col0, valid_rows, rows, vectors):
    """Input channels ``[channel_first, channel_stop)`` of output channels ``BLOCK_CHANNELS`` of group
    ``g``'s block ``block`` x ``rows`` output rows from (``od``, ``oh``) x ``vectors`` vectors of
    columns from ``col0``, reading the slab from offset ``source``, ``row_step`` per row, at the taps
    of ``runs`` (``add_channels``); its first ``valid_rows`` rows reach the output. The block
    starts from the bias at the first input channel, else from its sums so far in ``partial`` (from
    ``partial_start``); it goes to the output after the last input channel, else back to
    ``partial``."""
    blocks, channels = packed.shape[1], packed.shape[2]
    unit = g * blocks + block
    acc = zero_block(packed_bias, BLOCK_CHANNELS, rows, vectors)
    if channel_first == 0:
        acc = splat_channels(acc, packed_bias, unit * BLOCK_CHANNELS, 1, rows, vectors)
    else:
        acc = load_block(acc, partial, partial_start)
    acc = add_channels(acc, slab, taps, runs, run_count, channel_first, channel_stop, source, row_step,
                       packed, unit * channels * taps.shape[0] * BLOCK_CHANNELS, BLOCK_CHANNELS, 1, rows,
                       vectors)
    if channel_stop < channels:
        store_block(acc, partial, partial_start)
        return
    out_per_group = out.shape[1] // packed.shape[0]
    first_channel = g * out_per_group + block * BLOCK_CHANNELS
    store_output(acc, out, output_offset(out, n, first_channel, od, oh, col0),
                 out.shape[2] * out.shape[3] * out.shape[4],
                 min(BLOCK_CHANNELS, out_per_group - block * BLOCK_CHANNELS),
                 valid_rows, min(vectors * vector_lanes(acc), out.shape[4] - col0),
                 rows, vectors, packed_bias.dtype)


@njit(cache=True, inline='always')
def _channel_blocks(slab, packed, packed_bias, taps, runs, run_count, g, first, stop, chunk, partial,
                    source, row_step, out, n, od, oh, col0, valid_rows, rows, vectors):
    """Blocks ``[first, stop)`` of group ``g``'s output channels at one output position (see
    :func:`_block`), one after another while the input they all read is hot in L1: 1.0-1.14x faster
    than sweeping the slab once per channel block (same process, alternating; dense k3, k5, dilated,
    strided, pointwise). Input channels go ``chunk`` at a time through all the blocks, so that the
    part of the slab they read stays within L1 (``input_chunk``); each block keeps its sums in
    ``partial`` between chunks, so every output element is still summed in the same order."""
    channels = packed.shape[2]
    items = BLOCK_CHANNELS * rows * vectors * vector_lanes(slab)
    for channel_first in range(0, channels, chunk):
        channel_stop = min(channels, channel_first + chunk)
        for block in range(first, stop):
            _block(slab, packed, packed_bias, taps, runs, run_count, g, block, channel_first,
                   channel_stop, partial, (block - first) * items, source, row_step, out, n, od, oh, col0,
                   valid_rows, rows, vectors)


@njit(cache=True)
def _blocked_task(x, packed, packed_bias, out, stride, dilation, kernel, grid, chunk, maps, slab_dims,
                  skip_padding, task):
    """Task ``task`` of :func:`_blocked_kernel`: its output planes in turn over its ring slab, each row
    in blocks along it and its remaining vectors in stacks of rows (``row_ends``), clipped to the
    task's rows (its slab holds whole stacks)."""
    groups, blocks = packed.shape[:2]
    out_depth, out_height, out_width = out.shape[2:]
    lanes = vector_lanes(x)
    wide, rest = row_ends(out_width, lanes)
    n, g, od0, oh0, first, stop, slab = task_start(x, task, grid, blocks, groups, slab_dims)
    row_stop = min(oh0 + grid[2], out_height)
    taps = np.empty(kernel[0] * kernel[1] * kernel[2], np.int64)
    runs = np.empty(2 * kernel[0], np.int64)
    partial = np.empty(max(0, stop - first) * BLOCK_CHANNELS * BLOCK_VECTORS * lanes, packed_bias.dtype)
    row_step = slab_offset(slab, 1, 0, stride)
    for od in range(od0, min(od0 + grid[0], out_depth)):
        enter_plane(x, n, g, groups, od0, od, oh0, stride, dilation, kernel, maps, slab, taps)
        for oh in range(oh0, row_stop):
            run_count = fill_tap_runs(runs, kernel, stride, dilation, maps, od, oh, 1, skip_padding)
            for block in range(wide):
                col0 = block * BLOCK_VECTORS * lanes
                _channel_blocks(slab, packed, packed_bias, taps, runs, run_count, g, first, stop, chunk,
                                partial, slab_offset(slab, oh - oh0, col0, stride), row_step, out, n, od,
                                oh, col0, 1, 1, BLOCK_VECTORS)
            if (oh - oh0) % BLOCK_VECTORS or not rest:
                continue
            stack_rows = min(BLOCK_VECTORS, row_stop - oh)
            run_count = fill_tap_runs(runs, kernel, stride, dilation, maps, od, oh, stack_rows,
                                      skip_padding)
            for vector in range(wide * BLOCK_VECTORS, wide * BLOCK_VECTORS + rest):
                col0 = vector * lanes
                _channel_blocks(slab, packed, packed_bias, taps, runs, run_count, g, first, stop, chunk,
                                partial, slab_offset(slab, oh - oh0, col0, stride), row_step, out, n, od, oh,
                                col0, stack_rows, BLOCK_VECTORS, 1)


@njit(parallel=True, cache=True)
def _blocked_kernel(x, packed, packed_bias, out, stride, dilation, pad_front, padded, mode, kernel,
                    grid, chunk, skip_padding):
    """Fill ``out`` (N, C_out, OD, OH, OW) from ``x`` with the weights and bias packed by
    ``pack_weights``, in the tasks of ``grid`` (``task_grid``), ``chunk`` input channels at a time
    (``input_chunk``), skipping the taps that read only zero padding if ``skip_padding``. The tasks
    run in a function of their own: Numba's parallel passes over the inlined blocks took 5 s of the
    first call's compilation."""
    slab_rows = round_up(grid[2], rows_multiple(out.shape[4], vector_lanes(x)))
    maps, slab_dims = blocked_setup(x, packed.shape[2], kernel, stride, dilation, pad_front, padded,
                                    mode, out.shape[4], (grid[0], grid[1], slab_rows, grid[3], grid[4]))
    for task in prange(task_count(x.shape[0], packed.shape[0], grid)):
        call_apart(_blocked_task, x, packed, packed_bias, out, stride, dilation, kernel, grid, chunk,
                   maps, slab_dims, skip_padding, np.int64(task))


@register_jitable
def serves(is_complex, out_per_group):
    """Whether the blocked kernel serves a convolution: real dtypes, at least ``BLOCKED_MIN_CHANNELS``
    output channels per group (the planner's table and jitted ``conv3d`` both ask this)."""
    return not is_complex and out_per_group >= BLOCKED_MIN_CHANNELS


@register_jitable
def fills_blocks(out_per_group):
    """Whether a group's output channels fill at least ``BLOCKED_MIN_FILL`` of the channels of its
    blocks, where the planner prefers this kernel to the row-blocked one."""
    return out_per_group >= BLOCKED_MIN_FILL * round_up(out_per_group, BLOCK_CHANNELS)


@njit(cache=True)
def pack_weights(weight, bias, has_bias, groups, block_channels):
    """Weights (C_out, C_in/g, KD, KH, KW) -> (g, blocks, C_in/g, taps, ``block_channels``): each
    block's channels' weights for one tap side by side; and the bias (zeros without one) -> (g *
    blocks * ``block_channels``,). Missing channels of a group's last block get zeros. Each block is
    packed in the order it is stored (a loop over the output channels scattered its stores: 512 x 512
    x 27 float32 weights 12.6 -> 9.6 ms; in parallel 4.4 ms, but its compilation took a second more of a
    cold first call)."""
    out_channels, in_per_group = weight.shape[:2]
    out_per_group = out_channels // groups
    blocks = ceil_div(out_per_group, block_channels)
    taps = weight.shape[2] * weight.shape[3] * weight.shape[4]
    rows = np.ascontiguousarray(weight).reshape(out_channels, in_per_group, taps)
    packed = np.zeros((groups, blocks, in_per_group, taps, block_channels), weight.dtype)
    packed_bias = np.zeros(groups * blocks * block_channels, weight.dtype)
    if has_bias:
        for o in range(out_channels):
            packed_bias[o // out_per_group * blocks * block_channels + o % out_per_group] = bias[o]
    for unit in range(groups * blocks):
        g, block = unit // blocks, unit % blocks
        first = g * out_per_group + block * block_channels
        for c in range(in_per_group):
            target = packed[g, block, c]
            for lane in range(min(block_channels, out_per_group - block * block_channels)):
                source = rows[first + lane, c]
                for tap in range(taps):
                    target[tap, lane] = source[tap]
    return packed, packed_bias


def workspace_bytes(plan):
    """Scratch bytes one worker thread holds (its tasks' rows are a multiple of a stack of rows when
    blocks stack them)."""
    lanes = VECTOR_BYTES // np.dtype(plan.dtype).itemsize
    return blocked_workspace_bytes(plan, ceil_div(plan.out_per_group, BLOCK_CHANNELS),
                                   rows_multiple(plan.output_size[2], lanes))


@register_jitable
def input_chunk(channels, kernel, dilation, stride, itemsize):
    """Input channels (of ``channels`` per group) the blocked kernel adds at a time to all its blocks
    at one output position: chunks as even as possible that keep the slab rows one block reads within
    ``INPUT_CHUNK_BYTES``, at least one channel."""
    lanes = VECTOR_BYTES // itemsize
    row_bytes = stride[2] * (BLOCK_VECTORS * lanes + tap_columns(kernel, dilation, stride)) * itemsize
    return balanced(channels, INPUT_CHUNK_BYTES // (kernel[0] * kernel[1] * row_bytes), 1)[0]


@register_jitable
def compute(x, weight, bias, has_bias, out, stride, dilation, pad_front, padded, mode, groups):
    """Fill the batched ``out`` from the batched ``x`` with the blocked kernel (real dtypes).

    The arguments are the plan's numbers, as :func:`numba_conv3d.cpu.direct.compute` takes them.
    """
    packed, packed_bias = pack_weights(weight, bias, has_bias, groups, BLOCK_CHANNELS)
    lanes = VECTOR_BYTES // x.itemsize
    grid = task_grid(x.shape[0], out.shape[2:], x.itemsize, weight.shape[1], weight.shape[2:], stride,
                     dilation, packed.shape[1], groups, rows_multiple(out.shape[4], lanes))
    _blocked_kernel(x, packed, packed_bias, out, stride, dilation, pad_front, padded, mode,
                    weight.shape[2:], grid,
                    input_chunk(weight.shape[1], weight.shape[2:], dilation, stride, x.itemsize),
                    skips_padding(x, weight, padded, mode))
