"""The input gradient of a strided convolution whose stride phases meet several kernel taps (a 3x3x3
kernel at stride 2, and so the k3 s2 up-convolutions of U-Nets), in bfloat16, as one unit-stride
correlation of the output gradient (``stride_phases.stacked``) with one output channel per (input
channel, phase): its weight holds each phase's taps at the combined taps they read, zeros elsewhere,
so that the forward planner's bfloat16 dot products compute every phase at once, each sum (bias
included) rounded once; ``tap_scatter.scatter`` then interleaves the phases.

A zero weight meets every gradient element its combined tap reads: an Inf or NaN there would give NaN
where the convolution has no such product, and so would a non-finite weight meet the zeros padded
around the gradient. The route is taken only where both operands are finite (:func:`finite_bits`,
each call).
"""
import itertools
import math

import numpy as np
from numba import njit, prange

from . import packed_weights
from .bfloat16_dot import EXPONENTS

_CHUNK = 1 << 14


@njit(parallel=True, cache=True)
def _nonfinite_chunks(bits):
    """Per chunk of ``_CHUNK`` elements of the flat uint16 ``bits``: whether one is a bfloat16 Inf or
    NaN."""
    chunks = (bits.size + _CHUNK - 1) // _CHUNK
    found = np.zeros(chunks, np.bool_)
    for chunk in prange(chunks):
        # a slice indexed from 0, as ``packed_weights._same_words`` reads its chunks: a loop LLVM
        # vectorizes
        chunk_bits = bits[chunk * _CHUNK:(chunk + 1) * _CHUNK]
        hit = np.uint16(0)
        for i in range(chunk_bits.size):
            hit |= np.uint16((chunk_bits[i] & EXPONENTS) == EXPONENTS)
        found[chunk] = hit != 0
    return found


def finite_bits(array):
    """Whether every element of the bfloat16 ``array`` is finite."""
    bits = np.ascontiguousarray(array).reshape(-1).view(np.uint16)
    return not _nonfinite_chunks(bits).any()


def stacked_weight(weight, groups, taps):
    """The correlation's weight (C_in * phases, C_out / groups, extents...) for ``weight`` (C_out, C_in /
    groups, KD, KH, KW) and the per-dimension ``taps`` of ``stride_phases.stacked``: output channel
    ``(c, phase)`` of group g (phases in C order over the dimensions) holds, at combined taps ``(jd, jh,
    jw)``, ``weight[g * (C_out / groups) + o, c, kd, kh, kw]`` for input channel o of the group's output
    gradient where each dimension's phase gives kernel tap k to combined tap j, else zero. Kept between
    calls while the weight's bytes stay the same (``packed_weights``)."""
    return packed_weights.packed(np.ascontiguousarray(weight), (groups, taps), _stacked)[0]


def _stacked(weight, groups, taps):
    """(:func:`stacked_weight`'s array,)."""
    out_channels, in_per_group = weight.shape[:2]
    out_per_group = out_channels // groups
    extents = [1 + max((j for phase in dim for j, _ in phase), default=0) for dim in taps]
    phase_count = math.prod(len(dim) for dim in taps)
    bits = weight.view(np.uint16)
    # (groups, C_in / groups, phases, C_out / groups, extents...), then flattened to the weight's layout
    stacked = np.zeros((groups, in_per_group, phase_count, out_per_group, *extents), np.uint16)
    by_group = bits.reshape(groups, out_per_group, in_per_group, *weight.shape[2:])
    for index, phase in enumerate(itertools.product(*taps)):
        for (jd, kd), (jh, kh), (jw, kw) in itertools.product(*phase):
            stacked[:, :, index, :, jd, jh, jw] = by_group[:, :, :, kd, kh, kw].transpose(0, 2, 1)
    shape = (groups * in_per_group * phase_count, out_per_group, *extents)
    return (stacked.reshape(shape).view(weight.dtype),)
