"""Register-blocked convolution for few output channels per group (one-channel volumes, depthwise).

The sibling of ``blocked.py`` for real dtypes with fewer than 4 output channels per group, where a block
of 4 channels would compute mostly zeros: here a block is 4 consecutive output rows x ``BLOCK_BYTES``
of columns of one output channel, the 4 rows sharing each weight. Slabs carry 3 strides' worth of zero
rows so the last block of rows is whole. Same fixed summation order (input channel, kd, kh, kw).
"""
import numba
import numpy as np
from numba import njit, prange
from numba.extending import register_jitable

from .blocked import (BLOCK_CHANNELS, STACK_ITEMS, blocked_setup, blocked_workspace_bytes,
                      finish_block, start_block)
from .pointers import block_columns, element_pointer, stack_buffer
from .slab import task_slab
from .tasks import channel_splits

BLOCK_ROWS = BLOCK_CHANNELS


@njit(cache=True, fastmath={"contract"})
def _row_block(slab, weight, taps, channel, c0, c1, oh0, col0, stride_h, out, n, od, bias, has_bias):
    """Add input channels ``c0:c1`` to rows ``oh0:oh0 + 4`` x the columns from ``col0`` of output
    ``channel``, resuming from ``out`` after the first chunk; the bias joins after the last."""
    columns = block_columns(slab)
    acc = numba.carray(stack_buffer(STACK_ITEMS, slab.dtype), (BLOCK_ROWS, columns))
    channels, ntaps = weight.shape[1], taps.shape[0]
    lanes = min(BLOCK_ROWS, out.shape[3] - oh0)
    start_block(acc, c0 > 0, out, n, channel, 0, od, oh0, 1, col0, lanes)
    row_size = slab.shape[3] * slab.shape[4]
    lane_step = stride_h * row_size
    channel_size = slab.shape[1] * slab.shape[2] * row_size
    for c in range(c0, c1):
        start = c * channel_size + oh0 * lane_step + col0
        for t in range(ntaps):
            tap = weight[channel, c, t]
            offset = start + taps[t]
            s0 = numba.carray(element_pointer(slab, offset), columns)
            s1 = numba.carray(element_pointer(slab, offset + lane_step), columns)
            s2 = numba.carray(element_pointer(slab, offset + 2 * lane_step), columns)
            s3 = numba.carray(element_pointer(slab, offset + 3 * lane_step), columns)
            for j in range(columns):
                acc[0, j] += tap * s0[j]
                acc[1, j] += tap * s1[j]
                acc[2, j] += tap * s2[j]
                acc[3, j] += tap * s3[j]
    finish_block(acc, out, n, channel, 0, od, oh0, 1, col0, lanes, bias, has_bias and c1 == channels)


@njit(parallel=True, cache=True)
def _row_blocked_kernel(x, weight, bias, has_bias, out, stride, dilation, pad_front, padded, mode,
                        kernel, groups, channel_splits_):
    """Fill ``out`` from ``x`` with ``weight`` reshaped to (C_out, C_in / groups, taps)."""
    in_per_group = weight.shape[1]
    out_depth, out_height, out_width = out.shape[2:]
    out_per_group = out.shape[1] // groups
    columns = block_columns(x)
    maps, slab_dims, taps, chunk = blocked_setup(
        x, in_per_group, kernel, stride, dilation, pad_front, padded, mode, out_width,
        (BLOCK_ROWS - 1) * stride[1])
    for task in prange(x.shape[0] * groups * out_depth * channel_splits_):
        n, g, od, first, stop, slab = task_slab(x, task, channel_splits_, out_per_group, out_depth,
                                                groups, stride[0], maps, slab_dims)
        for c0 in range(0, in_per_group, chunk):
            c1 = min(c0 + chunk, in_per_group)
            for oh0 in range(0, out_height, BLOCK_ROWS):
                for col0 in range(0, out_width, columns):
                    for o in range(g * out_per_group + first, g * out_per_group + stop):
                        _row_block(slab, weight, taps, o, c0, c1, oh0, col0, stride[1], out, n, od,
                                   bias, has_bias)


def workspace_bytes(plan):
    """Scratch bytes one worker thread holds (its slab carries the extra rows)."""
    return blocked_workspace_bytes(plan, (BLOCK_ROWS - 1) * plan.stride[1])


@register_jitable
def compute(x, weight, bias, has_bias, out, stride, dilation, pad_front, padded, mode, groups):
    """Fill the batched ``out`` from the batched ``x`` with 4-row blocks (real dtypes).

    The arguments are the plan's numbers, as :func:`numba_conv3d.cpu.direct.compute` takes them.
    """
    tasks = x.shape[0] * groups * out.shape[2]
    out_channels, in_per_group = weight.shape[0], weight.shape[1]
    taps = np.ascontiguousarray(weight).reshape(out_channels, in_per_group, -1)
    _row_blocked_kernel(x, taps, bias, has_bias, out, stride, dilation, pad_front, padded, mode,
                        weight.shape[2:], groups, channel_splits(out_channels // groups, tasks))
