"""Gradient of a 3-D convolution with respect to its weight, on the CPU.

``grad_weight[o, i, t]`` (t a tap (kd, kh, kw), flattened) is the dot product, over the output
positions (n, od, oh, ow), of ``grad_output[n, o]`` with the padded input channel i of o's group seen
from tap t: per tap, a matrix product of (output channels x positions) by (positions x input channels).
The input is padded once, with W split into ``stride_w`` phases (``slab.py``), so that every tap's
window along an output row is a contiguous run.

Real dtypes use register blocks (``simd.py``) of ``WEIGHT_BLOCK_CHANNELS`` output channels x
``WEIGHT_BLOCK_TAPS`` taps of one input channel (1 channel x ``WEIGHT_BLOCK_SINGLE_TAPS`` taps where a
group has fewer output channels: depthwise), one accumulator vector per (channel, tap) whose lanes sum
every lanes-th position; a step loads one vector of positions of each channel's output gradient and of
each tap's input row and multiply-adds their outer product. A row ends in a masked vector. A task owns a
block of output channels and a range of units (input channel, block of taps); it walks the output in
chunks of ``WEIGHT_GRAD_CHUNK`` positions, every unit's block summing the chunk's rows (hot in L1) in
registers and resting in a small array between chunks. At the end each sum adds its lanes in lane order.
Complex dtypes take a plain loop over output rows (``_plain_kernel``).

Every weight element is summed by one thread in one fixed order: bitwise equal for any thread count.
"""
import math

import numpy as np
from numba import carray, njit, prange
from numba.extending import register_jitable

from ..config import WEIGHT_BLOCK_CHANNELS, WEIGHT_BLOCK_SINGLE_TAPS, WEIGHT_BLOCK_TAPS, WEIGHT_GRAD_CHUNK
from ..shape_rules import ceil_div
from .register_blocks import tap_offsets
from .pointers import element_pointer
from .simd import load_block, store_block, vector_lanes, zero_block
from .simd_masked import outer_fma, outer_fma_tail
from .slab import gather_slab, index_maps, phase_columns
from .tasks import channel_splits, split_range

# Taps that the offsets are padded to a multiple of: whole blocks of either shape.
TAP_MULTIPLE = math.lcm(WEIGHT_BLOCK_TAPS, WEIGHT_BLOCK_SINGLE_TAPS)


@njit(parallel=True, cache=True)
def _pad_phases_kernel(x, padded, pad_front, mode, out):
    """``out[n * C + c, 0]`` = the padded channel (n, c) of ``x``, W split into phases."""
    channels = x.shape[1]
    maps = index_maps(x, padded, pad_front, mode)
    for task in prange(out.shape[0]):
        gather_slab(x, task // channels, task % channels, 0, 0, padded[0], 0, maps, out[task])


def _padded_phases(x, padded, pad_front, mode, stride_w):
    """The padded input as one C-contiguous (N * C_in, PD, PH, ``stride_w`` phases, columns) array."""
    batch, channels = x.shape[:2]
    out = np.empty((batch * channels, 1, padded[0], padded[1], stride_w,
                    phase_columns(padded[2], stride_w)), x.dtype)
    _pad_phases_kernel(x, tuple(padded), tuple(pad_front), mode, out)
    return out.reshape((out.shape[0],) + out.shape[2:])


@register_jitable
def _row_offsets(grad, padded_x, n, o, c, od, oh, stride):
    """Flat offsets of output row (n, o, od, oh) in ``grad`` and of the padded input row (n, c) that
    its first tap reads."""
    batch, out_channels, out_depth, out_height, out_width = grad.shape
    channels = padded_x.shape[0] // batch
    padded_d, padded_h, phases, columns = padded_x.shape[1:]
    g_row = (((n * out_channels + o) * out_depth + od) * out_height + oh) * out_width
    x_row = (((n * channels + c) * padded_d + od * stride[0]) * padded_h + oh * stride[1]) * phases * columns
    return g_row, x_row


@njit(cache=True, inline='always')
def _sum_rows(acc, grad, padded_x, taps_at, first_tap, n, o, c, od, oh0, oh1, stride, channels):
    """``acc`` (a block of ``channels`` output channels from ``o`` x taps ``taps_at[first_tap ...]`` of
    input channel ``c``) plus the products over output rows [oh0, oh1) of plane (n, od)."""
    out_width = grad.shape[4]
    lanes = vector_lanes(grad)
    whole, tail = out_width // lanes, out_width % lanes
    channel_step = grad.shape[2] * grad.shape[3] * out_width
    for oh in range(oh0, oh1):
        g_row, x_row = _row_offsets(grad, padded_x, n, o, c, od, oh, stride)
        for v in range(0, whole * lanes, lanes):
            acc = outer_fma(acc, grad, g_row + v, channel_step, padded_x, x_row + v, taps_at, first_tap,
                            channels)
        if tail:
            acc = outer_fma_tail(acc, grad, g_row + whole * lanes, channel_step, padded_x,
                                 x_row + whole * lanes, taps_at, first_tap, channels, tail)
    return acc


@njit(cache=True, inline='always')
def _accumulate(grad, padded_x, taps_at, o, c0, first, tap_blocks, stride, sums, channels, taps):
    """Add into ``sums[u]`` the block of unit ``first + u`` (input channel ``c0 + unit // tap_blocks``,
    block of taps ``unit % tap_blocks``) for output channels from ``o``, over every output position:
    chunk by chunk of whole output rows, every unit per chunk."""
    batch, out_depth, out_height = grad.shape[0], grad.shape[2], grad.shape[3]
    chunk_rows = max(1, WEIGHT_GRAD_CHUNK // grad.shape[4])
    size = sums.shape[1]
    for n in range(batch):
        for od in range(out_depth):
            for oh0 in range(0, out_height, chunk_rows):
                oh1 = min(oh0 + chunk_rows, out_height)
                for u in range(sums.shape[0]):
                    c, tap_block = c0 + (first + u) // tap_blocks, (first + u) % tap_blocks
                    acc = load_block(zero_block(padded_x, channels, 1, taps), sums, u * size)
                    acc = _sum_rows(acc, grad, padded_x, taps_at, tap_block * taps, n, o, c, od, oh0, oh1,
                                    stride, channels)
                    store_block(acc, sums, u * size)


@register_jitable
def _store_sums(sums, out, o, owned, first, tap_blocks, taps):
    """``out[o + k // taps, i, t]`` for the sums of units ``first ...`` (input channel i, taps t of the
    unit's block) whose channel is from ``owned`` on and whose tap exists: each sum's lanes added in
    lane order."""
    lanes = vector_lanes(sums)
    for u in range(sums.shape[0]):
        i, tap_block = (first + u) // tap_blocks, (first + u) % tap_blocks
        for k in range(sums.shape[1] // lanes):
            channel, t = o + k // taps, tap_block * taps + k % taps
            if channel >= owned and t < out.shape[2]:
                total = sums[u, k * lanes]
                for lane in range(1, lanes):
                    total += sums[u, k * lanes + lane]
                out[channel, i, t] = total


@njit(cache=True, inline='always')
def _block_task(grad, padded_x, taps_at, out, stride, groups, task, splits, channels, taps):
    """Task ``task`` of :func:`_blocked_kernel` with blocks of ``channels x taps`` (compile-time ints).

    Task = (group, block of output channels, split of the units), the split varying fastest. A
    group's last block, if partial, starts ``channels`` before the group's end and stores only the
    channels no other block owns.
    """
    out_per_group, in_per_group = out.shape[0] // groups, out.shape[1]
    blocks = ceil_div(out_per_group, channels)
    tap_blocks = ceil_div(out.shape[2], taps)
    split, g, block = task % splits, task // splits // blocks, task // splits % blocks
    first, stop = split_range(split, in_per_group * tap_blocks, splits)
    owned = g * out_per_group + block * channels
    o = g * out_per_group + min(block * channels, out_per_group - channels)
    sums = np.zeros((stop - first, channels * taps * vector_lanes(grad)), grad.dtype)
    _accumulate(grad, padded_x, taps_at, o, g * in_per_group, first, tap_blocks, stride, sums, channels,
                taps)
    _store_sums(sums, out, o, owned, first, tap_blocks, taps)


def _block_shape(out_per_group):
    """(output channels, taps) of a register block for a group of ``out_per_group`` output channels."""
    if out_per_group >= WEIGHT_BLOCK_CHANNELS:
        return WEIGHT_BLOCK_CHANNELS, WEIGHT_BLOCK_TAPS
    return 1, WEIGHT_BLOCK_SINGLE_TAPS


@njit(parallel=True, cache=True)
def _blocked_kernel(grad, padded_x, taps_at, out, stride, groups, channels, splits):
    """Fill ``out`` (C_out, C_in / groups, taps) with the gradient of the weight (real dtypes), in
    blocks of ``channels`` output channels (see :func:`_block_shape`), each group's work cut into
    ``splits`` tasks per block of channels.

    ``taps_at`` holds every tap's offset in a padded input channel, then copies of the last up to a
    multiple of ``TAP_MULTIPLE`` (blocks past the last tap compute it again and store nothing).
    """
    blocks = groups * ceil_div(out.shape[0] // groups, channels)
    for task in prange(blocks * splits):
        if channels == WEIGHT_BLOCK_CHANNELS:
            _block_task(grad, padded_x, taps_at, out, stride, groups, task, splits, WEIGHT_BLOCK_CHANNELS,
                        WEIGHT_BLOCK_TAPS)
        else:
            _block_task(grad, padded_x, taps_at, out, stride, groups, task, splits, 1,
                        WEIGHT_BLOCK_SINGLE_TAPS)


def _run_blocked(grad, padded_x, taps_at, out, stride, groups):
    """:func:`_blocked_kernel` with its block shape and task count worked out here: the thread count
    is read in Python (a compiled read of it would keep the kernel out of the disk cache)."""
    out_per_group = out.shape[0] // groups
    channels, taps = _block_shape(out_per_group)
    units = out.shape[1] * ceil_div(out.shape[2], taps)
    splits = channel_splits(units, groups * ceil_div(out_per_group, channels))
    _blocked_kernel(grad, padded_x, taps_at, out, stride, groups, channels, splits)


@njit(cache=True)
def _tap_sums(grad, padded_x, o, c, kz, stride, dilation, sums):
    """``sums[kh, kw, ow]`` = sum over (n, od, oh) of grad * padded input, for tap (kz, kh, kw).

    Rows are viewed through raw pointers (``pointers.py``): an array view per row would increment and
    decrement the shared arrays' reference counts, atomically, far more often than the short rows
    take to sum.
    """
    batch, out_channels, out_depth, out_height, out_width = grad.shape
    channels = padded_x.shape[0] // batch
    padded_d, padded_h, phases, columns = padded_x.shape[1:]
    kh_, kw_ = sums.shape[:2]
    sums[:] = 0
    for n in range(batch):
        for od in range(out_depth):
            pd = od * stride[0] + kz * dilation[0]
            plane = ((n * channels + c) * padded_d + pd) * padded_h
            for oh in range(out_height):
                row_g = carray(element_pointer(grad, (((n * out_channels + o) * out_depth + od) * out_height
                                                      + oh) * out_width), out_width)
                for ky in range(kh_):
                    row_x = (plane + oh * stride[1] + ky * dilation[1]) * phases * columns
                    for kx in range(kw_):
                        col = kx * dilation[2]
                        source = carray(element_pointer(padded_x, row_x + (col % phases) * columns
                                                        + col // phases), out_width)
                        target = carray(element_pointer(sums, (ky * kw_ + kx) * out_width), out_width)
                        for ow in range(out_width):
                            target[ow] += row_g[ow] * source[ow]


@njit(parallel=True, cache=True)
def _plain_kernel(grad, padded_x, out, stride, dilation, groups):
    """Fill ``out`` (C_out, C_in / groups, KD, KH, KW) with the gradient of the weight, any dtype: a
    task owns (output channel, input channel of its group, kd), keeps one running sum per (kh, kw, ow)
    and sums each tap's row of them in ascending ow at the end."""
    out_channels, in_per_group, kd_, kh_, kw_ = out.shape
    out_per_group = out_channels // groups
    for task in prange(out_channels * in_per_group * kd_):
        o, rest = task // (in_per_group * kd_), task % (in_per_group * kd_)
        i, kz = rest // kd_, rest % kd_
        sums = np.empty((kh_, kw_, grad.shape[4]), out.dtype)
        _tap_sums(grad, padded_x, o, (o // out_per_group) * in_per_group + i, kz, stride, dilation, sums)
        for ky in range(kh_):
            for kx in range(kw_):
                total = sums[ky, kx, 0]
                for ow in range(1, sums.shape[2]):
                    total += sums[ky, kx, ow]
                out[o, i, kz, ky, kx] = total


def _padded_tap_offsets(kernel, dilation, padded_x):
    """Every tap's offset in a padded input channel, then copies of the last up to a multiple of
    ``TAP_MULTIPLE``."""
    offsets = tap_offsets(tuple(kernel), tuple(dilation), padded_x.shape)
    return np.concatenate([offsets, np.full(-len(offsets) % TAP_MULTIPLE, offsets[-1])])


def weight_grad(x, grad, weight_shape, stride, dilation, pad_front, padded, mode, groups):
    """Gradient of a convolution with respect to its weight.

    Parameters
    ----------
    x : numpy.ndarray
        (N, C_in, D, H, W), N > 0, any memory layout: the forward input (conjugated for complex).
    grad : numpy.ndarray
        C-contiguous (N, C_out, OD, OH, OW): the gradient of the output.
    weight_shape : tuple of 5 ints
        (C_out, C_in / groups, KD, KH, KW).
    stride, dilation, pad_front, padded : tuple of 3 ints
        The plan's stride, dilation, front pads and padded extents.
    mode : int
        Padding mode code (``shape_rules.PAD_*``).
    groups : int

    Returns
    -------
    numpy.ndarray
        ``weight_shape``, of ``grad``'s dtype.
    """
    padded_x = _padded_phases(x, padded, pad_front, mode, stride[2])
    out = np.empty(tuple(weight_shape), grad.dtype)
    if np.iscomplexobj(out):
        _plain_kernel(grad, padded_x, out, tuple(stride), tuple(dilation), groups)
    else:
        _run_blocked(grad, padded_x, _padded_tap_offsets(weight_shape[2:], dilation, padded_x),
                     out.reshape(out.shape[:2] + (-1,)), tuple(stride), groups)
    return out
