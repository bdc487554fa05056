"""Which output positions of a channel-vectorized tile each tap multiplies (``simd.fma_tile``).

A tile of rows x columns output positions reads, at a tap, some positions' inputs in zero padding (the
first column at kw = 0 of a layer padded by 1, the last at kw = 2; the first row at kh = 0) or
positions past the output's end (the last strip of a 7-row plane has one row). Those products add
nothing to an output (a zero, or a position never stored), and on the small planes of deep layers
they are many: a 2 x 7 tile over a 7x7 plane padded by 1 multiplies 1.28x the products that reach an
output, a 2 x 4 tile over a 4x4 plane 1.44x. So each tap carries a span: the range of the tile's rows
and the range of its columns that it multiplies, each the whole extent, or one position shorter at
the start, at the end or at both (exact for padding by 1 and a last row or column past the output's
end; wider padding multiplies the zeros of its other positions). A span code is ``4 * row_part +
column_part``, a part ``2 * (starts at 1) + (stops 1 short)``: ``SPAN_ALL`` multiplies every position,
``SPAN_NONE`` none.

Only products with zero padding and with positions never stored are left out, so each stored sum is
the same sum in the same order, as the channel-blocked kernel adds it (up to the sign of a zero).
"""
import numpy as np
from numba.extending import register_jitable

SPAN_ALL = 0
SPAN_NONE = 16


@register_jitable
def span_part(first, stop, extent):
    """The part of a span code that covers positions ``[first, stop)`` of ``extent`` (-1 if empty): at
    most one position shorter at each end, and none shorter for an extent of 1."""
    if first >= stop:
        return -1
    if extent < 2:
        return 0
    return 2 * (first >= 1) + (stop <= extent - 1)


def part_range(part, extent):
    """Positions ``(first, stop)`` of ``extent`` that a span's ``part`` covers (jit-time decoding); an
    extent of 1 has only part 0."""
    if extent < 2:
        return 0, extent if part == 0 else 0
    return part // 2, extent - part % 2


def span_positions(code, rows, columns):
    """The positions ``r * columns + c`` of a ``rows x columns`` tile that span ``code`` covers, in
    order (jit-time decoding)."""
    if code == SPAN_NONE:
        return []
    row_first, row_stop = part_range(code // 4, rows)
    column_first, column_stop = part_range(code % 4, columns)
    return [r * columns + c for r in range(row_first, row_stop) for c in range(column_first, column_stop)]


def span_codes(rows, columns):
    """Every code a tile of ``rows x columns`` may carry that covers some position."""
    return [code for code in range(SPAN_NONE) if span_positions(code, rows, columns)]


@register_jitable
def reading_positions(index_map, base, extent, out_extent, stride, offset, skip_padding):
    """``(first, stop)``: the positions ``j`` of ``extent`` outputs from output ``base`` along one axis
    whose output exists (``base + j < out_extent``) and that read the input at kernel ``offset`` (a
    dilated tap offset) through ``index_map`` rather than a zero of the padding (any, without
    ``skip_padding``); zero padding lies only at the ends, so they are consecutive."""
    first, stop = extent, 0
    for j in range(min(extent, out_extent - base)):
        at = (base + j) * stride + offset
        if not skip_padding or (at < index_map.shape[0] and index_map[at] >= 0):
            first, stop = min(first, j), j + 1
    return first, stop


@register_jitable
def axis_parts(parts, index_map, base, extent, out_extent, stride, kernel, dilation, skip_padding):
    """Fill ``parts[k]`` with the span part of each of the ``kernel`` taps along one axis, for
    ``extent`` positions from output ``base`` (:func:`reading_positions`)."""
    for k in range(kernel):
        first, stop = reading_positions(index_map, base, extent, out_extent, stride, k * dilation,
                                        skip_padding)
        parts[k] = span_part(first, stop, extent)


@register_jitable
def fill_spans(spans, row_parts, column_parts, kernel):
    """``spans[t]`` = the span code of tap t = (kd, kh, kw) from the parts of its kh (``row_parts``)
    and its kw (``column_parts``)."""
    t = 0
    for _ in range(kernel[0]):
        for kh in range(kernel[1]):
            for kw in range(kernel[2]):
                rows, columns = row_parts[kh], column_parts[kw]
                spans[t] = SPAN_NONE if rows < 0 or columns < 0 else 4 * rows + columns
                t += 1


@register_jitable
def task_spans(kernel, stride, dilation, maps, oh0, rows, out_height, out_width, tile_rows, tile_columns,
               skip_padding):
    """The span code of every tap of every tile of a task's ``rows`` output rows from ``oh0``, in
    strips of ``tile_rows`` rows and tiles of ``tile_columns`` columns: (strips, tiles, taps) uint8.
    A position exists up to the output's last row and column, as the tiles store them."""
    strips, tiles = -(-rows // tile_rows), -(-out_width // tile_columns)
    spans = np.empty((strips, tiles, kernel[0] * kernel[1] * kernel[2]), np.uint8)
    row_parts = np.empty(kernel[1], np.int64)
    column_parts = np.empty(kernel[2], np.int64)
    for strip in range(strips):
        axis_parts(row_parts, maps[1], oh0 + strip * tile_rows, tile_rows, out_height,
                   stride[1], kernel[1], dilation[1], skip_padding)
        for k in range(tiles):
            axis_parts(column_parts, maps[2], k * tile_columns, tile_columns, out_width, stride[2],
                       kernel[2], dilation[2], skip_padding)
            fill_spans(spans[strip, k], row_parts, column_parts, kernel)
    return spans
