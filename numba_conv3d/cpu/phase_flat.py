"""Convolution of small output volumes with few output channels per group (the depthwise layers deep in
video networks) over flattened positions.

The row kernels vectorize along one output row; where rows are a few columns wide (planes of 5x5 or
10x10) most lanes idle. Here a task (one sample and group) gathers its group's padded input channels
once, split into stride phases: phase (a, b, c) holds the padded positions (a + i * sd, b + j * sh,
c + k * sw) as a (D', H', W') volume (copied row by row at unit stride along W, else element by
element through an index worked out once per call). Output (od, oh, ow) then reads tap (kd, kh, kw) from phase
(kd * dd % sd, kh * dh % sh, kw * dw % sw) at (od + kd * dd // sd, oh + kh * dh // sh, ow + kw * dw //
sw): every tap is one constant offset into the flat phases. Outputs are computed at each position of
the flat (D_out, H', W') grid, so that a block of SIMD vectors runs across rows and planes; the
positions past a row's or plane's end are computed too and dropped when the block is stored. Nothing
is multiplied by a padding the stride skips, and no input is gathered twice.

Each output element is summed in a fixed order, independent of the tasks: bias, then input channel, kd,
kw, kh, one rounding per multiply-add, the row-blocked kernel's order. Results are bitwise equal for
any number of threads, and to the row-blocked kernel's (which jitted ``conv3d`` runs for these
layers).
"""
import math
import numpy as np
from numba import njit, prange
from numba.extending import register_jitable

from ..config import FLAT_TASK_CHUNKS, FLAT_VECTORS
from ..shape_rules import ceil_div
from .row_blocked import per_channel_operands
from .simd import fma_block, splat_channels, store_block, vector_lanes, zero_block
from .simd_masked import copy_elements
from .slab import index_maps


@register_jitable
def phase_extents(padded, stride):
    """(D', H', W'): a stride phase's extents, the padded extents divided by the stride (rounded up)."""
    return (ceil_div(padded[0], stride[0]), ceil_div(padded[1], stride[1]),
            ceil_div(padded[2], stride[2]))


@register_jitable
def tap_offsets(kernel, dilation, stride, extents):
    """(offsets, weight taps): per tap in the order the kernel sums them (kd, kw, kh: the row-blocked
    kernel's), its offset into one input channel's flat phases and its index among the weight's taps
    (kd, kh, kw in C order)."""
    phase_size = extents[0] * extents[1] * extents[2]
    offsets = np.empty(kernel[0] * kernel[1] * kernel[2], np.int64)
    weight_taps = np.empty_like(offsets)
    t = 0
    for kd in range(kernel[0]):
        for kw in range(kernel[2]):
            for kh in range(kernel[1]):
                a, b, c = kd * dilation[0], kh * dilation[1], kw * dilation[2]
                phase = ((a % stride[0]) * stride[1] + b % stride[1]) * stride[2] + c % stride[2]
                offsets[t] = (phase * phase_size + ((a // stride[0]) * extents[1] + b // stride[1])
                              * extents[2] + c // stride[2])
                weight_taps[t] = (kd * kernel[1] + kh) * kernel[2] + kw
                t += 1
    return offsets, weight_taps


@register_jitable
def phase_sources(maps, stride, extents, height, width):
    """Where each row and column of the phases reads, worked out once per call from the padding
    ``maps`` (``slab.index_maps``): (rows, columns, inner, outer). ``rows[a * sh + b, i * H' + j]`` is
    the offset within an input channel of the row that phase row (i, j) of phase (a, b) copies, or -1
    (zeros);
    ``columns[e, k]`` the input column that column k of W phase e copies, or -1; the columns in
    ``[inner[e], outer[e])`` read the input itself (not its padding), ``stride[2]`` apart."""
    depth_map, height_map, width_map, front = maps
    rows = np.full((stride[0] * stride[1], extents[0] * extents[1]), -1, np.int64)
    for a in range(stride[0]):
        for b in range(stride[1]):
            for i in range(extents[0]):
                pd = a + i * stride[0]
                sd = depth_map[pd] if pd < depth_map.shape[0] else -1
                for j in range(extents[1]):
                    ph = b + j * stride[1]
                    sh = height_map[ph] if ph < height_map.shape[0] else -1
                    if sd >= 0 and sh >= 0:
                        rows[a * stride[1] + b, i * extents[1] + j] = (sd * height + sh) * width
    columns = np.full((stride[2], extents[2]), -1, np.int64)
    inner = np.zeros(stride[2], np.int64)
    outer = np.zeros(stride[2], np.int64)
    for e in range(stride[2]):
        for k in range(extents[2]):
            pw = e + k * stride[2]
            if pw < width_map.shape[0]:
                columns[e, k] = width_map[pw]
        inner[e] = min(ceil_div(max(front - e, 0), stride[2]), extents[2])
        outer[e] = max(min(ceil_div(front + width - e, stride[2]), extents[2]), inner[e])
    return rows, columns, inner, outer


@register_jitable
def phase_index(sources):
    """Where each element of one input channel's flat phases (phase, then D', H', W') reads, from
    ``phase_sources``' rows and columns: its offset within the input channel, or -1 for a zero."""
    rows, columns = sources[0], sources[1]
    step, width = columns.shape
    index = np.full(rows.shape[0] * step * rows.shape[1] * width, -1, np.int64)
    at = 0
    for ab in range(rows.shape[0]):
        for e in range(step):
            for r in range(rows.shape[1]):
                for k in range(width):
                    if rows[ab, r] >= 0 and columns[e, k] >= 0:
                        index[at] = rows[ab, r] + columns[e, k]
                    at += 1
    return index


@register_jitable
def _gather_rows(x, n, c0, channels, sources, phases):
    """Write into ``phases`` (channels x phases x D' x H' x W', flat, zeros on entry) the padded input
    of channels ``c0 ...`` of sample ``n`` at unit stride along W, as ``sources`` (``phase_sources``)
    say: the columns that read the input itself are a copy of its row, the padding columns are looked
    up, and the rows and columns that read zeros are left as they are."""
    rows, columns, inner, outer = sources
    width = columns.shape[1]
    first, last = inner[0], outer[0]
    # Inner column k copies input column columns[0, first] + (k - first).
    shift = columns[0, first] - first if first < last else 0
    channel_size = x.shape[2] * x.shape[3] * x.shape[4]
    flat = x.reshape(x.size)
    at = 0
    for c in range(c0, c0 + channels):
        channel = (n * x.shape[1] + c) * channel_size
        for ab in range(rows.shape[0]):
            for r in range(rows.shape[1]):
                if rows[ab, r] >= 0:
                    row = channel + rows[ab, r]
                    copy_elements(phases, at + first, flat, row + shift + first, last - first)
                    for k in range(first):
                        if columns[0, k] >= 0:
                            phases[at + k] = flat[row + columns[0, k]]
                    for k in range(last, width):
                        if columns[0, k] >= 0:
                            phases[at + k] = flat[row + columns[0, k]]
                at += width


@register_jitable
def _gather_elements(x, n, c0, channels, index, phases):
    """Write into ``phases`` (channels x phases x D' x H' x W', flat) the padded input of channels
    ``c0 ...`` of sample ``n``, element by element as ``index`` (``phase_index``) says. Strided along W,
    a phase row holds a few elements taken ``stride_w`` apart: copying them row by row cost more per row
    than per element (X3D's stride-2 depthwise layers at 10x10 to 40x40: 0.69-0.86x the layer's time
    this way)."""
    size = index.shape[0]
    channel_size = x.shape[2] * x.shape[3] * x.shape[4]
    flat = x.reshape(x.size)
    zero = x.dtype.type(0)
    for c in range(channels):
        channel = (n * x.shape[1] + c0 + c) * channel_size
        at = c * size
        for i in range(size):
            source = index[i]
            value = flat[np.uint64(channel + max(source, 0))]
            phases[np.uint64(at + i)] = value if source >= 0 else zero


@register_jitable
def _store_cropped(sums, extents, out_flat, first_row, out_size):
    """Copy the output positions of the flat (D_out, H', W') grid ``sums`` to the output rows from row
    ``first_row`` of the flat ``out_flat``, dropping the positions past each row's and plane's end."""
    out_depth, out_height, out_width = out_size
    for od in range(out_depth):
        for oh in range(out_height):
            source = (od * extents[1] + oh) * extents[2]
            target = (first_row + od * out_height + oh) * out_width
            copy_elements(out_flat, target, sums, source, out_width)


@njit(parallel=True, cache=True)
def _phase_flat_kernel(x, weight, bias, out, stride, dilation, pad_front, padded, mode, kernel, groups):
    """Fill ``out`` from ``x`` with ``weight`` reshaped to (C_out, C_in / groups, taps) and ``bias``."""
    batch = x.shape[0]
    out_channels, in_per_group, ntaps = weight.shape
    out_per_group = out_channels // groups
    out_depth = out.shape[2]
    extents = phase_extents(padded, stride)
    plane = extents[1] * extents[2]
    channel_size = stride[0] * stride[1] * stride[2] * extents[0] * plane  # one channel's phases
    offsets, weight_taps = tap_offsets(kernel, dilation, stride, extents)
    block = FLAT_VECTORS * vector_lanes(x)
    positions = ceil_div(out_depth * plane, block) * block
    # Blocks past the grid's last position read this far past the last channel's phases.
    slack = positions + offsets.max()
    sources = phase_sources(index_maps(x, padded, pad_front, mode), stride, extents, x.shape[3],
                            x.shape[4])
    index = phase_index(sources) if stride[2] > 1 else np.empty(0, np.int64)
    out_flat = out.reshape(out.size)
    tasks = batch * groups
    per_chunk = max(1, tasks // FLAT_TASK_CHUNKS)
    for chunk in prange(ceil_div(tasks, per_chunk)):
        # Every task gathers into the same positions of the phases: the zeros the first left stay.
        phases = np.zeros(in_per_group * channel_size + slack, x.dtype)
        sums = np.empty(positions, x.dtype)
        for task in range(chunk * per_chunk, min(tasks, (chunk + 1) * per_chunk)):
            n, g = task // groups, task % groups
            if stride[2] == 1:
                _gather_rows(x, n, g * in_per_group, in_per_group, sources, phases)
            else:
                _gather_elements(x, n, g * in_per_group, in_per_group, index, phases)
            for o in range(g * out_per_group, (g + 1) * out_per_group):
                for q in range(0, positions, block):
                    acc = splat_channels(zero_block(x, 1, 1, FLAT_VECTORS), bias, o, 0, 1, FLAT_VECTORS)
                    for i in range(in_per_group):
                        source = i * channel_size + q
                        w_at = (o * in_per_group + i) * ntaps
                        for t in range(ntaps):
                            acc = fma_block(acc, weight, w_at + weight_taps[t], 0, phases,
                                            source + offsets[t], 0, 1, FLAT_VECTORS)
                    store_block(acc, sums, q)
                _store_cropped(sums, extents, out_flat, (n * out_channels + o) * out_depth * out.shape[3],
                               out.shape[2:])


def workspace_bytes(plan):
    """Scratch bytes one worker thread holds: a group's phases and the flat sums of an output channel."""
    extents = phase_extents(plan.padded_size, plan.stride)
    channel = math.prod(plan.stride) * math.prod(extents)
    positions = plan.output_size[0] * extents[1] * extents[2]
    return (plan.in_per_group * channel + 3 * positions) * np.dtype(plan.dtype).itemsize


@register_jitable
def compute(x, weight, bias, has_bias, out, stride, dilation, pad_front, padded, mode, groups):
    """Fill the batched ``out`` from the batched ``x`` over flattened positions (real dtypes).

    The arguments are the plan's numbers, as :func:`numba_conv3d.cpu.direct.compute` takes them.
    """
    taps, full_bias = per_channel_operands(x, weight, bias, has_bias)
    _phase_flat_kernel(x, taps, full_bias, out, stride, dilation, pad_front, padded, mode,
                       weight.shape[2:], groups)
