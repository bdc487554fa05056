"""1x1x1 convolution (the pointwise layers of X3D-style networks, strided projections of residual
networks) in register blocks of output channels x SIMD vectors of output positions, for real dtypes.

Without pads, a 1x1x1 convolution is, per sample and group, the product of the weights (C_out/g x
C_in/g) and the input's positions: each output position reads one input position, the same
(unit stride) or every stride-th. GEMM (``gemm.py``) hands that product to OpenBLAS, which packs both
operands for every call; with few input channels (24-192 in X3D-S) the packing outweighs the
multiply-adds. Here the output's positions, flattened across rows and planes, are cut into strips of
``BLOCK_VECTORS`` SIMD vectors, and strips into panels whose input (each input channel's positions
for the panel, read in place at unit stride, else gathered into a buffer once per panel) holds about
``PANEL_BYTES``: each block of ``BLOCK_CHANNELS`` output channels adds all input channels of a strip
into registers, strip after strip of the panel, before the next block, so the panel's input is read
from memory once, in runs along each channel, and from the cache by the other blocks; each weight broadcast
from the weight array as it lies (a block's weights for successive input channels share cache lines:
nothing is packed). A last strip or channel block that would run past the end is moved back to end
there: it computes some outputs of the one before it again, the same sums, in the same task.

Each output element is summed by one thread in the order (bias, input channel) with fused
multiply-adds: the same result for any thread count.
"""
import functools
import math

import numpy as np
from numba import njit, prange
from numba.extending import register_jitable

from ..config import BLOCK_CHANNELS, BLOCK_VECTORS, VECTOR_BYTES
from ..shape_rules import ceil_div
from . import blocked
from .simd import fma_block, splat_channels, store_rows, zero_block
from .tasks import thread_count

# Input bytes of one panel of strips. Strips one at a time (each block's products then its next strip)
# read the input in runs of one strip per channel: in network order, where the input comes from memory,
# they ran 1.1-1.5x GEMM's time on X3D-S's unit-stride layers; panels of 64 KiB 0.68-0.97x (2-core Xeon,
# same process, alternating).
PANEL_BYTES = 64 * 1024


@register_jitable
def strip_positions(itemsize):
    """Output positions of one strip: ``BLOCK_VECTORS`` SIMD vectors of the dtype."""
    return BLOCK_VECTORS * VECTOR_BYTES // itemsize


def serves(plan):
    """Whether this algorithm computes ``plan``: a real dtype, a 1x1x1 kernel without pads and at least
    ``BLOCK_CHANNELS`` output channels per group (volumes of less than one strip a sample run on the
    channel-blocked kernel: ``compute``)."""
    return (not plan.is_complex and plan.kernel_size == (1, 1, 1) and plan.padded_size == plan.input_size
            and plan.out_per_group >= BLOCK_CHANNELS)


def fills_a_strip(plan):
    """Whether ``plan``'s output holds at least one strip of positions a sample."""
    return math.prod(plan.output_size) >= strip_positions(np.dtype(plan.compute_dtype).itemsize)


def workspace_bytes(plan):
    """Scratch bytes one worker thread holds: a panel's gathered input (strided plans); the
    channel-blocked kernel's below one strip a sample."""
    itemsize = np.dtype(plan.compute_dtype).itemsize
    if not fills_a_strip(plan):
        return blocked.workspace_bytes(plan)
    if plan.stride == (1, 1, 1):
        return 0
    return plan.in_per_group * panel_positions(plan.in_per_group, itemsize) * itemsize


@register_jitable
def panel_positions(in_per_group, itemsize):
    """Output positions of one panel: whole strips whose input holds about ``PANEL_BYTES`` (one strip at
    least)."""
    positions = strip_positions(itemsize)
    return max(1, PANEL_BYTES // (in_per_group * itemsize * positions)) * positions


@njit(cache=True)
def _gather_positions(flat, channel_base, in_per_group, in_volume, first, out_size, in_size, stride,
                      gathered):
    """The input of output positions ``[first, first + positions)`` of every input channel (from
    ``channel_base``, channels ``in_volume`` apart in ``flat``) into ``gathered`` (in_per_group,
    positions)."""
    positions = gathered.shape[0] // in_per_group
    plane = out_size[1] * out_size[2]
    for j in range(positions):
        q = first + j
        od, rest = q // plane, q % plane
        oh, ow = rest // out_size[2], rest % out_size[2]
        at = channel_base + (od * stride[0] * in_size[1] + oh * stride[1]) * in_size[2] + ow * stride[2]
        for c in range(in_per_group):
            gathered[c * positions + j] = flat[at + c * in_volume]


@njit(cache=True)
def _piece(x, weight, groups, bias, has_bias, out, stride, n, g, first, stop, first_block, stop_block):
    """Output positions ``[first, stop)`` of sample ``n`` and group ``g``, the output channels of blocks
    ``[first_block, stop_block)``."""
    in_channels, out_channels, in_per_group = x.shape[1], out.shape[1], weight.shape[1]
    out_per_group = out_channels // groups
    in_volume = x.shape[2] * x.shape[3] * x.shape[4]
    volume = out.shape[2] * out.shape[3] * out.shape[4]
    flat, weights, target = x.reshape(-1), weight.reshape(-1), out.reshape(-1)
    positions = strip_positions(x.itemsize)
    unit = stride[0] == 1 and stride[1] == 1 and stride[2] == 1
    panel = panel_positions(in_per_group, x.itemsize)
    gathered = np.empty(0 if unit else in_per_group * panel, x.dtype)
    channel_base = (n * in_channels + g * in_per_group) * in_volume
    like = zero_block(x, BLOCK_CHANNELS, 1, BLOCK_VECTORS)
    for panel_start in range(first, stop, panel):
        panel_stop = min(stop, panel_start + panel)
        # the positions its strips read, the last strip moved back included
        low = min(panel_start, volume - positions)
        high = min(volume, panel_start + ceil_div(panel_stop - panel_start, positions) * positions)
        if unit:
            source, source_origin, source_step = flat, channel_base, in_volume
        else:
            source = gathered[:in_per_group * (high - low)]
            _gather_positions(flat, channel_base, in_per_group, in_volume, low, out.shape[2:], x.shape[2:],
                              stride, source)
            source_origin, source_step = -low, high - low
        for block in range(first_block, stop_block):
            o = g * out_per_group + min(block * BLOCK_CHANNELS, out_per_group - BLOCK_CHANNELS)
            for start in range(panel_start, panel_stop, positions):
                p = min(start, volume - positions)
                acc = splat_channels(like, bias, o, 1, 1, BLOCK_VECTORS) if has_bias else like
                for c in range(in_per_group):
                    acc = fma_block(acc, weights, o * in_per_group + c, in_per_group, source,
                                    source_origin + p + c * source_step, 0, 1, BLOCK_VECTORS)
                store_rows(acc, target, (n * out_channels + o) * volume + p, volume, 0, 1, BLOCK_VECTORS)


@njit(parallel=True, cache=True)
def _pointwise_kernel(x, weight, groups, bias, has_bias, out, stride, pieces, parts):
    """Fill ``out`` (N, C_out, OD, OH, OW) from ``x`` and the C-contiguous ``weight``: task (sample,
    group, piece ``[pieces[k], pieces[k + 1])`` of the flattened output positions, part ``[parts[j],
    parts[j + 1])`` of the group's blocks of output channels)."""
    count, part_count = pieces.shape[0] - 1, parts.shape[0] - 1
    per_sample = groups * count * part_count
    for task in prange(x.shape[0] * per_sample):
        n, g = task // per_sample, task // (count * part_count) % groups
        k, j = task // part_count % count, task % part_count
        _piece(x, weight, groups, bias, has_bias, out, stride, n, g, pieces[k], pieces[k + 1], parts[j],
               parts[j + 1])


@functools.lru_cache(maxsize=256)
def task_bounds(volume, samples, out_per_group, itemsize, threads):
    """The tasks of a call whose samples x groups are ``samples``, each of ``volume`` flattened output
    positions: bounds of the pieces of the positions (whole strips, the last piece also taking the
    remainder) and of the parts of a group's blocks of output channels (whole blocks, the last part also
    taking the block moved back, so that no two tasks store an output), about two tasks per thread, the
    positions split first (each part gathers a strided panel again). Kept per shape and thread count
    (the arrays are only read)."""
    strips = volume // strip_positions(itemsize)
    whole_blocks = out_per_group // BLOCK_CHANNELS
    count = max(1, min(strips, ceil_div(2 * threads, samples)))
    part_count = max(1, min(whole_blocks, ceil_div(2 * threads, samples * count)))
    pieces = [k * strips // count * strip_positions(itemsize) for k in range(count)] + [volume]
    parts = [j * whole_blocks // part_count for j in range(part_count)] + [ceil_div(out_per_group,
                                                                                   BLOCK_CHANNELS)]
    return np.array(pieces, np.int64), np.array(parts, np.int64)


def compute(x, weight, bias, has_bias, out, stride, dilation, pad_front, padded, mode, groups):
    """Fill the batched ``out`` from the batched ``x`` (a 1x1x1 plan without pads) with the
    register-blocked pointwise kernel; below one strip of output positions a sample (chunks of a Dask
    array a pointwise plan runs on), with the channel-blocked kernel, which adds the same sums in the
    same order."""
    volume = math.prod(out.shape[2:])
    if volume < strip_positions(x.itemsize):
        blocked.compute(x, weight, bias, has_bias, out, stride, dilation, pad_front, padded, mode, groups)
        return
    pieces, parts = task_bounds(volume, x.shape[0] * groups, weight.shape[0] // groups, x.itemsize,
                                thread_count())
    _pointwise_kernel(x, np.ascontiguousarray(weight), groups, bias, has_bias, out, tuple(stride), pieces,
                      parts)
