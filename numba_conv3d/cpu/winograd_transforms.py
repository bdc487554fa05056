"""The one-dimensional Winograd transforms F(2, 3) and F(2, 5), element by element along rows.

A tile takes ``TILE`` = 2 outputs along a dimension from a patch of ``taps + 1`` inputs (its points):
4 for a 3-tap kernel, 6 for a 5-tap one. With ``d`` a patch, ``g`` the kernel taps and ``m`` the
products of the points, a tile's outputs are ``A^T [(G g) * (B^T d)]``:

- F(2, 3), points 0, 1, -1, infinity (Lavin and Gray 2016): ``B^T`` and ``A^T`` take additions only.
- F(2, 5), points 0, 1, -1, 2, -1/2, infinity: ``B^T`` has integer entries up to 5 (its multiplies by
  3 and 5 round too) and ``A^T`` powers of two (the output transform rounds only in its sums). Of the
  point sets with small entries, this one measured the smallest error (float32 tiles in 3-D, 8-64
  input channels: 1.8-3.5e-6 of the largest output, against 0.6-1.5e-5 with points 0, +-1, +-2 or 0,
  +-1, +-1/2).
- F(4, 3), the same points (so the same ``B^T``): ``A^T`` has 4 rows of powers of two; 1x3x3 and
  3x3x3 kernels take it along H and W where ``winograd_tiles.plane_tile`` or ``points_tile`` says
  (3x3x3 kernels keep F(2, 3) along D).

The weight transform ``G`` runs in float64 (the caller rounds its points once); ``B^T`` and ``A^T`` run
in the operands' dtype, in a fixed order, so that every result is bitwise the same on any thread.
Indices are unsigned so that LLVM vectorizes the loops along rows (no wraparound checks).
"""
import numpy as np
from numba import njit
from numba.extending import register_jitable

# Outputs of a tile along a transformed dimension, and along H and W of F(4x4, 3x3).
TILE = 2
WIDE_TILE = 4
# Points of a 3-tap kernel at stride 2 (``winograd_strided.py``): ``(w0, w0 + w2, w2, w1, w1)``.
STRIDED_PATCH = 5
_UNSIGNED = np.uint64
# The fractions of F(2, 5)'s ``G``, multiplied rather than divided by (the float64 points round once
# to the operands' dtype either way).
_SIXTH, _FIFTEENTH, _THIRTIETH = 1 / 6, 1 / 15, 1 / 30


@register_jitable
def patch_of(taps):
    """Points of a tile along a dimension of ``taps`` (3 or 5) kernel taps."""
    return taps + TILE - 1


@njit(cache=True, inline='always')
def row_span(array, start, step, rows, count):
    """The part of ``array`` that ``rows`` rows of ``count`` elements from ``start``, ``step`` apart,
    span: a slice, so that LLVM knows what a loop over them reads and writes, and vectorizes it (over
    whole arrays, the 10-11 rows of a 5-tap transform exceed its limit on run-time alias checks)."""
    return array[start:start + (rows - 1) * step + count]


@njit(cache=True, inline='always')
def _kernel_column3(source, s, step, target, o, target_step):
    g0, g1, g2 = source[_UNSIGNED(s)], source[_UNSIGNED(s + step)], source[_UNSIGNED(s + 2 * step)]
    target[_UNSIGNED(o)] = g0
    target[_UNSIGNED(o + target_step)] = (g0 + g1 + g2) * 0.5
    target[_UNSIGNED(o + 2 * target_step)] = (g0 - g1 + g2) * 0.5
    target[_UNSIGNED(o + 3 * target_step)] = g2


@njit(cache=True, inline='always')
def _kernel_column5(source, s, step, target, o, target_step):
    g0, g1, g2 = source[_UNSIGNED(s)], source[_UNSIGNED(s + step)], source[_UNSIGNED(s + 2 * step)]
    g3, g4 = source[_UNSIGNED(s + 3 * step)], source[_UNSIGNED(s + 4 * step)]
    target[_UNSIGNED(o)] = g0 * 0.5
    target[_UNSIGNED(o + target_step)] = (g0 + g1 + g2 + g3 + g4) * _SIXTH
    target[_UNSIGNED(o + 2 * target_step)] = (g0 - g1 + g2 - g3 + g4) * _SIXTH
    target[_UNSIGNED(o + 3 * target_step)] = (g0 + 2 * g1 + 4 * g2 + 8 * g3 + 16 * g4) * _THIRTIETH
    target[_UNSIGNED(o + 4 * target_step)] = (16 * g0 - 8 * g1 + 4 * g2 - 2 * g3 + g4) * _FIFTEENTH
    target[_UNSIGNED(o + 5 * target_step)] = g4 * 0.5


@njit(cache=True, inline='always')
def _kernel_column3x5(source, s, step, target, o, target_step):
    g0, g1, g2 = source[_UNSIGNED(s)], source[_UNSIGNED(s + step)], source[_UNSIGNED(s + 2 * step)]
    target[_UNSIGNED(o)] = g0
    target[_UNSIGNED(o + target_step)] = g0 + g2
    target[_UNSIGNED(o + 2 * target_step)] = g2
    target[_UNSIGNED(o + 3 * target_step)] = g1
    target[_UNSIGNED(o + 4 * target_step)] = g1


@njit(cache=True, inline='always')
def _kernel_column3x6(source, s, step, target, o, target_step):
    g0, g1, g2 = source[_UNSIGNED(s)], source[_UNSIGNED(s + step)], source[_UNSIGNED(s + 2 * step)]
    target[_UNSIGNED(o)] = g0 * 0.5
    target[_UNSIGNED(o + target_step)] = (g0 + g1 + g2) * _SIXTH
    target[_UNSIGNED(o + 2 * target_step)] = (g0 - g1 + g2) * _SIXTH
    target[_UNSIGNED(o + 3 * target_step)] = (g0 + 2 * g1 + 4 * g2) * _THIRTIETH
    target[_UNSIGNED(o + 4 * target_step)] = (4 * g0 - 2 * g1 + g2) * (4 * _FIFTEENTH)
    target[_UNSIGNED(o + 5 * target_step)] = g2 * 0.5


@njit(cache=True, inline='always')
def kernel_points(source, first, step, source_row, target, at, target_step, target_row, count, taps, patch):
    """Rows ``at + i * target_step`` (i < ``patch``, ``target_row`` elements apart) of ``target`` = ``G``
    of F(``patch`` + 1 - ``taps``, ``taps``) times rows ``first + j * step`` (j < ``taps``,
    ``source_row`` apart) of ``source``, over their first ``count`` elements; for 3 taps and
    ``STRIDED_PATCH`` points, the stride-2 ``G`` of ``winograd_strided.py``."""
    rows = row_span(source, first * source_row, step * source_row, taps, count)
    points = row_span(target, at * target_row, target_step * target_row, patch, count)
    if patch == 4:
        for t in range(count):
            _kernel_column3(rows, t, step * source_row, points, t, target_step * target_row)
    elif patch == STRIDED_PATCH:
        for t in range(count):
            _kernel_column3x5(rows, t, step * source_row, points, t, target_step * target_row)
    elif taps == 3:
        for t in range(count):
            _kernel_column3x6(rows, t, step * source_row, points, t, target_step * target_row)
    else:
        for t in range(count):
            _kernel_column5(rows, t, step * source_row, points, t, target_step * target_row)


@njit(cache=True, inline='always')
def _input_column4(source, s, step, target, o, target_step):
    d0, d1 = source[_UNSIGNED(s)], source[_UNSIGNED(s + step)]
    d2, d3 = source[_UNSIGNED(s + 2 * step)], source[_UNSIGNED(s + 3 * step)]
    target[_UNSIGNED(o)] = d0 - d2
    target[_UNSIGNED(o + target_step)] = d1 + d2
    target[_UNSIGNED(o + 2 * target_step)] = d2 - d1
    target[_UNSIGNED(o + 3 * target_step)] = d1 - d3


@njit(cache=True, inline='always')
def _input_column6(source, s, step, target, o, target_step):
    d0, d1 = source[_UNSIGNED(s)], source[_UNSIGNED(s + step)]
    d2, d3 = source[_UNSIGNED(s + 2 * step)], source[_UNSIGNED(s + 3 * step)]
    d4, d5 = source[_UNSIGNED(s + 4 * step)], source[_UNSIGNED(s + 5 * step)]
    two, three = source.dtype.type(2), source.dtype.type(3)
    four, five = source.dtype.type(4), source.dtype.type(5)
    target[_UNSIGNED(o)] = two * d0 + three * d1 - four * d2 - three * d3 + two * d4
    target[_UNSIGNED(o + target_step)] = two * d1 + five * d2 + d3 - two * d4
    target[_UNSIGNED(o + 2 * target_step)] = two * d1 + d2 - five * d3 + two * d4
    target[_UNSIGNED(o + 3 * target_step)] = two * d4 + d3 - two * d2 - d1
    target[_UNSIGNED(o + 4 * target_step)] = two * d3 + d2 - two * d1 - d4
    target[_UNSIGNED(o + 5 * target_step)] = two * d1 + three * d2 - four * d3 - three * d4 + two * d5


@njit(cache=True, inline='always')
def input_points(source, start, step, stride, target, at, target_step, count, patch):
    """Rows ``at + i * target_step`` (i < ``patch``) of ``target`` = ``B^T`` times the elements
    ``start + j * step + t * stride`` (j < ``patch``) of ``source``, for t < ``count``."""
    patch_rows = row_span(source, start, step, patch, (count - 1) * stride + 1)
    points = row_span(target, at, target_step, patch, count)
    if patch == 4:
        for t in range(count):
            _input_column4(patch_rows, t * stride, step, points, t, target_step)
    else:
        for t in range(count):
            _input_column6(patch_rows, t * stride, step, points, t, target_step)


@njit(cache=True, inline='always')
def output_pair(source, s, step, patch):
    """``A^T`` times the elements ``s + j * step`` (j < ``patch``) of ``source``: a tile's two outputs."""
    m0, m1 = source[_UNSIGNED(s)], source[_UNSIGNED(s + step)]
    m2, m3 = source[_UNSIGNED(s + 2 * step)], source[_UNSIGNED(s + 3 * step)]
    if patch == 4:
        return m0 + m1 + m2, m1 - m2 - m3
    m4, m5 = source[_UNSIGNED(s + 4 * step)], source[_UNSIGNED(s + 5 * step)]
    two, half = source.dtype.type(2), source.dtype.type(0.5)
    return m0 + m1 + m2 + m3 + m4, m1 - m2 + two * m3 - half * m4 + m5


@njit(cache=True, inline='always')
def _output_column6x4(source, s, step, target, o, target_step):
    m0, m1 = source[_UNSIGNED(s)], source[_UNSIGNED(s + step)]
    m2, m3 = source[_UNSIGNED(s + 2 * step)], source[_UNSIGNED(s + 3 * step)]
    m4, m5 = source[_UNSIGNED(s + 4 * step)], source[_UNSIGNED(s + 5 * step)]
    two, four, eight = source.dtype.type(2), source.dtype.type(4), source.dtype.type(8)
    half, quarter, eighth = source.dtype.type(0.5), source.dtype.type(0.25), source.dtype.type(0.125)
    target[_UNSIGNED(o)] = m0 + m1 + m2 + m3 + m4
    target[_UNSIGNED(o + target_step)] = m1 - m2 + two * m3 - half * m4
    target[_UNSIGNED(o + 2 * target_step)] = m1 + m2 + four * m3 + quarter * m4
    target[_UNSIGNED(o + 3 * target_step)] = m1 - m2 + eight * m3 - eighth * m4 + m5


@njit(cache=True, inline='always')
def output_points(source, start, step, target, at, target_step, count, patch, tile):
    """Rows ``at + i * target_step`` (i < ``tile``) of ``target`` = ``A^T`` of F(``tile``, ``patch`` + 1
    - ``tile``) times rows ``start + j * step`` (j < ``patch``) of ``source``, element by element over
    ``count``."""
    products = row_span(source, start, step, patch, count)
    outputs = row_span(target, at, target_step, tile, count)
    if tile == WIDE_TILE:
        for t in range(count):
            _output_column6x4(products, t, step, outputs, t, target_step)
    elif patch == 4:
        for t in range(count):
            outputs[_UNSIGNED(t)], outputs[_UNSIGNED(target_step + t)] = output_pair(products, t, step, 4)
    else:
        for t in range(count):
            outputs[_UNSIGNED(t)], outputs[_UNSIGNED(target_step + t)] = output_pair(products, t, step, 6)
