"""Direct 3-D convolution on the CPU, over padded input slabs gathered per task.

The output is cut into independent tasks, one per (batch item, group, output depth plane, block of
output channels), run in parallel with ``prange``. A task gathers the input planes it reads into a
padded slab (every padding mode is an index map, so no padded copy of the whole volume exists), with
each row split into ``stride_w`` phases so that the innermost loop walks contiguous memory whatever the
stride. Each output element is summed by one thread in one fixed order (input channel, kd, kh, kw), so
results are bitwise equal for any thread count.
"""
import math
import numpy as np
from numba import njit, prange
from numba.extending import register_jitable

from ..config import ACCUMULATOR_TILE_BYTES
from .slab import index_maps, phase_columns, slab_shape, task_slab
from .tasks import channel_splits, task_count


@register_jitable
def accumulator_tile_rows(out_width, itemsize):
    """Output rows summed together: as many as fit in ``ACCUMULATOR_TILE_BYTES``, at least one."""
    return max(1, ACCUMULATOR_TILE_BYTES // (out_width * itemsize))


@njit(cache=True)
def _output_rows(slab, weight, o, oh0, rows, stride_h, dilation, acc):
    """``acc[r, ow]`` = sum over (c, kd, kh, kw) of weight[o, c, kd, kh, kw] * slab at output
    (oh0 + r, ow) for r < ``rows``, summed in that fixed order for every element.

    The tap loops are outside the row loop, so each tap's overhead is paid once per tile of rows.
    ``acc`` stays a whole C-contiguous tile so that the column loop is vectorized.
    """
    channels, kd_, kh_, kw_ = weight.shape[1:]
    columns = acc.shape[1]
    phases = slab.shape[3]
    acc[:rows] = 0
    for c in range(channels):
        for kz in range(kd_):
            z = kz * dilation[0]
            for ky in range(kh_):
                row0 = oh0 * stride_h + ky * dilation[1]
                for kx in range(kw_):
                    col = kx * dilation[2]
                    phase, j0 = col % phases, col // phases
                    tap = weight[o, c, kz, ky, kx]
                    for r in range(rows):
                        source = slab[c, z, row0 + r * stride_h, phase, j0:j0 + columns]
                        target = acc[r]
                        for ow in range(columns):
                            target[ow] += tap * source[ow]


@njit(parallel=True, cache=True)
def _direct_kernel(x, weight, bias, has_bias, out, stride, dilation, pad_front, padded, mode, groups,
                   channel_blocks):
    """Fill ``out`` (N, C_out, OD, OH, OW) with the convolution of ``x`` (N, C_in, D, H, W)."""
    batch = x.shape[0]
    out_depth, out_height, out_width = out.shape[2:]
    in_per_group = weight.shape[1]
    out_per_group = out.shape[1] // groups
    maps = index_maps(x, padded, pad_front, mode)
    slab_dims = slab_shape(in_per_group, weight.shape[2], dilation[0], stride[0], 1, padded[1],
                           stride[2], phase_columns(padded[2], stride[2]))
    tile_rows = accumulator_tile_rows(out_width, x.itemsize)
    grid = (1, out_depth, out_height, 1, channel_blocks)
    for task in prange(task_count(batch, groups, grid)):
        n, g, od, _, first, stop, slab = task_slab(x, task, grid, out_per_group, groups, stride, maps,
                                                   slab_dims)
        acc_tile = np.empty((tile_rows, out_width), x.dtype)
        for o in range(g * out_per_group + first, g * out_per_group + stop):
            for oh0 in range(0, out_height, tile_rows):
                rows = min(tile_rows, out_height - oh0)
                _output_rows(slab, weight, o, oh0, rows, stride[1], dilation, acc_tile)
                target = out[n, o, od, oh0:oh0 + rows]
                # Element by element: an array-to-slice assignment makes Numba compile its shape-error
                # message (string formatting, about 2 s of a cold first call).
                for row in range(rows):
                    for column in range(out_width):
                        target[row, column] = acc_tile[row, column]
                if has_bias:
                    target += bias[o]


def workspace_bytes(plan):
    """Scratch bytes one worker thread holds: its padded slab and its accumulator tile."""
    itemsize = np.dtype(plan.dtype).itemsize
    slab = slab_shape(plan.in_per_group, plan.kernel_size[0], plan.dilation[0], plan.stride[0], 1,
                      plan.padded_size[1], plan.stride[2],
                      phase_columns(plan.padded_size[2], plan.stride[2]))
    out_width = plan.output_size[2]
    tile = accumulator_tile_rows(out_width, itemsize) * out_width
    return (math.prod(slab) + tile) * itemsize


@register_jitable
def compute(x, weight, bias, has_bias, out, stride, dilation, pad_front, padded, mode, groups):
    """Fill ``out`` with the convolution of ``x`` by the direct kernel (every dtype).

    Plain Python when the CPU backend calls it with a plan's numbers (the kernel it calls is compiled
    and cached); compiled into the caller when ``conv3d`` runs inside a user's jitted code.

    Parameters
    ----------
    x : numpy.ndarray
        (N, C_in, D, H, W), N > 0, any memory layout.
    weight : numpy.ndarray
        (C_out, C_in / groups, KD, KH, KW).
    bias : numpy.ndarray
        (C_out,), or empty when ``has_bias`` is False.
    has_bias : bool
    out : numpy.ndarray
        C-contiguous (N, C_out, OD, OH, OW), overwritten.
    stride, dilation, pad_front, padded : tuple of 3 ints
        Normalized stride and dilation, front pads and padded extents (D, H, W).
    mode : int
        Padding mode code (``shape_rules.PAD_*``).
    groups : int
    """
    tasks = x.shape[0] * groups * out.shape[2]
    channel_blocks = channel_splits(weight.shape[0] // groups, tasks)
    _direct_kernel(x, np.ascontiguousarray(weight), bias, has_bias, out, stride, dilation, pad_front,
                   padded, mode, groups, channel_blocks)
