"""bfloat16 input gradients and transposed convolutions whose taps never share a stride phase
(``cpu/tap_scatter.py``, route ``tap-scatter``): where the route is taken, the float64 oracle within the
float32 sums' bound and one rounding, NaN and Inf where they reach, thread-count determinism, and the
pointwise weight."""
import math

import numpy as np
import pytest

from checks import (AMX_TILES_REASON, BFLOAT16, assert_bitwise_for_one_and_two_threads,
                    assert_reduced_within_bound, assert_transposed_within_bound, has_amx_tiles)
from numba_conv3d import conv3d_backward, conv3d_input, conv3d_weight, conv_transpose3d
from numba_conv3d.cpu import bfloat16_dot, tap_scatter
from numba_conv3d.grad_crossovers import TAP_SCATTER_MIN_POSITIONS
from numba_conv3d.grad_planner import plan_conv_transpose3d, plan_input_grad
from numba_conv3d.input_grad_routes import INPUT_GRAD_ALGORITHMS
from numba_conv3d.planner import plan_conv3d
from reference import transposed_reference

pytestmark = pytest.mark.skipif(not bfloat16_dot.serves(plan_conv3d((1, 2, 3, 3, 3), (2, 2, 1, 1, 1),
                                                                    dtype="bfloat16")),
                                reason="this CPU has no AVX512-BF16 dot products (or no 512-bit vectors)")

# (transposed input, weight (C_in, C_out / groups, K...), kwargs): pairs of taps written as words
# (2x2x2 at stride 2), odd widths and a cropped front (output_padding, padding), a 1x2x2 kernel, a
# dilated kernel whose taps land 3 apart, groups, batch 2, unbatched.
TRANSPOSED = (
    ((1, 8, 8, 8, 8), (8, 6, 2, 2, 2), {"stride": 2}),
    ((2, 6, 4, 8, 9), (6, 4, 2, 2, 2), {"stride": 2, "output_padding": 1}),
    ((1, 4, 8, 9, 8), (4, 5, 2, 2, 2), {"stride": 2, "padding": 1}),
    ((1, 6, 8, 8, 8), (6, 3, 1, 2, 2), {"stride": (1, 2, 2)}),
    ((1, 4, 8, 8, 8), (4, 4, 2, 2, 2), {"stride": 2, "dilation": 3, "output_padding": (0, 1, 2)}),
    ((1, 8, 8, 8, 9), (8, 3, 2, 2, 2), {"stride": 2, "groups": 2}),
    ((6, 8, 9, 8), (6, 4, 2, 2, 2), {"stride": 2}),
)


def _draw(rng, shape):
    return rng.standard_normal(shape).astype(BFLOAT16)


def _route(plan, grad):
    return next(name for name, applies, _ in INPUT_GRAD_ALGORITHMS if applies(plan, grad))


@pytest.mark.parametrize("x_shape,w_shape,kwargs", TRANSPOSED)
@pytest.mark.parametrize("bias", [True, False])
def test_transposed_within_float32_sums_rounded_once(x_shape, w_shape, kwargs, bias):
    rng = np.random.default_rng(sum(w_shape))
    x, w = _draw(rng, x_shape), _draw(rng, w_shape)
    b = _draw(rng, (w_shape[1] * kwargs.get("groups", 1),)) if bias else None
    plan = plan_conv_transpose3d("t", x, w, b, kwargs["stride"], kwargs.get("padding", 0),
                                 kwargs.get("output_padding", 0), kwargs.get("groups", 1),
                                 kwargs.get("dilation", 1))
    batched = x if x.ndim == 5 else x[np.newaxis]
    assert _route(plan, batched) == "tap-scatter"
    out = conv_transpose3d(x, w, b, **kwargs)
    assert_transposed_within_bound(out if x.ndim == 5 else out[np.newaxis], batched, w, b,
                                   w_shape[0] // kwargs.get("groups", 1) + bias, **kwargs)


def test_input_gradient_with_positions_no_tap_reads():
    # A 1x1x1 kernel at stride 2: every other input position has a zero gradient.
    rng = np.random.default_rng(7)
    w, g = _draw(rng, (12, 6, 1, 1, 1)), _draw(rng, (2, 12, 4, 8, 8))
    x_shape = (2, 6, 8, 16, 15)
    plan = plan_input_grad("i", x_shape, w, g, 2, 0, 1, 1, "zeros")
    assert _route(plan, g) == "tap-scatter"
    out = conv3d_input(x_shape, w, g, stride=2)
    # The input gradient is the transposed convolution by the same weight (C_out, C_in, K...).
    wide_w, wide_g = w.astype(np.float64), g.astype(np.float64)
    expected = transposed_reference(wide_g, wide_w, 2, output_padding=(1, 1, 0))
    magnitude = transposed_reference(np.abs(wide_g), np.abs(wide_w), 2, output_padding=(1, 1, 0))
    assert_reduced_within_bound(out, expected, magnitude, 12)
    assert not out[:, :, 1::2].astype(np.float32).any()


@pytest.mark.parametrize("dtype,positions,expected", [
    (BFLOAT16, TAP_SCATTER_MIN_POSITIONS, "tap-scatter"),
    (BFLOAT16, TAP_SCATTER_MIN_POSITIONS // 2, "gemm-col2im"),
    (np.float16, TAP_SCATTER_MIN_POSITIONS, "gemm-col2im"),
    (np.float32, TAP_SCATTER_MIN_POSITIONS, "gemm-col2im"),
])
def test_where_the_route_is_taken(dtype, positions, expected, without_amx):
    x = np.zeros((1, 64, 4, 4, positions // 16), dtype)
    w = np.zeros((64, 32, 2, 2, 2), dtype)
    plan = plan_conv_transpose3d("t", x, w, None, 2, 0, 0, 1, 1)
    assert _route(plan, x) == expected


@pytest.mark.skipif(not has_amx_tiles(), reason=AMX_TILES_REASON)
def test_on_amx_tiles_the_route_is_taken_on_fewer_positions():
    """Where AMX tiles take the pointwise convolution (from 32 positions), below
    ``TAP_SCATTER_MIN_POSITIONS`` too."""
    x = np.zeros((1, 64, 4, 4, TAP_SCATTER_MIN_POSITIONS // 32), BFLOAT16)
    w = np.zeros((64, 32, 2, 2, 2), BFLOAT16)
    assert _route(plan_conv_transpose3d("t", x, w, None, 2, 0, 0, 1, 1), x) == "tap-scatter"


def test_not_where_the_pointwise_convolution_takes_no_dot_products():
    # One output-gradient channel per group: no pairs to fill, the pointwise convolution is widened.
    x, w = np.zeros((1, 4, 8, 8, 8), BFLOAT16), np.zeros((4, 1, 2, 2, 2), BFLOAT16)
    plan = plan_conv_transpose3d("t", x, w, None, 2, 0, 0, 4, 1)
    assert _route(plan, x) != "tap-scatter"


def test_a_negative_zero_bias_gives_positive_zeros_where_no_tap_reads():
    # 0 + (-0) is +0, as torch's col2im and bias give.
    x, w = np.ones((1, 8, 8, 8, 8), BFLOAT16), np.ones((8, 4, 1, 1, 1), BFLOAT16)
    out = conv_transpose3d(x, w, np.full(4, -0.0, BFLOAT16), stride=2, output_padding=1)
    assert (out.view(np.uint16)[:, :, 1::2] == 0).all()


def test_conv3d_backward_gives_conv3d_inputs_gradient():
    rng = np.random.default_rng(11)
    x, w, g = _draw(rng, (1, 16, 16, 16, 16)), _draw(rng, (24, 16, 2, 2, 2)), _draw(rng, (1, 24, 8, 8, 8))
    grad_input, grad_weight, grad_bias = conv3d_backward(x, w, g, stride=2)
    expected_input = conv3d_input(x.shape, w, g, stride=2)
    np.testing.assert_array_equal(grad_input.view(np.uint16), expected_input.view(np.uint16))
    # The weight's gradient stays the float32 one rounded once.
    wide_x, wide_g = x.astype(np.float32), g.astype(np.float32)
    expected_weight = conv3d_weight(wide_x, w.shape, wide_g, stride=2).astype(BFLOAT16)
    np.testing.assert_array_equal(grad_weight.view(np.uint16), expected_weight.view(np.uint16))
    assert grad_bias.dtype == BFLOAT16


def test_nan_and_inf_reach_the_outputs_whose_taps_read_them():
    rng = np.random.default_rng(8)
    x, w, b = _draw(rng, (1, 8, 8, 8, 8)), _draw(rng, (8, 4, 2, 2, 2)), _draw(rng, (4,))
    x[0, 1, 2, 3, 4], x[0, 5, 6, 0, 7] = np.inf, np.nan
    w[1, 2, 0, 1, 0] = 0  # 0 * Inf is NaN
    out = conv_transpose3d(x, w, b, stride=2).astype(np.float32)
    expected = conv_transpose3d(x.astype(np.float32), w.astype(np.float32), b.astype(np.float32), stride=2)
    np.testing.assert_array_equal(np.isnan(out), np.isnan(expected))
    np.testing.assert_array_equal(out[np.isinf(expected)], expected[np.isinf(expected)])
    assert np.isnan(out).any() and np.isinf(out).any()


def test_bitwise_for_one_and_two_threads():
    rng = np.random.default_rng(9)
    x, w, b = _draw(rng, (2, 16, 8, 8, 8)), _draw(rng, (16, 8, 2, 2, 2)), _draw(rng, (8,))
    assert_bitwise_for_one_and_two_threads(lambda: conv_transpose3d(x, w, b, stride=2).view(np.uint16))


@pytest.mark.parametrize("groups", [1, 3])
def test_pointwise_weight_is_each_groups_matrix_transposed(groups):
    weight = _draw(np.random.default_rng(10), (6 * groups, 5, 2, 1, 3))
    taps = math.prod(weight.shape[2:])
    result = tap_scatter.pointwise_weight(weight, groups)
    assert result.shape == (groups * 5 * taps, 6, 1, 1, 1) and result.dtype == BFLOAT16
    blocks = weight.reshape(groups, 6, 5 * taps)
    np.testing.assert_array_equal(result.reshape(groups, 5 * taps, 6).view(np.uint16),
                                  blocks.transpose(0, 2, 1).view(np.uint16))


@pytest.mark.parametrize("stride,dilation", [(2, 1), (2, 3), (3, 1), (3, 2), (4, 3), (1, 1)])
def test_each_position_maps_to_the_tap_and_output_that_read_it(stride, dilation):
    # Plainly: padded position start + p is read by tap k of output o where start + p = o * stride + k *
    # dilation, 0 <= o < grad_extent (one such (k, o) at most when taps never share a phase).
    for kernel in range(1, stride // math.gcd(stride, dilation) + 1):
        for start, length, extent in [(0, 9, 4), (1, 12, 6), (3, 7, 2), (2, 13, 9)]:
            expected = {}
            for p in range(length):
                for k in range(kernel):
                    reach = start + p - k * dilation
                    if reach % stride == 0 and 0 <= reach // stride < extent:
                        expected[p] = (k, reach // stride)
            taps, sources = tap_scatter._sources(start, length, kernel, stride, dilation, extent)
            assert {p: (taps[p], sources[p]) for p in range(length) if taps[p] >= 0} == expected
            runs, gaps = tap_scatter._runs(start, length, kernel, stride, dilation, extent)
            reached = {q * stride + runs[k, 2]: (k, q)
                       for k in range(kernel) for q in range(runs[k, 0], runs[k, 1])}
            assert reached == expected and gaps == (len(expected) < length)

