"""Stride-2 Winograd on the CPU ('winograd-strided': 3x3x3 kernels at stride 2, 1x3x3 at stride 2 along H
and W): its rounding bound, every padding mode, groups, odd and 1-wide extents, NaN and Inf as the
direct sums give them, determinism, and where the planner takes it."""
from functools import partial

import numpy as np
import pytest

from checks import (assert_bitwise_for_one_and_two_threads, assert_dynamic_range_within_bound,
                    assert_forced_algorithm_within, assert_matches_transform_bound,
                    assert_nonfinite_as_direct_sums, direct_fallback, mode_cases, random_operands)
from numba_conv3d import conv3d, plan_conv3d
from numba_conv3d.crossovers import (WINOGRAD_STRIDED_MAX_WEIGHT_BYTES, WINOGRAD_STRIDED_MIN_IN_CHANNELS,
                                     WINOGRAD_STRIDED_MIN_TILES)
from numba_conv3d.cpu import winograd_strided

ALGORITHM = "winograd-strided"

SHAPES = [
    ((2, 5, 9, 11, 13), (7, 5, 3, 3, 3), {"stride": 2, "padding": 1}),
    ((1, 4, 7, 8, 9), (6, 2, 3, 3, 3), {"stride": 2, "padding": (0, 1, 2), "groups": 2}),
    ((1, 3, 3, 3, 3), (4, 3, 3, 3, 3), {"stride": 2, "padding": 0}),
    ((1, 3, 4, 1, 6), (2, 3, 3, 3, 3), {"stride": 2, "padding": 1}),
    ((6, 10, 5, 12), (9, 6, 3, 3, 3), {"stride": 2, "padding": 2}),
    ((0, 4, 5, 5, 5), (4, 4, 3, 3, 3), {"stride": 2, "padding": 1}),
    ((2, 3, 5, 9, 10), (9, 3, 1, 3, 3), {"stride": (1, 2, 2), "padding": (0, 1, 1)}),
    ((1, 3, 6, 9, 10), (4, 3, 1, 3, 3), {"stride": (3, 2, 2), "padding": (1, 1, 0)}),
    ((1, 6, 2, 7, 5), (9, 2, 1, 3, 3), {"stride": (2, 2, 2), "padding": 1, "groups": 3}),
    ((2, 16, 3, 15, 21), (24, 16, 1, 3, 3), {"stride": (1, 2, 2), "padding": (0, 1, 1)}),
    ((1, 24, 4, 10, 7), (16, 24, 3, 3, 3), {"stride": 2, "padding": 1}),
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("x_shape, w_shape, kwargs, mode", mode_cases(SHAPES))
def test_matches_reference_within_its_bound(x_shape, w_shape, kwargs, mode, dtype):
    assert_forced_algorithm_within(ALGORITHM, partial(assert_matches_transform_bound, ALGORITHM), x_shape,
                                   w_shape, kwargs, mode, dtype)


def test_large_dynamic_range_within_its_bound():
    assert_dynamic_range_within_bound(ALGORITHM, (5, 6, 3, 3, 3), stride=2, padding=1)


@pytest.mark.parametrize("mode", ["zeros", "reflect", "replicate", "circular"])
@pytest.mark.parametrize("kernel, stride", [((3, 3, 3), 2), ((1, 3, 3), (1, 2, 2))])
def test_nan_and_inf_as_the_direct_sums_give_them(mode, kernel, stride):
    rng = np.random.default_rng(4)
    x, w, b = random_operands(rng, (2, 6, 7, 6, 9), (8, 6) + kernel, True, np.float32)
    x[0, 1, 2, 3, 4], x[1, 2, 6, 0, 0], x[1, 5, 3, 5, 8] = np.inf, -np.inf, np.nan
    w[3, 2, 0, 1, 1] = 0  # 0 * Inf is NaN in the direct sums too
    assert_nonfinite_as_direct_sums(ALGORITHM, x, w, b, stride=stride, padding=1, padding_mode=mode)


def test_overflow_in_the_transforms_falls_back_to_direct_sums():
    # +-3e38 two planes apart: the input transform's x0 - x2 overflows, the direct sums stay finite.
    x = np.zeros((1, 4, 7, 6, 6), np.float32)
    x[:, :, 0], x[:, :, 2] = 3e38, -3e38
    w = np.full((4, 4, 3, 3, 3), 1e-6, np.float32)
    out = conv3d(x, w, stride=2, algorithm=ALGORITHM)
    assert np.isfinite(out).all()
    np.testing.assert_array_equal(out, direct_fallback(x, w, stride=2))


@pytest.mark.parametrize("kernel, stride", [((3, 3, 3), 2), ((1, 3, 3), (1, 2, 2))])
def test_bitwise_for_one_and_two_threads(kernel, stride):
    x, w, b = random_operands(np.random.default_rng(5), (2, 8, 9, 7, 30), (12, 4) + kernel, True,
                              np.float32)
    kwargs = {"stride": stride, "padding": 1, "groups": 2, "padding_mode": "replicate"}
    assert_bitwise_for_one_and_two_threads(lambda: conv3d(x, w, b, algorithm=ALGORITHM, **kwargs))


@pytest.mark.parametrize("kernel, stride, dilation, dtype, served", [
    ((3, 3, 3), 2, 1, np.float32, True),
    ((1, 3, 3), (1, 2, 2), 1, np.float64, True),
    ((1, 3, 3), (4, 2, 2), 1, np.float32, True),
    ((3, 3, 3), (1, 2, 2), 1, np.float32, False),
    ((3, 3, 3), (2, 2, 1), 1, np.float32, False),
    ((3, 3, 3), 1, 1, np.float32, False),
    ((3, 3, 3), 2, 2, np.float32, False),
    ((5, 5, 5), 2, 1, np.float32, False),
    ((3, 3, 3), 2, 1, np.complex64, False),
])
def test_serves_3x3_kernels_at_stride_2_of_real_dtypes(kernel, stride, dilation, dtype, served):
    plan = plan_conv3d((1, 4, 12, 12, 12), (4, 4) + kernel, stride=stride, dilation=dilation, dtype=dtype)
    assert winograd_strided.serves(plan) == served


@pytest.mark.parametrize("x_shape, w_shape, kwargs, expected", [
    ((1, 64, 16, 56, 56), (128, 64, 1, 3, 3), {"stride": (1, 2, 2), "padding": (0, 1, 1)}, True),
    ((1, 64, 16, 56, 56), (128, 64, 3, 3, 3), {"stride": 2, "padding": 1}, True),
    ((1, 128, 16, 28, 28), (256, 128, 1, 3, 3), {"stride": (1, 2, 2), "padding": (0, 1, 1)}, True),
    ((1, 128, 8, 28, 28), (256, 128, 3, 3, 3), {"stride": 2, "padding": 1}, False),
    ((1, 256, 16, 14, 14), (512, 256, 1, 3, 3), {"stride": (1, 2, 2), "padding": (0, 1, 1)}, False),
    ((1, 32, 16, 56, 56), (64, 32, 3, 3, 3), {"stride": 2, "padding": 1}, False),
    ((2, 256, 16, 14, 14), (512, 256, 1, 3, 3), {"stride": (1, 2, 2), "padding": (0, 1, 1)}, False),
])
def test_planner_takes_it_past_the_measured_crossovers(x_shape, w_shape, kwargs, expected):
    """Enough tiles (MC3's layer2.0.conv1, layer3.0.conv1), not too few (R3D's layer3.0.conv1, MC3's
    layer4.0.conv1), enough input channels, weight points within the limit (MC3's layer4.0.conv1 at
    batch 2: 512 tiles, 13 MB)."""
    plan = plan_conv3d(x_shape, w_shape, **kwargs)
    crossed = (winograd_strided.call_tiles(plan) >= WINOGRAD_STRIDED_MIN_TILES
               and w_shape[1] >= WINOGRAD_STRIDED_MIN_IN_CHANNELS
               and winograd_strided.call_bytes(plan) <= WINOGRAD_STRIDED_MAX_WEIGHT_BYTES)
    assert crossed == expected
    assert (plan.algorithm == ALGORITHM) == expected


def test_call_bytes_count_the_weight_points():
    plan = plan_conv3d((1, 64, 16, 56, 56), (128, 64, 3, 3, 3), stride=2, padding=1)
    assert plan.call_bytes == 4 * 125 * 128 * 64
    plan = plan_conv3d((2, 64, 16, 56, 56), (128, 64, 1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1))
    assert plan.call_bytes == 4 * 25 * 128 * 64
    assert winograd_strided.call_tiles(plan) == 2 * 16 * 14 * 14  # tiles of 1x2x2 outputs of 16x28x28
