"""The per-plane products of KDx1x1 kernels (``cpu/plane_gemm.py``) against the float64 reference over
padding modes along D, depth strides and dilations, groups, batches and odd extents; NaN and Inf where
the definition puts them (an Inf weight times zero padding included); bitwise the same for 1 and 2
threads; where the planner takes them and which arguments they do not serve."""
import numpy as np
import pytest

from checks import (MODES, assert_bitwise_for_one_and_two_threads, assert_forced_algorithm_within,
                    assert_matches_reference, mode_cases, random_operands)
from numba_conv3d import conv3d, conv3d_input, plan_conv3d
from numba_conv3d.cpu import plane_gemm
from reference import conv3d_reference

CASES = [
    ((2, 8, 6, 5, 7), (6, 8, 3, 1, 1), {"padding": (1, 0, 0)}),
    ((1, 12, 7, 3, 4), (9, 4, 3, 1, 1), {"padding": (2, 0, 0), "groups": 3, "dilation": (2, 1, 1)}),
    ((1, 6, 9, 4, 5), (4, 6, 3, 1, 1), {"padding": (1, 0, 0), "stride": (2, 1, 1)}),
    ((3, 5, 4, 1, 9), (7, 5, 5, 1, 1), {"padding": (2, 0, 0)}),
    ((1, 4, 5, 6, 6), (4, 4, 2, 1, 1), {}),
    ((5, 8, 3, 3), (3, 5, 3, 1, 1), {"padding": (1, 0, 0)}),
    ((0, 4, 5, 5, 5), (4, 4, 3, 1, 1), {"padding": (1, 0, 0)}),
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("x_shape, w_shape, kwargs, mode", mode_cases(CASES))
def test_matches_reference(x_shape, w_shape, kwargs, mode, dtype):
    assert_forced_algorithm_within("plane-gemm", assert_matches_reference, x_shape, w_shape, kwargs, mode,
                                   dtype)


def test_nan_and_inf_reach_the_outputs_whose_taps_read_them():
    rng = np.random.default_rng(6)
    x, w, b = random_operands(rng, (1, 4, 5, 3, 4), (3, 4, 3, 1, 1), True, np.float64)
    x[0, 1, 2, 1, 3] = np.inf
    x[0, 2, 0, 2, 0] = np.nan
    out = conv3d(x, w, b, padding=(1, 0, 0), algorithm="plane-gemm")
    expected = conv3d_reference(x, w, b, padding=(1, 0, 0))
    np.testing.assert_array_equal(np.isnan(out), np.isnan(expected))
    np.testing.assert_array_equal(np.isinf(out), np.isinf(expected))


def test_an_inf_weight_times_zero_padding_is_nan_as_in_torch():
    rng = np.random.default_rng(8)
    x, w, b = random_operands(rng, (1, 4, 5, 3, 4), (3, 4, 3, 1, 1), True, np.float64)
    w[1, 2, 0, 0, 0] = np.inf
    out = conv3d(x, w, b, padding=(1, 0, 0), algorithm="plane-gemm")
    expected = conv3d_reference(x, w, b, padding=(1, 0, 0))
    assert np.isnan(expected[0, 1, 0]).all()
    np.testing.assert_array_equal(np.isnan(out), np.isnan(expected))
    np.testing.assert_array_equal(np.isinf(out), np.isinf(expected))


def test_bitwise_the_same_for_one_and_two_threads():
    rng = np.random.default_rng(7)
    x, w, b = random_operands(rng, (2, 32, 6, 9, 11), (48, 32, 3, 1, 1), True, np.float32)
    assert_bitwise_for_one_and_two_threads(lambda: conv3d(x, w, b, padding=(1, 0, 0), algorithm="plane-gemm"))


@pytest.mark.parametrize("mode", MODES)
def test_the_input_gradient_takes_it_where_the_correlation_would(mode):
    rng = np.random.default_rng(4)
    x, w, _ = random_operands(rng, (1, 128, 8, 2, 16), (128, 128, 3, 1, 1), False, np.float32)
    g = rng.standard_normal((1, 128, 8, 2, 16)).astype(np.float32)
    assert plan_conv3d(g.shape, w.shape, padding=(1, 0, 0)).algorithm == "plane-gemm"
    result = conv3d_input(x.shape, w, g, padding=(1, 0, 0), padding_mode=mode)
    expected = conv3d_input(x.shape, w.astype(np.float64), g.astype(np.float64), padding=(1, 0, 0),
                            padding_mode=mode)
    magnitudes = conv3d_input(x.shape, np.abs(w).astype(np.float64), np.abs(g).astype(np.float64),
                              padding=(1, 0, 0), padding_mode=mode)
    assert np.all(np.abs(result - expected) <= (2 * 128 * 3 + 2) * np.finfo(np.float32).eps * magnitudes)


@pytest.mark.parametrize("input_shape, weight_shape, kwargs, expected", [
    ((1, 288, 8, 28, 28), (128, 288, 3, 1, 1), {"padding": (1, 0, 0)}, False),  # F(2, 3) along D's
    ((1, 576, 4, 14, 14), (256, 576, 3, 1, 1), {"padding": (1, 0, 0)}, False),  # F(2, 3) along D's
    ((1, 288, 8, 28, 28), (128, 288, 5, 1, 1), {"padding": (2, 0, 0)}, True),
    ((1, 128, 8, 2, 16), (128, 128, 3, 1, 1), {"padding": (1, 0, 0)}, True),  # planes of 32 positions
    ((1, 460, 8, 14, 14), (256, 460, 3, 1, 1), {"padding": (1, 0, 0), "stride": (2, 1, 1)}, True),
    ((1, 144, 16, 56, 56), (64, 144, 3, 1, 1), {"padding": (1, 0, 0)}, False),  # 64 output channels
    ((1, 1152, 2, 7, 7), (512, 1152, 3, 1, 1), {"padding": (1, 0, 0)}, False),  # 98 positions
    ((1, 256, 8, 14, 14), (256, 256, 1, 1, 1), {}, False),  # one tap: GEMM's
])
def test_where_the_planner_takes_it(input_shape, weight_shape, kwargs, expected):
    assert (plan_conv3d(input_shape, weight_shape, **kwargs).algorithm == "plane-gemm") == expected


@pytest.mark.parametrize("kwargs", [
    {"padding": (1, 1, 0)}, {"stride": (1, 2, 1)}, {"padding": (1, 0, 0), "dtype": "complex64"}])
def test_what_it_does_not_serve(kwargs):
    plan = plan_conv3d((1, 4, 5, 6, 7), (4, 4, 3, 1, 1), **kwargs)
    assert not plane_gemm.serves(plan)
    assert not plane_gemm.serves(plan_conv3d((1, 4, 5, 6, 7), (4, 4, 3, 3, 1)))
