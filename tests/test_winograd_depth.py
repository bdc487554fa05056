"""F(2, 3) along D for 3x1x1 kernels on the CPU ('winograd-depth'): its rounding bound, every padding
mode, groups, odd and 1-deep extents, NaN and Inf as the direct sums give them, determinism, and where the
planner takes it."""
from functools import partial

import ml_dtypes
import numpy as np
import pytest

from checks import (BFLOAT16, assert_bitwise_for_one_and_two_threads, assert_close,
                    assert_dynamic_range_within_bound, assert_forced_algorithm_within,
                    assert_matches_transform_bound, assert_nonfinite_as_direct_sums, direct_fallback,
                    mode_cases, random_operands, reference_input_gradient, winograd_depth_rounding_bound)
from numba_conv3d import conv3d, conv3d_input, plan_conv3d
from numba_conv3d.crossovers import (BFLOAT16_WIDENED_DEPTH_MAX_PLANE, WINOGRAD_DEPTH_MIN_COLUMNS,
                                     WINOGRAD_DEPTH_MIN_TASKS)
from numba_conv3d.cpu import bfloat16_dot, winograd_depth
from reference import conv3d_reference

ALGORITHM = "winograd-depth"
KERNEL = (3, 1, 1)

SHAPES = [
    ((2, 5, 9, 11, 13), (7, 5) + KERNEL, {"padding": (1, 0, 0)}),
    ((1, 4, 8, 3, 5), (6, 2) + KERNEL, {"padding": (2, 0, 0), "groups": 2}),
    ((1, 3, 3, 4, 4), (4, 3) + KERNEL, {"padding": 0}),
    ((1, 3, 1, 6, 2), (2, 3) + KERNEL, {"padding": (1, 0, 0)}),
    ((6, 10, 5, 12), (9, 6) + KERNEL, {"padding": (1, 0, 0)}),
    ((0, 4, 5, 5, 5), (4, 4) + KERNEL, {"padding": (1, 0, 0)}),
    ((2, 6, 6, 40, 41), (9, 2) + KERNEL, {"padding": (1, 0, 0), "groups": 3}),
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("x_shape, w_shape, kwargs, mode", mode_cases(SHAPES))
def test_matches_reference_within_its_bound(x_shape, w_shape, kwargs, mode, dtype):
    assert_forced_algorithm_within(ALGORITHM, partial(assert_matches_transform_bound, ALGORITHM), x_shape,
                                   w_shape, kwargs, mode, dtype)


def test_large_dynamic_range_within_its_bound():
    assert_dynamic_range_within_bound(ALGORITHM, (5, 6) + KERNEL, padding=(1, 0, 0))


@pytest.mark.parametrize("mode", ["zeros", "reflect", "replicate", "circular"])
def test_nan_and_inf_as_the_direct_sums_give_them(mode):
    rng = np.random.default_rng(4)
    x, w, b = random_operands(rng, (2, 6, 7, 6, 9), (8, 6) + KERNEL, True, np.float32)
    x[0, 1, 2, 3, 4], x[1, 2, 6, 0, 0], x[1, 5, 3, 5, 8] = np.inf, -np.inf, np.nan
    w[3, 2, 0] = 0  # 0 * Inf is NaN in the direct sums too
    assert_nonfinite_as_direct_sums(ALGORITHM, x, w, b, padding=(1, 0, 0), padding_mode=mode)


def test_inf_weight_times_zero_padding_is_nan_as_in_the_direct_sums():
    x, w, b = random_operands(np.random.default_rng(6), (1, 3, 5, 4, 4), (2, 3) + KERNEL, True, np.float32)
    w[1, 0, 0] = np.inf
    assert_nonfinite_as_direct_sums(ALGORITHM, x, w, b, padding=(1, 0, 0))


def test_overflow_in_the_transforms_falls_back_to_direct_sums():
    # +-3e38 two planes apart: the input points' d0 - d2 overflow, the direct sums stay finite.
    x = np.zeros((1, 4, 6, 3, 3), np.float32)
    x[:, :, 0], x[:, :, 2] = 3e38, -3e38
    w = np.full((4, 4) + KERNEL, 1e-6, np.float32)
    out = conv3d(x, w, algorithm=ALGORITHM)
    assert np.isfinite(out).all()
    np.testing.assert_array_equal(out, direct_fallback(x, w))


def test_bitwise_for_one_and_two_threads():
    x, w, b = random_operands(np.random.default_rng(5), (2, 8, 9, 30, 40), (12, 4) + KERNEL, True,
                              np.float32)
    kwargs = {"padding": (1, 0, 0), "groups": 2, "padding_mode": "replicate"}
    assert_bitwise_for_one_and_two_threads(lambda: conv3d(x, w, b, algorithm=ALGORITHM, **kwargs))


def test_input_gradient_at_unit_stride_takes_it():
    """The input gradient of a stride-1 3x1x1 convolution is a correlation with the flipped weight,
    planned as a forward one."""
    rng = np.random.default_rng(7)
    x_shape, w = (1, 3, 4, 8, 8), rng.standard_normal((5, 3) + KERNEL)
    g = rng.standard_normal((1, 5, 4, 8, 8))
    assert plan_conv3d(g.shape, (3, 5) + KERNEL, padding=(1, 0, 0)).algorithm == ALGORITHM
    np.testing.assert_allclose(conv3d_input(x_shape, w, g, padding=(1, 0, 0)),
                               reference_input_gradient(x_shape, w, g, padding=(1, 0, 0)), rtol=1e-12,
                               atol=1e-12)


@pytest.mark.parametrize("kernel, stride, dilation, padding, dtype, served", [
    (KERNEL, 1, 1, (1, 0, 0), np.float32, True),
    (KERNEL, 1, 1, (2, 0, 0), np.float64, True),
    (KERNEL, (2, 1, 1), 1, (1, 0, 0), np.float32, False),
    (KERNEL, 1, (2, 1, 1), (1, 0, 0), np.float32, False),
    (KERNEL, 1, 1, (1, 1, 0), np.float32, False),
    ((5, 1, 1), 1, 1, (2, 0, 0), np.float32, False),
    ((3, 3, 3), 1, 1, 1, np.float32, False),
    (KERNEL, 1, 1, (1, 0, 0), np.complex64, False),
])
def test_serves_3x1x1_kernels_at_unit_stride_of_real_dtypes(kernel, stride, dilation, padding, dtype, served):
    plan = plan_conv3d((1, 4, 12, 12, 12), (4, 4) + kernel, stride=stride, dilation=dilation, padding=padding,
                       dtype=dtype)
    assert winograd_depth.serves(plan) == served


@pytest.mark.parametrize("x_shape, w_shape, expected", [
    ((1, 144, 16, 56, 56), (64, 144) + KERNEL, True),
    ((1, 288, 8, 28, 28), (128, 288) + KERNEL, True),
    ((1, 576, 4, 14, 14), (256, 576) + KERNEL, True),
    ((1, 16, 16, 56, 56), (16, 16) + KERNEL, True),
    ((1, 921, 4, 7, 7), (512, 921) + KERNEL, False),
    ((2, 1152, 2, 7, 7), (512, 1152) + KERNEL, False),
    ((1, 64, 2, 16, 16), (64, 64) + KERNEL, False),
])
def test_planner_takes_it_past_the_measured_crossovers(x_shape, w_shape, expected):
    """From two tasks on planes of 64 positions (R(2+1)D's temporal layers at 16x56x56 to 4x14x14), not
    on 7x7 planes (R(2+1)D's layer4: products of 49 columns) nor with one task."""
    plan = plan_conv3d(x_shape, w_shape, padding=(1, 0, 0))
    crossed = (winograd_depth.tasks(plan) >= WINOGRAD_DEPTH_MIN_TASKS
               and x_shape[3] * x_shape[4] >= WINOGRAD_DEPTH_MIN_COLUMNS)
    assert crossed == expected
    assert (plan.algorithm == ALGORITHM) == expected


def test_bfloat16_operands_take_the_float32_result_rounded_once():
    """Widened, summed by F(2, 3) along D in float32, rounded once: within that bound plus half an ulp
    of bfloat16."""
    rng = np.random.default_rng(11)
    shapes = ((2, 6, 5, 9, 11), (8, 6) + KERNEL, (8,))
    x, w, b = (rng.standard_normal(shape).astype(BFLOAT16) for shape in shapes)
    kwargs = {"padding": (1, 0, 0)}
    out = conv3d(x, w, b, algorithm=ALGORITHM, **kwargs)
    assert out.dtype == BFLOAT16
    widened = (a.astype(np.float32) for a in (x, w, b))
    rounded = conv3d(*widened, algorithm=ALGORITHM, **kwargs).astype(BFLOAT16)
    np.testing.assert_array_equal(out.view(np.uint16), rounded.view(np.uint16))
    wide = [a.astype(np.float64) for a in (x, w, b)]
    expected = conv3d_reference(*wide, **kwargs)
    summed = winograd_depth_rounding_bound(np.float32, *wide, **kwargs)
    assert_close(out.astype(np.float64), expected,
                 summed + float(ml_dtypes.finfo(BFLOAT16).eps) / 2 * (np.abs(expected) + summed))


@pytest.mark.parametrize("x_shape, w_shape, expected", [
    ((1, 288, 8, 28, 28), (128, 288) + KERNEL, "bfloat16-rows"),  # planes as rows of 784: 98% of 49 vectors
    ((1, 576, 4, 14, 14), (256, 576) + KERNEL, "bfloat16-rows"),  # rows of 196: 94% of 13
    ((1, 128, 8, 40, 40), (128, 128) + KERNEL, "bfloat16-rows"),
    ((1, 144, 16, 56, 56), (64, 144) + KERNEL, "bfloat16-rows"),
    ((1, 256, 16, 10, 10), (256, 256) + KERNEL, ALGORITHM),  # rows of 100: 89% of 7
])
def test_bfloat16_takes_it_widened_on_small_planes_of_partly_filled_rows(x_shape, w_shape, expected,
                                                                        without_amx):
    """Where the float32 plan takes it, bfloat16 takes the dot products along rows where the planes
    laid side by side fill ``BFLOAT16_ROWS_MIN_FILL`` of their vectors, else this kernel on widened
    operands on planes of at most ``BFLOAT16_WIDENED_DEPTH_MAX_PLANE`` positions (where the CPU has the
    dot products)."""
    plan = plan_conv3d(x_shape, w_shape, padding=(1, 0, 0), dtype="bfloat16")
    if not bfloat16_dot.serves(plan):
        pytest.skip("this CPU has no AVX512-BF16 dot products (or no 512-bit vectors)")
    assert plan_conv3d(x_shape, w_shape, padding=(1, 0, 0)).algorithm == ALGORITHM
    assert (expected == ALGORITHM) <= (x_shape[3] * x_shape[4] <= BFLOAT16_WIDENED_DEPTH_MAX_PLANE)
    assert plan.algorithm == expected


def test_tasks_and_call_bytes():
    plan = plan_conv3d((2, 144, 16, 56, 56), (64, 144) + KERNEL, padding=(1, 0, 0))
    assert winograd_depth.tasks(plan) == 2 * 8 * 4  # samples x pairs of planes x blocks of 784 columns
    assert plan.call_bytes == 4 * 4 * 64 * 144
