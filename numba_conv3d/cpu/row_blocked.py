"""Register-blocked convolution for few output channels per group (one-channel volumes, depthwise).

The sibling of ``blocked.py`` for real dtypes with fewer than ``BLOCK_CHANNELS`` output channels per
group, where a block of channels would compute mostly zeros: here a block is ``BLOCK_ROWS`` consecutive
output rows x ``BLOCK_VECTORS`` SIMD vectors of columns of one output channel, the rows sharing each
(broadcast) weight. Tasks cover a multiple of ``BLOCK_ROWS`` output rows, so every block of rows lies in
its task's slab (past the output's last row, on zero rows it does not store). Each output element is
summed in a fixed order: bias, then input channel, kd, kw, kh (along kh the rows a block reads slide
down the slab when the stride along H equals the dilation, see ``_add_taps``).
"""
import numpy as np
from numba import njit, prange
from numba.extending import register_jitable

from ..config import BLOCK_ROWS, BLOCK_VECTORS
from ..crossovers import ROW_BLOCKED_MAX_REDUCTION, ROW_BLOCKED_STRIDED_MAX_REDUCTION
from .register_blocks import (NARROW_VECTORS, blocked_setup, blocked_workspace_bytes, enter_plane,
                              output_offset, row_blocks, slab_offset, store_output, task_grid)
from .simd import fma_vectors, load_rows, slide_rows, splat_channels, vector_lanes, zero_block
from .slab import task_start
from .tasks import task_count
from .unlinked import call_apart


@njit(cache=True, inline='always')
def _add_taps(acc, slab, taps, kernel_planes, kernel_rows, kernel_columns, slides, source, row_step,
              weight, weight_start, vectors):
    """Add to ``acc`` (``BLOCK_ROWS`` rows x ``vectors``) every input channel and tap of the slab, in
    the order (input channel, kd, kw, kh). When ``slides`` (stride = dilation along H, so a row further
    along the kernel is a row further in the output), the rows a block reads slide down one row per
    kh: each kh loads one new row of vectors and keeps the others in registers, rather than loading
    ``BLOCK_ROWS`` rows per tap (the loads, not the multiply-adds, bound this kernel)."""
    ntaps = taps.shape[0]
    channel_size = slab.shape[1] * slab.shape[2] * slab.shape[3] * slab.shape[4]
    for i in range(slab.shape[0]):
        start, at = source + i * channel_size, weight_start + i * ntaps
        for kz in range(kernel_planes):
            for kx in range(kernel_columns):
                tap = kz * kernel_rows * kernel_columns + kx
                window = load_rows(acc, slab, start + taps[tap], row_step, BLOCK_ROWS, vectors)
                acc = fma_vectors(acc, weight, at + tap, window)
                for ky in range(1, kernel_rows):
                    row = start + taps[tap + ky * kernel_columns]
                    if slides:
                        window = slide_rows(window, slab, row + (BLOCK_ROWS - 1) * row_step, vectors)
                    else:
                        window = load_rows(acc, slab, row, row_step, BLOCK_ROWS, vectors)
                    acc = fma_vectors(acc, weight, at + tap + ky * kernel_columns, window)
    return acc


@njit(cache=True, inline='always')
def _row_block(slab, weight, bias, taps, kernel, slides, channel, source, row_step, out, n, od, oh,
               col0, vectors):
    """Rows ``oh:oh + BLOCK_ROWS`` x ``vectors`` vectors of columns from ``col0`` of output
    ``channel``, plane ``od``, reading the slab from offset ``source``, ``row_step`` per row
    (:func:`_add_taps`; 3 x 3 taps in H and W, the commonest, unrolled: 1.16-1.22x on depthwise k3)."""
    weight_start = channel * weight.shape[1] * taps.shape[0]
    acc = splat_channels(zero_block(slab, 1, BLOCK_ROWS, vectors), bias, channel, 0, BLOCK_ROWS,
                         vectors)
    if kernel[1] == 3 and kernel[2] == 3:
        acc = _add_taps(acc, slab, taps, kernel[0], 3, 3, slides, source, row_step, weight,
                        weight_start, vectors)
    else:
        acc = _add_taps(acc, slab, taps, kernel[0], kernel[1], kernel[2], slides, source, row_step,
                        weight, weight_start, vectors)
    store_output(acc, out, output_offset(out, n, channel, od, oh, col0), 0, 1,
                 min(BLOCK_ROWS, out.shape[3] - oh),
                 min(vectors * vector_lanes(out), out.shape[4] - col0), BLOCK_ROWS, vectors, out.dtype)


@njit(cache=True)
def _row_blocked_task(x, weight, bias, out, stride, dilation, kernel, groups, grid, maps, slab_dims,
                      task):
    """Task ``task`` of :func:`_row_blocked_kernel`: its output planes in turn over its ring slab."""
    out_depth, out_height, out_width = out.shape[2:]
    out_per_group = out.shape[1] // groups
    lanes = vector_lanes(x)
    wide, narrow, single = row_blocks(out_width, lanes)
    slides = stride[1] == dilation[1]
    n, g, od0, oh0, first, stop, slab = task_start(x, task, grid, out_per_group, groups, slab_dims)
    taps = np.empty(kernel[0] * kernel[1] * kernel[2], np.int64)
    row_step = slab_offset(slab, 1, 0, stride)
    for od in range(od0, min(od0 + grid[0], out_depth)):
        enter_plane(x, n, g, groups, od0, od, oh0, stride, dilation, kernel, maps, slab, taps)
        for o in range(g * out_per_group + first, g * out_per_group + stop):
            for oh in range(oh0, min(oh0 + grid[2], out_height), BLOCK_ROWS):
                col0 = 0
                for _ in range(wide):
                    _row_block(slab, weight, bias, taps, kernel, slides, o,
                               slab_offset(slab, oh - oh0, col0, stride), row_step, out,
                               n, od, oh, col0, BLOCK_VECTORS)
                    col0 += BLOCK_VECTORS * lanes
                for _ in range(narrow):
                    _row_block(slab, weight, bias, taps, kernel, slides, o,
                               slab_offset(slab, oh - oh0, col0, stride), row_step, out,
                               n, od, oh, col0, NARROW_VECTORS)
                    col0 += NARROW_VECTORS * lanes
                if single:
                    _row_block(slab, weight, bias, taps, kernel, slides, o,
                               slab_offset(slab, oh - oh0, col0, stride), row_step, out,
                               n, od, oh, col0, 1)


@njit(parallel=True, cache=True)
def _row_blocked_kernel(x, weight, bias, out, stride, dilation, pad_front, padded, mode, kernel,
                        groups, grid):
    """Fill ``out`` from ``x`` with ``weight`` reshaped to (C_out, C_in / groups, taps) and ``bias``
    (C_out,), zeros when the convolution has none, in the tasks of ``grid`` (``task_grid``); each task
    runs apart (``unlinked.py``)."""
    maps, slab_dims = blocked_setup(x, weight.shape[1], kernel, stride, dilation, pad_front, padded,
                                    mode, out.shape[4], grid)
    for task in prange(task_count(x.shape[0], groups, grid)):
        call_apart(_row_blocked_task, x, weight, bias, out, stride, dilation, kernel, groups, grid, maps,
                   slab_dims, np.int64(task))


@register_jitable
def beats_channel_blocks(kernel_width, stride_width, reduction):
    """Whether this kernel beats the channel-blocked one whatever the output channels: kernels 3 taps
    wide along W over a short reduction (input channels x taps per group; ``crossovers.ROW_BLOCKED_*``,
    measured crossovers: the first layers of U-Nets and video networks)."""
    if kernel_width != 3:
        return False
    if stride_width == 1:
        return reduction <= ROW_BLOCKED_MAX_REDUCTION
    return stride_width == 2 and reduction <= ROW_BLOCKED_STRIDED_MAX_REDUCTION


@register_jitable
def per_channel_operands(x, weight, bias, has_bias):
    """The weight as (C_out, C_in / groups, taps), C-contiguous, and the bias (zeros without one): what
    the kernels of one output channel at a time read."""
    out_channels = weight.shape[0]
    taps = np.ascontiguousarray(weight).reshape(out_channels, weight.shape[1], -1)
    return taps, bias if has_bias else np.zeros(out_channels, x.dtype)


def workspace_bytes(plan):
    """Scratch bytes one worker thread holds."""
    return blocked_workspace_bytes(plan, plan.out_per_group, BLOCK_ROWS)


@register_jitable
def compute(x, weight, bias, has_bias, out, stride, dilation, pad_front, padded, mode, groups):
    """Fill the batched ``out`` from the batched ``x`` with blocks of rows (real dtypes).

    The arguments are the plan's numbers, as :func:`numba_conv3d.cpu.direct.compute` takes them.
    """
    taps, full_bias = per_channel_operands(x, weight, bias, has_bias)
    out_channels, in_per_group = weight.shape[0], weight.shape[1]
    grid = task_grid(x.shape[0], out.shape[2:], x.itemsize, in_per_group, weight.shape[2:], stride,
                     dilation, out_channels // groups, groups, BLOCK_ROWS)
    _row_blocked_kernel(x, taps, full_bias, out, stride, dilation, pad_front, padded, mode,
                        weight.shape[2:], groups, grid)
