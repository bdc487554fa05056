"""Masked-vector copies (``cpu/simd_masked.copy_elements``), which the flat-phase kernel's gather and
stores use: every run length around whole vectors, both float dtypes, nothing outside the run read
into the target or written."""
import numpy as np
import pytest
from numba import njit

from numba_conv3d.cpu.simd_masked import copy_elements


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
