"""The channels-last depthwise kernel (``cpu/depthwise.py``) against the float64 reference and torch over
padding modes, strides, dilations, kernel shapes, channel counts that end inside a vector, batches (0
included), unbatched input and odd or 1-wide extents; NaN and Inf where the definition puts them;
bitwise the row-blocked kernel's results (jitted ``conv3d`` runs that one) and the same for 1 and 2
threads; bfloat16 read as stored, bitwise the float32 result rounded once; where the planner takes
it and what it does not serve."""
import numpy as np
import pytest

from checks import (BFLOAT16, assert_bfloat16_within_bound, assert_bitwise_for_one_and_two_threads,
                    assert_forced_algorithm_within, assert_matches_reference, bfloat16_operands, conv3d_with,
                    mode_cases, random_operands)
from numba_conv3d import conv3d, plan_conv3d
from reference import conv3d_reference

CASES = [
    ((1, 20, 5, 7, 9), (20, 1, 3, 3, 3), {"padding": 1, "groups": 20}),
    ((2, 17, 6, 5, 6), (17, 1, 3, 3, 3), {"padding": (1, 2, 0), "groups": 17, "stride": (1, 2, 2)}),
    ((1, 33, 9, 6, 7), (33, 1, 3, 2, 3), {"padding": 2, "groups": 33, "dilation": (2, 1, 2)}),
    ((1, 8, 7, 9, 1), (8, 1, 5, 3, 1), {"padding": (2, 1, 0), "groups": 8, "stride": (2, 1, 1)}),
    ((16, 4, 6, 5), (16, 1, 3, 1, 1), {"padding": "same", "groups": 16}),
    ((1, 40, 3, 4, 5), (40, 1, 1, 1, 1), {"groups": 40}),
    ((0, 24, 4, 4, 4), (24, 1, 3, 3, 3), {"padding": 1, "groups": 24}),
    ((1, 9, 6, 12, 12), (9, 1, 3, 3, 3), {"padding": 1, "groups": 9, "stride": (2, 3, 3)}),
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("x_shape, w_shape, kwargs, mode", mode_cases(CASES))
def test_matches_reference(x_shape, w_shape, kwargs, mode, dtype):
    assert_forced_algorithm_within("depthwise", assert_matches_reference, x_shape, w_shape, kwargs, mode,
                                   dtype)


@pytest.mark.parametrize("x_shape, w_shape, kwargs, mode", mode_cases(CASES[:4]))
def test_matches_torch_and_the_row_blocked_kernels_bits(x_shape, w_shape, kwargs, mode):
    from torch_oracle import assert_matches_torch  # skips without torch

    x, w, b = random_operands(np.random.default_rng(3), x_shape, w_shape, True, np.float32)
    kwargs = dict(kwargs, padding_mode=mode)
    out = conv3d_with("depthwise", x, w, b, **kwargs)
    assert_matches_torch(out, x, w, b, **kwargs)
    np.testing.assert_array_equal(out, conv3d_with("row-blocked", x, w, b, **kwargs))


@pytest.mark.parametrize("x_shape, w_shape, kwargs, mode", mode_cases(CASES))
def test_bfloat16_read_as_stored_is_the_float32_result_rounded_once(x_shape, w_shape, kwargs, mode):
    """bfloat16 operands: the input's bits widened as they are gathered, each sum rounded as it is
    stored; bitwise the float32 kernel on the widened operands rounded once (NaN and Inf included),
    and within the bound of the float64 reference."""
    x, w, b = bfloat16_operands(x_shape, w_shape, True)
    x.reshape(-1)[::37] = np.inf
    x.reshape(-1)[5::41] = np.nan
    kwargs = dict(kwargs, padding_mode=mode)
    out = conv3d_with("depthwise", x, w, b, **kwargs)
    widened = conv3d_with("depthwise", *(a.astype(np.float32) for a in (x, w, b)), **kwargs)
    np.testing.assert_array_equal(out.view(np.uint16), widened.astype(BFLOAT16).view(np.uint16))
    finite = bfloat16_operands(x_shape, w_shape, True, seed=1)
    assert_bfloat16_within_bound(conv3d_with("depthwise", *finite, **kwargs), *finite, **kwargs)


def test_nan_and_inf_reach_the_outputs_whose_taps_read_them():
    rng = np.random.default_rng(6)
    x, w, b = random_operands(rng, (1, 20, 4, 5, 6), (20, 1, 3, 3, 3), True, np.float64)
    x[0, 3, 2, 1, 3] = np.inf
    x[0, 18, 0, 4, 0] = np.nan
    out = conv3d(x, w, b, padding=1, groups=20, algorithm="depthwise")
    expected = conv3d_reference(x, w, b, padding=1, groups=20)
    np.testing.assert_array_equal(np.isnan(out), np.isnan(expected))
    np.testing.assert_array_equal(np.isinf(out), np.isinf(expected))
    assert np.isfinite(out[0, :3]).all() and np.isfinite(out[0, 4:18]).all()


def test_an_inf_weight_times_zero_padding_is_nan_as_in_torch():
    rng = np.random.default_rng(8)
    x, w, b = random_operands(rng, (1, 20, 4, 5, 6), (20, 1, 3, 3, 3), True, np.float64)
    w[5, 0, 0, 1, 1] = np.inf
    out = conv3d(x, w, b, padding=1, groups=20, algorithm="depthwise")
    expected = conv3d_reference(x, w, b, padding=1, groups=20)
    assert np.isnan(expected[0, 5, 0]).all()
    np.testing.assert_array_equal(np.isnan(out), np.isnan(expected))
    np.testing.assert_array_equal(np.isinf(out), np.isinf(expected))


def test_bitwise_the_same_for_one_and_two_threads():
    x, w, b = random_operands(np.random.default_rng(7), (2, 72, 9, 10, 10), (72, 1, 3, 3, 3), True,
                              np.float32)
    assert_bitwise_for_one_and_two_threads(
        lambda: conv3d(x, w, b, padding=1, groups=72, stride=(1, 2, 1), algorithm="depthwise"))


@pytest.mark.parametrize("input_shape, weight_shape, kwargs, expected", [
    ((1, 216, 13, 10, 10), (216, 1, 3, 3, 3), {"padding": 1, "groups": 216}, "depthwise"),
    ((1, 24, 8, 28, 28), (24, 1, 3, 3, 3), {"padding": 1, "groups": 24}, "depthwise"),
    ((1, 16, 8, 10, 10), (16, 1, 3, 3, 3), {"padding": 1, "groups": 16}, "phase-flat"),  # few channels
    ((1, 64, 8, 40, 40), (64, 1, 3, 3, 3), {"padding": 1, "groups": 64}, "row-blocked"),  # wide rows
])
def test_where_the_planner_takes_it(input_shape, weight_shape, kwargs, expected):
    assert plan_conv3d(input_shape, weight_shape, **kwargs).algorithm == expected


@pytest.mark.parametrize("in_channels, weight_shape, groups, dtype", [
    (40, (20, 2, 3, 3, 3), 20, "float32"),  # two input channels per group
    (20, (40, 1, 3, 3, 3), 20, "float32"),  # a channel multiplier of 2
    (40, (40, 1, 3, 3, 3), 40, "complex64"),
])
def test_what_it_does_not_serve(in_channels, weight_shape, groups, dtype):
    with pytest.raises(ValueError, match="does not serve"):
        plan_conv3d((1, in_channels, 4, 4, 4), weight_shape, groups=groups, dtype=dtype,
                    algorithm="depthwise")
