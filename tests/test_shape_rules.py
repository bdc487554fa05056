"""Table tests of the integer rules shared by the planner and the kernels."""
import numpy as np
import pytest

from numba_conv3d.shape_rules import (PAD_CIRCULAR, PAD_REFLECT, PAD_REPLICATE, PAD_ZEROS,
                                      conv_output_size, output_reading, padded_source_index,
                                      row_merge, same_pads)
from reference import NUMPY_PAD_MODES


@pytest.mark.parametrize("kernel, dilation, expected", [
    (1, 1, (0, 0)), (2, 1, (0, 1)), (3, 1, (1, 1)), (4, 1, (1, 2)), (5, 1, (2, 2)),
    (2, 2, (1, 1)), (2, 3, (1, 2)), (4, 3, (4, 5)), (3, 2, (2, 2)),
])
def test_same_pads_put_the_odd_element_at_the_back(kernel, dilation, expected):
    assert same_pads(kernel, dilation) == expected


@pytest.mark.parametrize("size, front, back, kernel, stride, dilation, expected", [
    (10, 0, 0, 3, 1, 1, 8), (10, 1, 1, 3, 1, 1, 10), (10, 0, 0, 3, 2, 1, 4), (100, 0, 0, 3, 2, 1, 49),
    (10, 4, 4, 3, 2, 1, 8), (5, 0, 0, 3, 1, 2, 1), (5, 0, 0, 3, 1, 3, 0), (4, 0, 0, 4, 2, 1, 1),
    (7, 2, 1, 4, 3, 1, 3), (2 ** 33, 0, 0, 1, 1, 1, 2 ** 33),
])
def test_conv_output_size(size, front, back, kernel, stride, dilation, expected):
    assert conv_output_size(size, front, back, kernel, stride, dilation) == expected


@pytest.mark.parametrize("mode, code", [("reflect", PAD_REFLECT), ("replicate", PAD_REPLICATE),
                                        ("circular", PAD_CIRCULAR), ("zeros", PAD_ZEROS)])
@pytest.mark.parametrize("size", [1, 2, 3, 7])
def test_padded_source_index_agrees_with_numpy_pad(mode, code, size):
    limit = size - 1 if mode == "reflect" else size
    for front in range(limit + 1):
        back = limit - front
        fill = {"constant_values": -1} if mode == "zeros" else {}
        index = np.pad(np.arange(size), (front, back), mode=NUMPY_PAD_MODES[mode], **fill)
        got = [padded_source_index(p, front, size, code) for p in range(size + front + back)]
        assert got == list(index)


@pytest.mark.parametrize("height, width, least, expected", [
    (32, 32, 1024, 32), (32, 32, 256, 8), (12, 10, 25, 3), (7, 10, 25, 7), (6, 2000, 1024, 1),
    (1, 5, 1024, 1), (0, 5, 1024, 1),
])
def test_row_merge_takes_the_smallest_divisor_reaching_the_columns(height, width, least, expected):
    assert row_merge(height, width, least) == expected


@pytest.mark.parametrize("stride, dilation, tap, out_extent", [(1, 1, 0, 5), (2, 1, 1, 4), (3, 2, 2, 3),
                                                               (2, 3, 1, 6), (1, 4, 2, 2)])
def test_output_reading_inverts_the_forward_index(stride, dilation, tap, out_extent):
    read_by = {o * stride + tap * dilation: o for o in range(out_extent)}
    for position in range(-2, out_extent * stride + tap * dilation + 3):
        assert output_reading(position, tap, stride, dilation, out_extent) == read_by.get(position, -1)
