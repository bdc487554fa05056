"""Channel-vectorized direct convolution on the CPU, for real dtypes.

The channel-blocked kernel (``blocked.py``) lays SIMD vectors along output rows, so a row that is not
a whole number of vectors wide (the 56 columns of a stem or of a 1x7x7 convolution, the 7, 14 and 28 of
later layers) computes lanes past its end and throws them away: 12.5% of the work at 56 columns. This
kernel turns the block around: ``CHANNEL_BLOCK_COLUMNS`` output columns x ``CHANNEL_BLOCK_VECTORS``
SIMD vectors of output channels, held in registers across every input channel and tap. Per tap, the
block's weights (packed so that one tap's channels lie side by side) are loaded as vectors once and
each column's input element is broadcast (``simd.fma_block`` with the weights and the input in each
other's places). A row then ends within a block of columns rather than a vector, and the planner
takes this kernel where that keeps more of the computed lanes (``preferred``).

Slabs, tasks and padding are the channel-blocked kernel's. A block reaches the output through
in-register transposes and masked stores (``simd_masked.store_channel_rows``): a scalar transpose through a
stack buffer took a third of a stem's time. Each output element is summed by one thread in the order
(bias, input channel, kd, kh, kw) with fused multiply-adds, as in the channel-blocked kernel: the
results are bitwise those of that kernel, for any thread count.
"""
import numpy as np
from numba import njit, prange
from numba.extending import register_jitable

from ..config import (BLOCK_CHANNELS, BLOCK_VECTORS, CHANNEL_BLOCK_COLUMNS, CHANNEL_BLOCK_VECTORS,
                      CHANNEL_VECTORS_LONG_SHARE, CHANNEL_VECTORS_MARGIN, CHANNEL_VECTORS_MIN_REDUCTION,
                      CHANNEL_WEIGHT_CHUNK_BYTES, VECTOR_BYTES, WIDE_BLOCK_GAIN)
from .blocked import pack_weights
from .register_blocks import (blocked_setup, blocked_workspace_bytes, enter_plane, output_offset,
                              row_blocks, slab_offset, task_grid)
from ..shape_rules import ceil_div, round_up
from .simd import fma_block, load_block, load_rows, store_block, vector_lanes, zero_block
from .simd_masked import store_channel_rows
from .slab import task_start
from .tasks import balanced, task_count
from .unlinked import call_apart


@register_jitable
def block_channels(itemsize):
    """Output channels of one block: ``CHANNEL_BLOCK_VECTORS`` vectors of the dtype."""
    return CHANNEL_BLOCK_VECTORS * VECTOR_BYTES // itemsize


@register_jitable
def block_width(out_width):
    """The output rows' width rounded up to whole blocks of ``CHANNEL_BLOCK_COLUMNS`` columns."""
    return round_up(out_width, CHANNEL_BLOCK_COLUMNS)


@register_jitable
def kept_lanes(out_width, out_per_group, columns, channels):
    """Fraction of a kernel's computed lanes that reach the output when it computes rows in whole
    blocks of ``columns`` and a group's output channels in whole blocks of ``channels``."""
    return out_width * out_per_group / (round_up(out_width, columns) * round_up(out_per_group, channels))


@register_jitable
def preferred(out_width, out_per_group, reduction, itemsize):
    """Whether the planner takes this kernel rather than the channel-blocked one for rows of
    ``out_width`` columns, ``out_per_group`` output channels and ``reduction`` (input channels x taps)
    per group (see ``CHANNEL_VECTORS_MARGIN`` and ``WIDE_BLOCK_GAIN``): the channel-blocked kernel
    computes rows in whole vectors (blocks of ``BLOCK_VECTORS`` vectors where they fit, see
    ``row_blocks``) and channels in blocks of ``BLOCK_CHANNELS``. Stems and 1x7x7 convolutions with
    56-wide rows, and 7-, 14-, 24- and 28-wide rows of 64 or 128 channels: 1.04-1.25x faster (same
    process, alternating). With AVX2, also long reductions that keep nearly as many lanes
    (``CHANNEL_VECTORS_MIN_REDUCTION``)."""
    lanes = VECTOR_BYTES // itemsize
    wide = row_blocks(out_width, lanes)[0] * BLOCK_VECTORS
    vectors = ceil_div(out_width, lanes)
    kept_blocked = kept_lanes(out_width, out_per_group, lanes, BLOCK_CHANNELS)
    kept = kept_lanes(out_width, out_per_group, CHANNEL_BLOCK_COLUMNS, block_channels(itemsize))
    if reduction >= CHANNEL_VECTORS_MIN_REDUCTION and kept >= CHANNEL_VECTORS_LONG_SHARE * kept_blocked:
        return True
    return kept > CHANNEL_VECTORS_MARGIN * kept_blocked * (1 + WIDE_BLOCK_GAIN * wide / vectors)


@njit(cache=True, inline='always')
def _column_block(slab, packed, packed_bias, taps, g, block, channel_first, channel_stop, partial,
                  partial_start, source, out, n, od, oh, col0):
    """Input channels ``[channel_first, channel_stop)`` of output channels ``block_channels`` of group
    ``g``'s block ``block`` x ``CHANNEL_BLOCK_COLUMNS`` columns from (``od``, ``oh``, ``col0``), reading
    the slab from offset ``source``. The block starts from the bias at the first input channel, else
    from its sums so far in ``partial`` (from ``partial_start``); it goes to the output after the last
    input channel, else back to ``partial``."""
    channels = block_channels(slab.itemsize)
    blocks, in_channels, ntaps = packed.shape[1], packed.shape[2], packed.shape[3]
    unit = g * blocks + block
    like = zero_block(slab, CHANNEL_BLOCK_COLUMNS, 1, CHANNEL_BLOCK_VECTORS)
    if channel_first == 0:
        # every column starts from the same bias vectors
        acc = load_rows(like, packed_bias, unit * channels, 0, CHANNEL_BLOCK_COLUMNS, CHANNEL_BLOCK_VECTORS)
    else:
        acc = load_block(like, partial, partial_start)
    channel_size = slab.shape[1] * slab.shape[2] * slab.shape[3] * slab.shape[4]
    for i in range(channel_first, channel_stop):
        start = source + i * channel_size
        weight = (unit * in_channels + i) * ntaps * channels
        for t in range(ntaps):
            acc = fma_block(acc, slab, start + taps[t], 1, packed, weight + t * channels, 0, 1,
                            CHANNEL_BLOCK_VECTORS)
    if channel_stop < in_channels:
        store_block(acc, partial, partial_start)
        return
    out_per_group = out.shape[1] // packed.shape[0]
    store_channel_rows(acc, out, output_offset(out, n, g * out_per_group + block * channels, od, oh, col0),
                       out.shape[2] * out.shape[3] * out.shape[4],
                       min(channels, out_per_group - block * channels),
                       min(CHANNEL_BLOCK_COLUMNS, out.shape[4] - col0), CHANNEL_BLOCK_COLUMNS,
                       CHANNEL_BLOCK_VECTORS)


@register_jitable
def weight_chunk(in_per_group, ntaps, itemsize):
    """Input channels whose weights for one block (``block_channels`` x taps each) fit in
    ``CHANNEL_WEIGHT_CHUNK_BYTES``, balanced over ``in_per_group``: at least one."""
    per_channel = ntaps * block_channels(itemsize) * itemsize
    return balanced(in_per_group, CHANNEL_WEIGHT_CHUNK_BYTES // per_channel, 1)[0]


@njit(cache=True)
def _channel_vectorized_task(x, packed, packed_bias, out, stride, dilation, kernel, grid, maps,
                             slab_dims, task):
    """Task ``task`` of :func:`_channel_vectorized_kernel`: its output planes in turn over its ring
    slab."""
    groups, blocks, in_per_group = packed.shape[:3]
    out_depth, out_height, out_width = out.shape[2:]
    chunk = weight_chunk(in_per_group, packed.shape[3], x.itemsize)
    items = CHANNEL_BLOCK_COLUMNS * CHANNEL_BLOCK_VECTORS * vector_lanes(x)
    row_blocks = ceil_div(out_width, CHANNEL_BLOCK_COLUMNS)
    n, g, od0, oh0, first, stop, slab = task_start(x, task, grid, blocks, groups, slab_dims)
    taps = np.empty(kernel[0] * kernel[1] * kernel[2], np.int64)
    partial = np.empty(grid[2] * row_blocks * items, x.dtype)
    rows = min(grid[2], out_height - oh0)
    for od in range(od0, min(od0 + grid[0], out_depth)):
        enter_plane(x, n, g, groups, od0, od, oh0, stride, dilation, kernel, maps, slab, taps)
        for block in range(first, stop):
            for channel_first in range(0, in_per_group, chunk):
                channel_stop = min(in_per_group, channel_first + chunk)
                for row in range(rows):
                    for k in range(row_blocks):
                        col0 = k * CHANNEL_BLOCK_COLUMNS
                        _column_block(slab, packed, packed_bias, taps, g, block, channel_first,
                                      channel_stop, partial, (row * row_blocks + k) * items,
                                      slab_offset(slab, row, col0, stride), out, n, od, oh0 + row, col0)


@njit(parallel=True, cache=True)
def _channel_vectorized_kernel(x, packed, packed_bias, out, stride, dilation, pad_front, padded,
                               mode, kernel, grid):
    """Fill ``out`` (N, C_out, OD, OH, OW) from ``x`` with the weights and bias packed by
    ``pack_weights`` in blocks of ``block_channels``, in the tasks of ``grid`` (``task_grid``), each
    run apart (``unlinked.py``). In each output plane, a block of output channels adds a chunk of
    input channels (``weight_chunk``) to every block of columns of the task's rows before the next
    chunk, so that the chunk's weights stay in L1 across them; each column block waits in ``partial``
    between chunks."""
    maps, slab_dims = blocked_setup(x, packed.shape[2], kernel, stride, dilation, pad_front, padded,
                                    mode, block_width(out.shape[4]), grid)
    for task in prange(task_count(x.shape[0], packed.shape[0], grid)):
        call_apart(_channel_vectorized_task, x, packed, packed_bias, out, stride, dilation, kernel,
                   grid, maps, slab_dims, np.int64(task))


def workspace_bytes(plan):
    """Scratch bytes one worker thread holds: its slab, and the sums of its rows' column blocks between
    chunks of input channels (counted for every output row, an upper bound)."""
    itemsize = np.dtype(plan.dtype).itemsize
    channels = block_channels(itemsize)
    partial = plan.output_size[1] * block_width(plan.output_size[2]) * channels * itemsize
    return partial + blocked_workspace_bytes(plan, ceil_div(plan.out_per_group, channels), 1,
                                             CHANNEL_BLOCK_COLUMNS)


@register_jitable
def compute(x, weight, bias, has_bias, out, stride, dilation, pad_front, padded, mode, groups):
    """Fill the batched ``out`` from the batched ``x`` with the channel-vectorized kernel (real
    dtypes).

    The arguments are the plan's numbers, as :func:`numba_conv3d.cpu.direct.compute` takes them.
    """
    packed, packed_bias = pack_weights(weight, bias, has_bias, groups, block_channels(x.itemsize))
    out_size = (out.shape[2], out.shape[3], block_width(out.shape[4]))
    grid = task_grid(x.shape[0], out_size, x.itemsize, weight.shape[1], weight.shape[2:], stride,
                     dilation, packed.shape[1], groups, 1)
    _channel_vectorized_kernel(x, packed, packed_bias, out, stride, dilation, pad_front, padded, mode,
                               weight.shape[2:], grid)
