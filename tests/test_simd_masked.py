"""Masked-vector copies (``cpu/simd_masked.copy_elements``), which the flat-phase kernel's gather and
stores use: every run length around whole vectors, both float dtypes, nothing outside the run read
into the target or written; and the in-register transpose of a square of vectors
(``transpose_square``)."""
import numpy as np
import pytest
from numba import njit

from numba_conv3d.cpu.simd import vector_lanes
from numba_conv3d.cpu.simd_masked import copy_elements, transpose_square


@njit
def _copy(target, t_start, source, s_start, count):
    copy_elements(target, t_start, source, s_start, count)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_copies_exactly_the_run(dtype):
    source = np.arange(1, 101, dtype=dtype)
    for count in range(0, 41):
        for t_start, s_start in ((0, 0), (3, 7), (5, 100 - count)):
            target = np.full(60, -1, dtype)
            _copy(target, t_start, source, s_start, count)
            expected = np.full(60, -1, dtype)
            expected[t_start:t_start + count] = source[s_start:s_start + count]
            np.testing.assert_array_equal(target, expected, err_msg=f"{count} {t_start} {s_start}")


@njit
def _transpose(target, t_start, t_step, source, s_start, s_step):
    transpose_square(target, t_start, t_step, source, s_start, s_step)


@njit
def _lanes(array):
    return vector_lanes(array)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_transposes_a_square_of_vectors(dtype):
    lanes = _lanes(np.empty(1, dtype))
    source = np.arange(1, 4 * lanes * lanes + 1, dtype=dtype)
    target = np.full(3 * lanes * lanes, -1, dtype)
    _transpose(target, 5, 2 * lanes, source, 3, lanes + 1)  # rows apart by more than a vector
    expected = np.full(3 * lanes * lanes, -1, dtype)
    for i in range(lanes):
        start = 5 + i * 2 * lanes
        expected[start:start + lanes] = source[3 + i:3 + i + lanes * (lanes + 1):lanes + 1]
    np.testing.assert_array_equal(target, expected)
