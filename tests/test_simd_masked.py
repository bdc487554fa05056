"""Masked-vector copies (``cpu/simd_masked.copy_elements``), which the flat-phase kernel's gather and
stores use: every run length around whole vectors, both float dtypes, nothing outside the run read
into the target or written; and the in-register transposes of the AMX kernel: stacked squares shifted,
rounded to bfloat16 bits and stored along runs (``store_transposed_runs``), a square scattered a
column at a time (``scatter_transposed``)."""
import ml_dtypes
import numpy as np
import pytest
from numba import njit

from numba_conv3d.cpu.simd import vector_lanes
from numba_conv3d.cpu.simd_masked import copy_elements, scatter_transposed, store_transposed_runs


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


def _runs_store(squares):
    """A jitted call of ``store_transposed_runs`` with ``squares`` (a compile-time int) stacked."""
    @njit
    def store(target, t_start, t_step, columns, source, s_start, s_step, shift, shift_start, runs, count):
        store_transposed_runs(target, t_start, t_step, columns, source, s_start, s_step, squares, shift,
                              shift_start, runs, count)

    return store


_store_runs = {squares: _runs_store(squares) for squares in (1, 2, 3)}


def _expected_runs(target, t_start, t_step, columns, rows, runs):
    """``target`` with the columns of ``rows`` (stacked squares, shifted) stored along ``runs``."""
    expected = target.copy()
    for i in range(columns):
        for first, count, offset in runs:
            at = t_start + i * t_step + offset
            expected[at:at + count] = rows[first:first + count, i]
    return expected


@njit
def _lanes(array):
    return vector_lanes(array)


@pytest.mark.parametrize("squares", [1, 2, 3])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_stores_a_shifted_transposed_stack_of_squares_along_runs(dtype, squares):
    lanes = _lanes(np.empty(1, dtype))
    stacked = squares * lanes
    source = np.arange(1, (stacked + 3) * (lanes + 2) + 1, dtype=dtype)
    shift = np.arange(3 * lanes, dtype=dtype) * 1000
    s_start, s_step, shift_start = 3, lanes + 2, 7  # rows apart by more than a vector
    rows = np.stack([source[s_start + j * s_step:s_start + j * s_step + lanes] for j in range(stacked)])
    rows = rows + shift[shift_start:shift_start + lanes]
    # runs inside one square, across squares, of one row, and the last row alone
    runs = np.array([[0, 3, 1], [2, stacked - 3, 9], [stacked - 2, 1, 30 + stacked],
                     [stacked - 1, 1, 40 + stacked]], np.int64)
    step = 50 + 2 * stacked
    for columns in (lanes, lanes - 3, 1):
        for count in (0, 1, len(runs)):
            target = np.full(lanes * step, -1, dtype)
            _store_runs[squares](target, 4, step, columns, source, s_start, s_step, shift, shift_start, runs,
                                 count)
            expected = _expected_runs(np.full(lanes * step, -1, dtype), 4, step, columns, rows, runs[:count])
            np.testing.assert_array_equal(target, expected, err_msg=f"{columns} {count}")


def test_stored_float32_sums_round_to_bfloat16():
    lanes = _lanes(np.empty(1, np.float32))
    rng = np.random.default_rng(3)
    source = rng.standard_normal(2 * lanes * lanes).astype(np.float32)
    source[[1, 2, 3]] = np.nan, np.inf, -np.inf
    shift = rng.standard_normal(lanes).astype(np.float32)
    runs = np.array([[0, 2 * lanes, 0]], np.int64)
    target = np.zeros(lanes * 2 * lanes, np.uint16)
    _store_runs[2](target, 0, 2 * lanes, lanes, source, 0, lanes, shift, 0, runs, 1)
    expected = (source.reshape(2 * lanes, lanes) + shift).T.astype(ml_dtypes.bfloat16).view(np.uint16)
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
