"""bfloat16 convolution by the CPU's bfloat16 dot products (AVX512-BF16 ``vdpbf16ps``).

The channel-vectorized kernel (``channel_vectorized.py``: tiles of output positions x vectors of output
channels in registers) run on input channels taken in pairs: a pair of bfloat16 input values is one
32-bit slab element, broadcast to every lane, and the packed weights hold, per output channel, the
pair's two weights side by side, so one instruction adds two products per lane
(``simd_bfloat16.bfloat16_dot``), twice the multiply-adds of a float32 fused multiply-add. The slab,
tasks, tiles, padding skips and stores are that kernel's, on 32-bit elements; sums are float32 from the
bias, pair by pair in channel order, tap by tap as that kernel orders them. A group with an odd channel
count pairs its last channel with a zero. :func:`compute_rows` runs the channel-blocked kernel
(``blocked.py``: vectors along output rows, each lane a position, the weight pairs broadcast) on the
same pairs and packed weights, in the same order of sums: the two give the same bits. Both round each
float32 sum once, as they store it, into the bits of the bfloat16 result (``simd_bfloat16.stored``).

The instruction flushes subnormal inputs and results to zero (as oneDNN's bfloat16 convolution does);
Inf and NaN propagate as in the float32 sums.
"""
from dataclasses import replace

import numpy as np
from numba import njit, prange
from numba.extending import register_jitable

from ..config import BLOCK_CHANNELS, MERGED_ROW_COLUMNS, VECTOR_BYTES
from ..crossovers import (BFLOAT16_ROWS_MERGE_BELOW, BFLOAT16_ROWS_MERGE_MANY_CHANNELS_UP_TO,
                          BFLOAT16_ROWS_MERGE_MIN_OUT_CHANNELS)
from ..environment import has_bfloat16_dot
from ..shape_rules import ceil_div, row_merge
from . import blocked, packed_weights
from .channel_vectorized import _channel_vectorized_kernel, block_channels, kept_layout, pack_bias
from .channel_vectorized import workspace_bytes as float32_workspace_bytes
from .register_blocks import pads_with_zeros, task_grid
from .tasks import thread_count

PAIR_BYTES = 4
# The exponent bits of a bfloat16: all ones for Inf and NaN.
EXPONENTS = np.uint32(0x7F80)
# The longest row :func:`volume_rows` makes of small planes side by side (its slab holds one row).
VOLUME_ROW_MAX_COLUMNS = 8 * MERGED_ROW_COLUMNS


def serves(plan):
    """bfloat16 operands on a CPU with 512-bit vectors and AVX512-BF16."""
    return plan.dtype == "bfloat16" and VECTOR_BYTES == 64 and has_bfloat16_dot()


@register_jitable
def pairs_per_group(in_per_group):
    """Input channel pairs of a group (the last one half zero for an odd count)."""
    return (in_per_group + 1) // 2


@njit(parallel=True, cache=True)
def pair_channels(bits, groups, pairs):
    """bfloat16 input bits (N, C, D, H, W), C-contiguous uint16 -> (N, groups * ``pairs``, D, H, W)
    uint32: pair p of group g holds the group's channel 2p in its low half and 2p + 1 in its high half
    (zero past the group's last channel)."""
    batch, channels = bits.shape[:2]
    per_group = channels // groups
    plane = bits.shape[2] * bits.shape[3] * bits.shape[4]
    flat = bits.reshape(batch, channels, plane)
    out = np.empty((batch, groups * pairs, plane), np.uint32)
    for job in prange(batch * groups * pairs):
        n, unit = job // (groups * pairs), job % (groups * pairs)
        g, p = unit // pairs, unit % pairs
        low = g * per_group + 2 * p
        if 2 * p + 1 < per_group:
            for k in range(plane):
                out[n, unit, k] = np.uint32(flat[n, low, k]) | (np.uint32(flat[n, low + 1, k]) << 16)
        else:
            for k in range(plane):
                out[n, unit, k] = np.uint32(flat[n, low, k])
    return out.reshape((batch, groups * pairs) + bits.shape[2:])


@njit(parallel=True, cache=True)
def pack_pairs(weight, groups, block_channels):
    """bfloat16 weight bits (C_out, C_in/g, KD, KH, KW), C-contiguous uint16 -> (g, blocks, pairs, taps,
    ``block_channels``) uint32: per output channel, input channels 2p (low half) and 2p + 1 (high half;
    zero past the group's last channel), as :func:`pair_channels` pairs the input; missing channels of
    a group's last block zero. Also whether every weight is finite (read in the same pass)."""
    out_channels, in_per_group = weight.shape[:2]
    out_per_group = out_channels // groups
    blocks = ceil_div(out_per_group, block_channels)
    pairs = pairs_per_group(in_per_group)
    taps = weight.shape[2] * weight.shape[3] * weight.shape[4]
    bits = weight.reshape(out_channels, in_per_group, taps)
    packed = np.zeros((groups, blocks, pairs, taps, block_channels), np.uint32)
    nonfinite = np.zeros(groups * blocks * pairs, np.bool_)
    for job in prange(groups * blocks * pairs):
        unit, p = job // pairs, job % pairs
        g, block = unit // blocks, unit % blocks
        first = g * out_per_group + block * block_channels
        target = packed[g, block, p]
        found = False
        for lane in range(min(block_channels, out_per_group - block * block_channels)):
            low = bits[first + lane, 2 * p]
            high = bits[first + lane, min(2 * p + 1, in_per_group - 1)]
            paired = 2 * p + 1 < in_per_group
            for tap in range(taps):
                pair = np.uint32(low[tap]) | ((np.uint32(high[tap]) << 16) if paired else np.uint32(0))
                found |= (pair & EXPONENTS) == EXPONENTS or (pair >> 16) & EXPONENTS == EXPONENTS
                target[tap, lane] = pair
        nonfinite[job] = found
    return packed, not nonfinite.any()


def compute(bits, weight, bias, has_bias, out, stride, dilation, pad_front, padded, mode, groups):
    """Fill the batched ``out``, the bits (uint16) of a bfloat16 result (or float32 sums), from the
    bits (uint16, C-contiguous) of the batched bfloat16 input and of the weight, and the float32 bias;
    the weight packed once while its bytes stay the same (``packed_weights.py``).

    The arguments are the plan's numbers, as :func:`numba_conv3d.cpu.direct.compute` takes them.
    """
    x, packed, packed_bias, finite = _paired(bits, weight, bias, has_bias, groups, block_channels(PAIR_BYTES))
    tall, grid, slab_dims = kept_layout(thread_count(), x.shape[0], out.shape[2:], PAIR_BYTES,
                                        x.shape[1] // groups, weight.shape[2:], tuple(stride),
                                        tuple(dilation), weight.shape[0] // groups, groups)
    _channel_vectorized_kernel(x, packed, packed_bias, out, stride, dilation, pad_front, padded, mode,
                               weight.shape[2:], grid, slab_dims, pads_with_zeros(x, padded, mode) and finite,
                               tall)


def _paired(bits, weight, bias, has_bias, groups, channels):
    """What both kernels run on: the input's pairs of channels (``pair_channels``), the weight's pairs
    packed in blocks of ``channels`` output channels (kept between calls) and whether all are finite,
    and the packed float32 bias: ``(x, packed, packed_bias, finite)``."""
    x = pair_channels(bits, groups, pairs_per_group(weight.shape[1]))
    packed, finite = packed_weights.packed(weight, (groups, channels), pack_pairs)
    packed_bias = pack_bias(bias, has_bias, groups, weight.shape[0] // groups, channels, np.float32)
    return x, packed, packed_bias, finite


def volume_rows(size, kernel, stride, pads_none, out_per_group):
    """The (D, H, W) that :func:`compute_rows` runs a 1x1x1 convolution at unit stride without pads
    of ``size`` (as ``ConvPlan.rows_merged`` lays its rows) on: where a plane holds fewer than
    ``BFLOAT16_ROWS_MERGE_BELOW`` positions, or at most ``BFLOAT16_ROWS_MERGE_MANY_CHANNELS_UP_TO`` for
    at least ``BFLOAT16_ROWS_MERGE_MIN_OUT_CHANNELS`` output channels per group, ``m`` planes side by
    side as one row (``shape_rules.row_merge`` towards ``MERGED_ROW_COLUMNS``), at most
    ``VOLUME_ROW_MAX_COLUMNS`` long (each plane of 5x5 outputs would end in a partly filled block);
    else ``size`` (larger planes fill their vectors, and a row per plane lets the tasks split the planes
    rather than all gather them)."""
    depth, height, width = size
    plane = height * width
    merges = plane < BFLOAT16_ROWS_MERGE_BELOW or (plane <= BFLOAT16_ROWS_MERGE_MANY_CHANNELS_UP_TO and
                                                    out_per_group >= BFLOAT16_ROWS_MERGE_MIN_OUT_CHANNELS)
    if kernel != (1, 1, 1) or stride != (1, 1, 1) or not pads_none or not merges:
        return size
    planes = row_merge(depth, plane, MERGED_ROW_COLUMNS)
    return (depth // planes, 1, planes * plane) if planes * plane <= VOLUME_ROW_MAX_COLUMNS else size


def _reads_subsampled(kernel, stride, pads_none):
    """Whether :func:`compute_rows` runs a convolution at unit stride on the positions it reads (a
    strided 1x1x1 kernel without pads)."""
    return kernel == (1, 1, 1) and stride != (1, 1, 1) and pads_none


@njit(parallel=True, cache=True)
def _subsampled(bits, stride, size):
    """The positions ``bits[:, :, ::sd, ::sh, ::sw]`` of ``size`` (D, H, W) that a strided 1x1x1 kernel
    without pads reads, C-contiguous: one (sample, channel, plane) per step."""
    batch, channels = bits.shape[:2]
    out = np.empty((batch, channels) + size, bits.dtype)
    for unit in prange(batch * channels * size[0]):
        n, c, d = unit // (channels * size[0]), unit // size[0] % channels, unit % size[0]
        for h in range(size[1]):
            source, target = bits[n, c, d * stride[0], h * stride[1]], out[n, c, d, h]
            for w in range(size[2]):
                target[w] = source[w * stride[2]]
    return out


def compute_rows(bits, weight, bias, has_bias, out, stride, dilation, pad_front, padded, mode, groups):
    """:func:`compute` by the channel-blocked kernel (``blocked.py``: vectors along output rows, blocks
    of ``BLOCK_CHANNELS`` output channels) on the same pairs, small planes of 1x1x1 convolutions side
    by side (:func:`volume_rows`). A strided 1x1x1 kernel without pads runs at unit stride on the
    positions it reads, copied out first (:func:`_subsampled`): vectors of whole input rows, not of every
    other element."""
    if _reads_subsampled(weight.shape[2:], tuple(stride), tuple(padded) == bits.shape[2:]):
        bits, stride, padded = _subsampled(bits, tuple(stride), out.shape[2:]), (1, 1, 1), out.shape[2:]
    size = volume_rows(bits.shape[2:], weight.shape[2:], tuple(stride), tuple(padded) == bits.shape[2:],
                       weight.shape[0] // groups)
    if size != bits.shape[2:]:
        bits, out, padded = bits.reshape(bits.shape[:2] + size), out.reshape(out.shape[:2] + size), size
    x, packed, packed_bias, finite = _paired(bits, weight, bias, has_bias, groups, BLOCK_CHANNELS)
    pairs = packed.shape[2]
    grid = task_grid(x.shape[0], out.shape[2:], PAIR_BYTES, pairs, weight.shape[2:], stride, dilation,
                     packed.shape[1], groups, blocked.rows_multiple(out.shape[4], VECTOR_BYTES // PAIR_BYTES))
    blocked._blocked_kernel(x, packed, packed_bias, out, stride, dilation, pad_front, padded, mode,
                            weight.shape[2:], grid,
                            blocked.input_chunk(pairs, weight.shape[2:], dilation, stride, PAIR_BYTES),
                            pads_with_zeros(x, padded, mode) and finite)


def workspace_bytes(plan):
    """Scratch bytes one worker thread holds: the channel-vectorized kernel's for the pairs as float32
    channels."""
    return float32_workspace_bytes(_paired_plan(plan))


def _paired_plan(plan, **changes):
    """``plan`` in float32 with its pairs as input channels (and ``changes``)."""
    return replace(plan.computed(), in_channels=plan.groups * pairs_per_group(plan.in_per_group), **changes)


def rows_workspace_bytes(plan):
    """Scratch bytes one worker thread of :func:`compute_rows` holds: the channel-blocked kernel's for
    the pairs as float32 channels, on the volume it runs (``plan`` with its rows merged; a strided
    1x1x1 kernel without pads at unit stride on the positions it reads)."""
    if _reads_subsampled(plan.kernel_size, plan.stride, plan.pads == ((0, 0),) * 3):
        plan = replace(plan, input_size=plan.output_size, stride=(1, 1, 1))
    size = volume_rows(plan.input_size, plan.kernel_size, plan.stride, plan.pads == ((0, 0),) * 3,
                       plan.out_per_group)
    return blocked.workspace_bytes(_paired_plan(plan, input_size=size))
