"""The input gradient of a strided convolution whose kernel taps never share a stride phase (a 2x2x2
kernel at stride 2, ``stride_phases.one_tap_per_phase``), and so the transposed convolutions of U-Nets
and V-Nets: each input position is read by at most one tap of at most one output position, so its
gradient is a single dot product over the output channels.

One pointwise (1x1x1) convolution of the output gradient computes all of them at once, with one output
channel per (input channel, tap): its weight is the convolution's weight transposed to (C_in * taps,
C_out / groups), and a transposed convolution's bias is added per tap, so that every sum is finished
(for bfloat16, rounded once) before it is placed. The forward planner picks the pointwise kernel (the
route is taken where that is the bfloat16 dot products, ``input_grad_routes``). A scatter then
moves each sum to the input position its tap reads; positions no tap reads get the bias (zero without
one). Against the matrix product and col2im, which adds the columns into a zeroed padded gradient, crops
it and adds the bias, this writes the result once.
"""
import functools
import math
from typing import NamedTuple

import numpy as np
from numba import njit, prange

from ..stride_phases import phases
from . import packed_weights


def pointwise_weight(weight, groups):
    """The pointwise weight (C_in * taps, C_out / groups, 1, 1, 1) of ``weight`` (C_out, C_in / groups,
    KD, KH, KW): output channel ``(c, tap)`` of group g holds ``weight[g * C_out / g + o, c, tap]`` for
    input channel o of the output gradient. Kept between calls while the weight's bytes stay the same
    (``packed_weights``): one array per weight, whose own packing the dot products keep in turn."""
    return packed_weights.packed(np.ascontiguousarray(weight), (groups,), _transposed)[0]


def _transposed(weight, groups):
    """(:func:`pointwise_weight` of ``weight``,)."""
    out_channels, in_per_group = weight.shape[:2]
    taps = math.prod(weight.shape[2:])
    result = np.empty((groups * in_per_group * taps, out_channels // groups, 1, 1, 1), weight.dtype)
    _transpose_groups(_as_read(weight).reshape(out_channels, in_per_group * taps), groups,
                      _as_read(result).reshape(result.shape[:2]))
    return (result,)


# Columns of the weight matrix a step of ``_transpose_groups`` moves: each row's run of them is a cache
# line of float32 (two of bfloat16), and the rows they land in stay in L1 as the step walks down.
_TRANSPOSE_COLUMNS = 16


@njit(parallel=True, cache=True)
def _transpose_groups(matrix, groups, out):
    """``out[g * R + r, o] = matrix[g * O + o, r]`` for each group g of O rows of ``matrix`` (R
    columns): each group's block transposed, ``_TRANSPOSE_COLUMNS`` columns a step."""
    columns, out_per_group = matrix.shape[1], out.shape[1]
    steps = (columns + _TRANSPOSE_COLUMNS - 1) // _TRANSPOSE_COLUMNS
    for unit in prange(groups * steps):
        g, first = unit // steps, unit % steps * _TRANSPOSE_COLUMNS
        stop = min(columns, first + _TRANSPOSE_COLUMNS)
        for o in range(out_per_group):
            source = matrix[g * out_per_group + o]
            for r in range(first, stop):
                out[g * columns + r, o] = source[r]


def _one_tap_phases(start, length, kernel, stride, dilation, grad_extent):
    """Along one dimension, each stride phase's tap and the output positions that reach it
    (``stride_phases.phases``, at most one tap each): (tap, first position of the phase, first output
    position, how many) per phase some output reads."""
    found = []
    for phase in phases(start, length, kernel, stride, dilation, grad_extent):
        if phase.taps:
            first = -phase.pads[0]  # the output position the phase's first element reads from
            skipped = max(0, -first)
            count = min(phase.size, grad_extent - first) - skipped
            if count > 0:
                found.append((phase.taps[0], phase.offset + skipped * stride, first + skipped, count))
    return found


@functools.lru_cache(maxsize=256)
def _sources(start, length, kernel, stride, dilation, grad_extent):
    """Along D or H, for each of the input positions ``[start, start + length)`` of the padded input:
    the tap that reads it and the output position whose window holds it, as two int64 arrays (-1 and -1
    where none does)."""
    taps = np.full(length, -1, np.int64)
    sources = np.full(length, -1, np.int64)
    for tap, position, source, count in _one_tap_phases(start, length, kernel, stride, dilation, grad_extent):
        taps[position:position + count * stride:stride] = tap
        sources[position:position + count * stride:stride] = np.arange(source, source + count)
    return taps, sources


@functools.lru_cache(maxsize=256)
def _runs(start, length, kernel, stride, dilation, grad_extent):
    """Along W, per tap k: the output positions ``[first, stop)`` whose windows read the input
    positions ``q * stride + offset`` inside ``[0, length)`` (an int64 array of (first, stop, offset)
    rows; empty for a tap that reads none), and whether some input position is read by none."""
    runs = np.zeros((kernel, 3), np.int64)
    read = 0
    for tap, position, source, count in _one_tap_phases(start, length, kernel, stride, dilation, grad_extent):
        runs[tap] = source, source + count, position - source * stride
        read += count
    return runs, read < length


@njit(parallel=True, cache=True)
def _scatter(columns, kernel, stride, tap_d, source_d, tap_h, source_h, runs_w, gaps_w, fill, out, words):
    """``out[n, c, d, h, w]`` = ``columns[n, (c, taps of (d, h, w)), sources of (d, h, w)]``, or
    ``fill[c]`` where no tap reads the position; one (sample, channel, plane) per step. Where ``words``
    is ``out`` as 32-bit words (2-byte elements, taps 0 and 1 of a 2-wide kernel at stride 2 filling
    each row), a row is written as words of the two taps' elements side by side (little-endian), which
    LLVM vectorizes where the interleaving stores do not; else ``words`` is empty. Elements are
    indexed in the whole arrays: a view per row cost 2-5x the time on rows of 16-64 elements."""
    batch, channels, depth, height, width = out.shape
    paired = words.size > 0
    for unit in prange(batch * channels * depth):
        n, c, d = unit // (channels * depth), unit // depth % channels, unit % depth
        for h in range(height):
            reads = source_d[d] >= 0 and source_h[h] >= 0
            if not reads or gaps_w:
                for w in range(width):
                    out[n, c, d, h, w] = fill[c]
            if not reads:
                continue
            first_tap = ((c * kernel[0] + tap_d[d]) * kernel[1] + tap_h[h]) * kernel[2]
            sd, sh = source_d[d], source_h[h]
            if paired:
                for q in range(words.shape[4]):
                    words[n, c, d, h, q] = (np.uint32(columns[n, first_tap, sd, sh, q])
                                            | (np.uint32(columns[n, first_tap + 1, sd, sh, q]) << 16))
                continue
            for k in range(kernel[2]):
                first, stop, offset = runs_w[k, 0], runs_w[k, 1], runs_w[k, 2]
                for q in range(first, stop):
                    out[n, c, d, h, q * stride + offset] = columns[n, first_tap + k, sd, sh, q]


class Placement(NamedTuple):
    """What :func:`scatter` reads of a plan: a convolution of ``input_size`` padded by ``pad_front`` in
    front, its ``kernel_size``, ``stride``, ``dilation`` and ``in_channels`` (``phase_stack.py`` places
    stride phases as the taps of a kernel of one tap per phase)."""

    pad_front: tuple
    input_size: tuple
    kernel_size: tuple
    stride: tuple
    dilation: tuple
    in_channels: int


def scatter(plan, columns, fill):
    """The input gradient of ``plan`` (a ``ConvPlan`` or :class:`Placement`; zero pads, taps never
    sharing a phase) from ``columns``, the pointwise convolution of the output gradient by
    :func:`pointwise_weight` (bias included): each position set from the column of the tap that reads
    it, else to ``fill`` (C_in,) of ``columns``' dtype (a bfloat16 result as its bits)."""
    numbers = [(front, n, k, s, d, extent) for front, n, k, s, d, extent in
               zip(plan.pad_front, plan.input_size, plan.kernel_size, plan.stride, plan.dilation,
                   columns.shape[2:])]
    out = np.empty((columns.shape[0], plan.in_channels) + plan.input_size, columns.dtype)
    runs_w, gaps_w = _runs(*numbers[2])
    width = plan.input_size[2]
    paired = (columns.dtype.itemsize == 2 and plan.stride[2] == 2 and plan.kernel_size[2] == 2
              and runs_w.tolist() == [[0, width // 2, 0], [0, width // 2, 1]] and width % 2 == 0)
    words = _as_read(out).view(np.uint32) if paired else np.empty((0,) * 5, np.uint32)
    _scatter(_as_read(columns), np.array(plan.kernel_size, np.int64), plan.stride[2], *_sources(*numbers[0]),
             *_sources(*numbers[1]), runs_w, gaps_w, _as_read(fill), _as_read(out), words)
    return out


def _as_read(array):
    """``array`` as the kernel reads it: a float16 or bfloat16 one as its bits."""
    return array.view(np.uint16) if array.dtype.itemsize == 2 else array
