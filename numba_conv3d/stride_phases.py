"""Stride-phase decomposition of a strided input gradient (and so of a transposed convolution).

Padded input element ``p`` of a convolution received ``weight[k] * x[p]`` in output ``o`` when ``p = o *
stride + k * dilation``. Along one dimension, the elements ``p = start + r + q * stride`` of one phase
``r`` are reached by the same taps: those ``k`` with ``start + r - k * dilation`` a multiple of the
stride, equally spaced. Their gradient is a dense, unit-stride correlation of the output gradient with
those taps, flipped, at dilation ``dilation / gcd(stride, dilation)``: nothing is multiplied by the
zeros that spreading the output gradient ``stride`` apart would insert. The three dimensions' phases
combine into ``prod(stride)`` correlations, interleaved into the result (CUTLASS splits its strided
dgrad the same way).
"""
import functools
import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Phase:
    """One phase along one dimension: the positions ``start + offset + q * stride`` for ``q < size``.

    Attributes
    ----------
    offset : int
        The phase, ``0 <= offset < stride``.
    size : int
        How many positions of the wanted range fall in the phase.
    taps : tuple of int
        The kernel taps that reach them, ascending (empty: no output reads them, or none of the
        output gradient's elements those taps reach exists; their gradient is 0).
    dilation : int
        Spacing of those taps in the output gradient (1 for one tap).
    pads : tuple of 2 ints
        (front, back) pads of the output gradient for the correlation; negative: that many of its
        elements are cut off instead.
    """

    offset: int
    size: int
    taps: tuple
    dilation: int
    pads: tuple


def phases(start, length, kernel, stride, dilation, grad_extent):
    """The phases along one dimension of the padded positions ``[start, start + length)``.

    Parameters
    ----------
    start, length : int
        The wanted range of padded input positions.
    kernel, stride, dilation : int
        The convolution's, along this dimension.
    grad_extent : int
        The output gradient's extent along it.

    Returns
    -------
    list of Phase
        One per offset ``0 <= r < min(stride, length)``.
    """
    result = []
    for offset in range(min(stride, length)):
        size = (length - offset + stride - 1) // stride
        position = start + offset
        taps = tuple(k for k in range(kernel) if (position - k * dilation) % stride == 0)
        if not taps:
            result.append(Phase(offset, size, taps, 1, (0, 0)))
            continue
        spacing = (taps[1] - taps[0]) * dilation // stride if len(taps) > 1 else 1
        # the largest tap reads the output gradient's earliest element: the correlation's first tap
        first = (position - taps[-1] * dilation) // stride
        last = first + size - 1 + (len(taps) - 1) * spacing
        if last < 0 or first >= grad_extent:  # every element the taps reach lies outside the gradient
            result.append(Phase(offset, size, (), 1, (0, 0)))
            continue
        back = size + (len(taps) - 1) * spacing - grad_extent + first
        result.append(Phase(offset, size, taps, spacing, (-first, back)))
    return result


def one_tap_per_phase(kernel, stride, dilation):
    """Whether every stride phase is reached by at most one kernel tap along each dimension (taps ``k``
    and ``k + j`` share a phase where ``j * dilation`` is a multiple of the stride): the windows of the
    outputs never overlap, as those of a 2x2x2 kernel at stride 2 do not."""
    return all(k <= s // math.gcd(s, d) for k, s, d in zip(kernel, stride, dilation))


@dataclass(frozen=True)
class StackedPhases:
    """Along one dimension, the stride phases of a unit-dilation input gradient as one correlation: the
    phase ``r``'s element ``q`` (padded position ``start + r + q * stride``) is the sum over combined taps
    ``j < extent`` of ``weight[taps]`` times output gradient element ``q + j`` of the gradient padded by
    ``pads``, where ``(j, k)`` in ``taps[r]`` gives kernel tap ``k`` to combined tap ``j`` (the others
    hold zero weights).

    Attributes
    ----------
    taps : tuple of tuples
        Per phase, its (combined tap, kernel tap) pairs.
    extent : int
        Combined taps: the span of the gradient elements the phases' taps read for one ``q``.
    size : int
        Positions of the largest phase: the correlation's output extent.
    pads : tuple of 2 ints
        (front, back) pads of the output gradient; negative: that many of its elements are cut off.
    """

    taps: tuple
    extent: int
    size: int
    pads: tuple


@functools.lru_cache(maxsize=256)
def stacked(start, length, kernel, stride, grad_extent):
    """:func:`phases` at unit dilation stacked into one correlation (:class:`StackedPhases`), or None
    where no phase reads the gradient; kept per arguments (a call plans with it twice)."""
    found = phases(start, length, kernel, stride, 1, grad_extent)
    read = [phase for phase in found if phase.taps]
    if not read:
        return None
    # a phase's tap taps[t] reads gradient element first + q + (len(taps) - 1 - t), first = -pads[0]
    base = min(-phase.pads[0] for phase in read)
    extent = max(-phase.pads[0] + len(phase.taps) for phase in read) - base
    size = max(phase.size for phase in found)
    taps = tuple(tuple((-phase.pads[0] - base + len(phase.taps) - 1 - t, k) for t, k in enumerate(phase.taps))
                 for phase in found)
    return StackedPhases(taps, extent, size, (-base, base + size + extent - 1 - grad_extent))
