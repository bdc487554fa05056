"""Masked-vector copies (``cpu/simd_masked.copy_elements``), which the flat-phase kernel's gather and
stores use: every run length around whole vectors, both float dtypes, nothing outside the run read
into the target or written; and the in-register transpose of a square of vectors
(``transpose_square``), shifted, and rounded to bfloat16 bits."""
import ml_dtypes
import numpy as np
import pytest
from numba import njit

from numba_conv3d.cpu.simd import vector_lanes
from numba_conv3d.cpu.simd_masked import copy_elements, scatter_transposed, transpose_square


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
def _transpose(target, t_start, t_step, source, s_start, s_step, shift, shift_start):
    transpose_square(target, t_start, t_step, source, s_start, s_step, shift, shift_start)


@njit
def _lanes(array):
    return vector_lanes(array)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_transposes_a_shifted_square_of_vectors(dtype):
    lanes = _lanes(np.empty(1, dtype))
    source = np.arange(1, 4 * lanes * lanes + 1, dtype=dtype)
    shift = np.arange(3 * lanes, dtype=dtype) * 1000
    target = np.full(3 * lanes * lanes, -1, dtype)
    _transpose(target, 5, 2 * lanes, source, 3, lanes + 1, shift, 7)  # rows apart by more than a vector
    expected = np.full(3 * lanes * lanes, -1, dtype)
    for i in range(lanes):
        start = 5 + i * 2 * lanes
        expected[start:start + lanes] = source[3 + i:3 + i + lanes * (lanes + 1):lanes + 1] + shift[7 + i]
    np.testing.assert_array_equal(target, expected)


def test_transposed_float32_sums_round_to_bfloat16():
    lanes = _lanes(np.empty(1, np.float32))
    rng = np.random.default_rng(3)
    source = rng.standard_normal(lanes * lanes).astype(np.float32)
    source[[1, 2, 3]] = np.nan, np.inf, -np.inf
    shift = rng.standard_normal(lanes).astype(np.float32)
    target = np.zeros(lanes * lanes, np.uint16)
    _transpose(target, 0, lanes, source, 0, lanes, shift, 0)
    expected = (source.reshape(lanes, lanes) + shift).T.astype(ml_dtypes.bfloat16).view(np.uint16)
    np.testing.assert_array_equal(target, expected.reshape(-1))


@njit
def _scatter(target, rows, first, base, step, stored_lanes, source, s_start, s_step):
    scatter_transposed(target, rows, first, base, step, stored_lanes, source, s_start, s_step)


@pytest.mark.parametrize("dtype", [np.uint32, np.float64])
def test_scatters_the_columns_of_a_square_to_their_rows(dtype):
    lanes = _lanes(np.empty(1, dtype))
    source = np.arange(1, 3 * lanes * lanes + 1).astype(dtype)
    rows = np.full(lanes + 3, -1, np.int64)
    rows[3:] = np.arange(lanes)[::-1] * 2
    rows[3 + 1] = -1  # column 1 is stored nowhere
    for stored_lanes in (1, lanes // 2, lanes):
        target = np.zeros(2 * lanes * 8 + 40, dtype)
        _scatter(target, rows, 3, 5, 8, stored_lanes, source, 2, lanes + 3)
        expected = np.zeros_like(target)
        for i in range(lanes):
            if rows[3 + i] >= 0:
                start = (5 + rows[3 + i]) * 8
                expected[start:start + stored_lanes] = source[2 + i::lanes + 3][:stored_lanes]
        np.testing.assert_array_equal(target, expected, err_msg=str(stored_lanes))
