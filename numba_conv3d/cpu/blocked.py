"""Register-blocked direct convolution on the CPU, for real dtypes.

Each inner step computes a block of 4 output channels x ``BLOCK_BYTES`` of output columns (32 float32
or 16 float64) held in a stack buffer that LLVM keeps in vector registers across the whole sum over
input channels and kernel taps; one slab row segment is loaded per tap and multiplied by the 4
channels' weights (packed contiguously). Tasks, slabs and padding are those of the direct kernel
(``slab.py``); slab rows carry extra zero columns so that every column block is whole. Each output
element is still summed by one thread in the fixed order (input channel, kd, kh, kw), with fused
multiply-adds: results are bitwise equal for any thread count. Input channels are summed in chunks
whose slab rows fit in L1; between chunks the partial sums wait in the output (exact: they are
stored in the output's dtype, the accumulators' own).
"""
import numba
import numpy as np
from numba import njit, prange
from numba.extending import register_jitable

from ..config import BLOCK_BYTES, L1_BLOCK_BYTES
from .pointers import block_columns, element_pointer, stack_buffer
from .slab import index_maps, slab_shape, task_slab
from .tasks import channel_splits

# Output channels per register block; the inner loop below is written out for exactly four.
BLOCK_CHANNELS = 4
STACK_ITEMS = BLOCK_CHANNELS * BLOCK_BYTES // 4


@register_jitable
def blocked_slab_shape(in_per_group, kernel, dilation, stride, padded_h, out_width, itemsize,
                       extra_rows):
    """Slab of a register-blocked kernel: whole column blocks plus the furthest tap's offset per
    phase, and ``extra_rows`` zero rows below the padded input."""
    per_block = BLOCK_BYTES // itemsize
    blocks = (out_width + per_block - 1) // per_block
    columns = blocks * per_block + (kernel[2] - 1) * dilation[2] // stride[2]
    return slab_shape(in_per_group, kernel[0], dilation[0], padded_h + extra_rows, stride[2], columns)


def blocked_workspace_bytes(plan, extra_rows):
    """Scratch bytes one worker thread of a register-blocked kernel holds: its slab (the stack
    block is negligible)."""
    itemsize = np.dtype(plan.dtype).itemsize
    slab = blocked_slab_shape(plan.in_per_group, plan.kernel_size, plan.dilation, plan.stride,
                              plan.padded_size[1], plan.output_size[2], itemsize, extra_rows)
    return int(np.prod(slab)) * itemsize


@njit(cache=True)
def tap_offsets(kernel, dilation, slab_dims):
    """Flat slab offset of every tap (kd, kh, kw) relative to its output block's first element."""
    _, _, rows, phases, columns = slab_dims
    offsets = np.empty(kernel[0] * kernel[1] * kernel[2], np.int64)
    t = 0
    for kz in range(kernel[0]):
        for ky in range(kernel[1]):
            for kx in range(kernel[2]):
                col = kx * dilation[2]
                offsets[t] = (((kz * dilation[0] * rows + ky * dilation[1]) * phases + col % phases)
                              * columns + col // phases)
                t += 1
    return offsets


@njit(cache=True)
def start_block(acc, resume, out, n, channel0, channel_step, od, row0, row_step, col0, lanes):
    """Zero the accumulator block, or (``resume``) load the partial sums of its first ``lanes`` lanes;
    lane i is output channel ``channel0 + i * channel_step``, row ``row0 + i * row_step``."""
    acc[:] = 0
    if resume:
        width = min(acc.shape[1], out.shape[4] - col0)
        for i in range(lanes):
            source = out[n, channel0 + i * channel_step, od, row0 + i * row_step, col0:col0 + width]
            for j in range(width):
                acc[i, j] = source[j]


@njit(cache=True)
def finish_block(acc, out, n, channel0, channel_step, od, row0, row_step, col0, lanes, bias,
                 add_bias):
    """Store the first ``lanes`` lanes of the block (laid out as in ``start_block``), with the bias
    when ``add_bias``."""
    width = min(acc.shape[1], out.shape[4] - col0)
    for i in range(lanes):
        channel = channel0 + i * channel_step
        target = out[n, channel, od, row0 + i * row_step, col0:col0 + width]
        for j in range(width):
            target[j] = acc[i, j] + bias[channel] if add_bias else acc[i, j]


@njit(cache=True, fastmath={"contract"})
def _block(slab, packed, taps, g, block, c0, c1, oh, col0, stride_h, out, n, od, bias, has_bias):
    """Add input channels ``c0:c1`` to one block (4 output channels of group ``g`` x the columns from
    ``col0``) of output row ``oh``: starting from zero when ``c0`` is 0, else from the partial sums in
    ``out``; the bias joins after the last channel."""
    columns = block_columns(slab)
    acc = numba.carray(stack_buffer(STACK_ITEMS, slab.dtype), (BLOCK_CHANNELS, columns))
    blocks, channels, ntaps = packed.shape[1], packed.shape[2], taps.shape[0]
    out_per_group = out.shape[1] // packed.shape[0]
    outputs = min(BLOCK_CHANNELS, out_per_group - block * BLOCK_CHANNELS)
    first_channel = g * out_per_group + block * BLOCK_CHANNELS
    start_block(acc, c0 > 0, out, n, first_channel, 1, od, oh, 0, col0, outputs)
    row_size = slab.shape[3] * slab.shape[4]
    channel_size = slab.shape[1] * slab.shape[2] * row_size
    for c in range(c0, c1):
        start = c * channel_size + oh * stride_h * row_size + col0
        weights = ((g * blocks + block) * channels + c) * ntaps * BLOCK_CHANNELS
        for t in range(ntaps):
            source = numba.carray(element_pointer(slab, start + taps[t]), columns)
            w = numba.carray(element_pointer(packed, weights + t * BLOCK_CHANNELS), BLOCK_CHANNELS)
            w0, w1, w2, w3 = w[0], w[1], w[2], w[3]
            for j in range(columns):
                value = source[j]
                acc[0, j] += w0 * value
                acc[1, j] += w1 * value
                acc[2, j] += w2 * value
                acc[3, j] += w3 * value
    finish_block(acc, out, n, first_channel, 1, od, oh, 0, col0, outputs, bias,
                 has_bias and c1 == channels)


@register_jitable
def channel_chunk(kernel, dilation, itemsize, in_per_group):
    """Input channels summed per pass, so that their slab rows under one block stay in L1."""
    row_bytes = BLOCK_BYTES + (kernel[2] - 1) * dilation[2] * itemsize
    return max(1, min(in_per_group, L1_BLOCK_BYTES // (kernel[0] * kernel[1] * row_bytes)))


@njit(cache=True)
def blocked_setup(x, in_per_group, kernel, stride, dilation, pad_front, padded, mode, out_width,
                  extra_rows):
    """What a register-blocked kernel computes once per call: the index maps, the slab shape, the
    taps' slab offsets and the input-channel chunk."""
    maps = index_maps(x, padded, pad_front, mode)
    slab_dims = blocked_slab_shape(in_per_group, kernel, dilation, stride, padded[1], out_width,
                                   x.itemsize, extra_rows)
    return (maps, slab_dims, tap_offsets(kernel, dilation, slab_dims),
            channel_chunk(kernel, dilation, x.itemsize, in_per_group))


@njit(parallel=True, cache=True)
def _blocked_kernel(x, packed, bias, has_bias, out, stride, dilation, pad_front, padded, mode,
                    kernel, block_splits):
    """Fill ``out`` (N, C_out, OD, OH, OW) from ``x`` with the weights packed by ``pack_weights``."""
    groups, blocks, in_per_group = packed.shape[:3]
    out_depth, out_height, out_width = out.shape[2:]
    columns = block_columns(x)
    maps, slab_dims, taps, chunk = blocked_setup(
        x, in_per_group, kernel, stride, dilation, pad_front, padded, mode, out_width, 0)
    for task in prange(x.shape[0] * groups * out_depth * block_splits):
        n, g, od, first, stop, slab = task_slab(x, task, block_splits, blocks, out_depth, groups,
                                                stride[0], maps, slab_dims)
        for c0 in range(0, in_per_group, chunk):
            c1 = min(c0 + chunk, in_per_group)
            for oh in range(out_height):
                for col0 in range(0, out_width, columns):
                    for block in range(first, stop):
                        _block(slab, packed, taps, g, block, c0, c1, oh, col0, stride[1], out, n, od,
                               bias, has_bias)


@register_jitable
def serves(is_complex, out_per_group):
    """Whether the blocked kernel serves a convolution: real dtypes, at least one whole block of
    output channels per group (the planner's table and jitted ``conv3d`` both ask this)."""
    return not is_complex and out_per_group >= BLOCK_CHANNELS


@njit(cache=True)
def pack_weights(weight, groups):
    """(C_out, C_in/g, KD, KH, KW) -> (g, blocks, C_in/g, taps, 4): each block's 4 channels' weights
    for one tap side by side; missing channels of the last block are zeros."""
    out_channels, in_per_group = weight.shape[:2]
    out_per_group = out_channels // groups
    blocks = (out_per_group + BLOCK_CHANNELS - 1) // BLOCK_CHANNELS
    taps = weight.shape[2] * weight.shape[3] * weight.shape[4]
    packed = np.zeros((groups, blocks, in_per_group, taps, BLOCK_CHANNELS), weight.dtype)
    for o in range(out_channels):
        g, local = o // out_per_group, o % out_per_group
        block, lane = local // BLOCK_CHANNELS, local % BLOCK_CHANNELS
        for c in range(in_per_group):
            tap = 0
            for kd in range(weight.shape[2]):
                for kh in range(weight.shape[3]):
                    for kw in range(weight.shape[4]):
                        packed[g, block, c, tap, lane] = weight[o, c, kd, kh, kw]
                        tap += 1
    return packed


def workspace_bytes(plan):
    """Scratch bytes one worker thread holds."""
    return blocked_workspace_bytes(plan, 0)


@register_jitable
def compute(x, weight, bias, has_bias, out, stride, dilation, pad_front, padded, mode, groups):
    """Fill the batched ``out`` from the batched ``x`` with the blocked kernel (real dtypes).

    The arguments are the plan's numbers, as :func:`numba_conv3d.cpu.direct.compute` takes them.
    """
    tasks = x.shape[0] * groups * out.shape[2]
    packed = pack_weights(weight, groups)
    _blocked_kernel(x, packed, bias, has_bias, out, stride, dilation, pad_front, padded, mode,
                    weight.shape[2:], channel_splits(packed.shape[1], tasks))
