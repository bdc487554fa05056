"""The spans of a channel-vectorized tile (``cpu/tile_spans.py``): each tap multiplies every position
of its tile that exists and reads the input, and leaves out only positions that read zero padding or
lie past the output's end; exactly the former where the padding is 1 wide."""
import itertools

import numpy as np
import pytest

from numba_conv3d.cpu.tile_spans import (SPAN_NONE, part_range, reading_positions, span_codes, span_part,
                                         span_positions, task_spans)


def _index_map(size, front, back):
    """Padded coordinate -> input index, -1 in the zero padding (as ``slab.index_maps`` maps zeros)."""
    return np.array([-1] * front + list(range(size)) + [-1] * back, np.int64)


def _covered(first, stop, extent):
    part = span_part(first, stop, extent)
    if part < 0:
        return set()
    low, high = part_range(part, extent)
    return set(range(low, high))


@pytest.mark.parametrize("size,pads,kernel,stride,dilation,extent",
                         [(7, (1, 1), 3, 1, 1, 7), (7, (1, 1), 3, 1, 1, 2), (4, (1, 1), 3, 1, 1, 4),
                          (14, (1, 1), 3, 2, 1, 7), (12, (2, 2), 5, 1, 1, 7), (9, (2, 2), 3, 1, 2, 4),
                          (3, (0, 0), 3, 1, 1, 2), (1, (1, 1), 3, 1, 1, 7), (5, (3, 3), 3, 1, 1, 1),
                          (8, (0, 1), 2, 1, 1, 4), (8, (1, 2), 4, 1, 1, 4), (9, (1, 0), 3, 2, 1, 6),
                          (7, (1, 1), 3, 1, 1, 3), (7, (1, 1), 3, 1, 1, 6)])
@pytest.mark.parametrize("skip_padding", [True, False])
def test_a_span_covers_what_reads_the_input_and_leaves_out_only_padding(size, pads, kernel, stride,
                                                                        dilation, extent, skip_padding):
    index_map = _index_map(size, *pads)
    pad = max(pads)
    out_extent = (size + sum(pads) - dilation * (kernel - 1) - 1) // stride + 1
    for base, k in itertools.product(range(0, out_extent, extent), range(kernel)):
        exists = {j for j in range(extent) if base + j < out_extent}
        reads = {j for j in exists if index_map[(base + j) * stride + k * dilation] >= 0}
        first, stop = reading_positions(index_map, base, extent, out_extent, stride, k * dilation,
                                        skip_padding)
        covered = _covered(first, stop, extent)
        assert (reads if skip_padding else exists) <= covered
        assert covered <= set(range(extent))
        if pad <= 1 and skip_padding:
            assert covered - reads <= (set(range(extent)) - exists)


def test_codes_decode_to_contiguous_ranges():
    assert len(span_codes(2, 7)) == 12 and len(span_codes(2, 4)) == 12 and len(span_codes(1, 6)) == 4
    assert span_positions(0, 2, 7) == list(range(14))
    assert span_positions(SPAN_NONE, 2, 7) == []
    assert span_positions(4 * span_part(1, 2, 2) + span_part(0, 6, 7), 2, 7) == list(range(7, 13))
    assert span_part(0, 1, 1) == 0 and span_part(2, 2, 7) == -1
    assert span_part(2, 5, 7) == 3 and part_range(3, 7) == (1, 6)


def test_task_spans_of_a_padded_7x7_plane():
    maps = tuple(_index_map(n, 1, 1) for n in (2, 7, 7))
    spans = task_spans((3, 3, 3), (1, 1, 1), (1, 1, 1), maps, 0, 7, 7, 7, 2, 7, True)
    assert spans.shape == (4, 1, 27)
    first_strip, last_strip = spans[0, 0, :9].reshape(3, 3), spans[3, 0, :9].reshape(3, 3)
    # kh = 0: the first strip's second row only; kw = 0 leaves out column 0, kw = 2 column 6
    assert span_positions(first_strip[0, 0], 2, 7) == list(range(8, 14))
    assert span_positions(first_strip[1, 1], 2, 7) == list(range(14))
    assert span_positions(first_strip[1, 2], 2, 7) == [0, 1, 2, 3, 4, 5, 7, 8, 9, 10, 11, 12]
    # the last strip holds row 6 only, which reads padding at kh = 2
    assert span_positions(last_strip[1, 1], 2, 7) == list(range(7))
    assert last_strip[2, 1] == SPAN_NONE
    np.testing.assert_array_equal(spans[:, :, 9:18], spans[:, :, :9])
