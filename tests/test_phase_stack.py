"""bfloat16 input gradients and transposed convolutions whose stride phases meet several taps
(``cpu/phase_stack.py``, route ``phase-stack``): where the route is taken, the float64 oracle within the
float32 sums' bound and one rounding, NaN and Inf through the widened route, thread-count determinism,
the stacked phases against their definition and the stacked weight."""
import itertools

import numpy as np
import pytest

from checks import (AMX_TILES_REASON, BFLOAT16, assert_bitwise_for_one_and_two_threads,
                    assert_reduced_within_bound, assert_transposed_within_bound, has_amx_tiles)
from numba_conv3d import conv3d_input, conv_transpose3d
from numba_conv3d.cpu import bfloat16_dot, phase_stack
from numba_conv3d.grad_crossovers import PHASE_STACK_MIN_POSITIONS
from numba_conv3d.grad_planner import plan_conv_transpose3d, plan_input_grad
from numba_conv3d import input_grad_routes
from numba_conv3d.input_grad_routes import INPUT_GRAD_ALGORITHMS
from numba_conv3d.planner import plan_conv3d
from numba_conv3d.stride_phases import stacked
from reference import transposed_reference

pytestmark = pytest.mark.skipif(not bfloat16_dot.serves(plan_conv3d((1, 2, 3, 3, 3), (2, 2, 1, 1, 1),
                                                                    dtype="bfloat16")),
                                reason="this CPU has no AVX512-BF16 dot products (or no 512-bit vectors)")

# (transposed input, weight (C_in, C_out / groups, K...), kwargs): the k3 s2 up-convolution of U-Nets,
# odd extents and batch 2, no padding and padding 2, padding 3 (the correlation cuts the input's front
# and back), output_padding, stride 3 with 5 taps, a unit-stride dimension, a 4x4x4 kernel whose phases
# read the same span, groups, unbatched.
TRANSPOSED = (
    ((1, 16, 8, 8, 8), (16, 8, 3, 3, 3), {"stride": 2, "padding": 1, "output_padding": 1}),
    ((2, 8, 5, 6, 7), (8, 6, 3, 3, 3), {"stride": 2, "padding": 1}),
    ((1, 8, 5, 6, 7), (8, 4, 3, 3, 3), {"stride": 2, "output_padding": 1}),
    ((1, 8, 6, 6, 6), (8, 6, 3, 3, 3), {"stride": 2, "padding": 2, "output_padding": 1}),
    ((1, 8, 7, 7, 7), (8, 6, 3, 3, 3), {"stride": 2, "padding": 3, "output_padding": 1}),
    ((1, 8, 4, 5, 6), (8, 6, 5, 3, 3), {"stride": (3, 2, 2), "padding": (2, 1, 0)}),
    ((1, 8, 3, 4, 9), (8, 8, 3, 1, 3), {"stride": (2, 1, 2), "padding": (1, 0, 1)}),
    ((1, 8, 5, 5, 5), (8, 4, 4, 4, 4), {"stride": 2}),
    ((1, 16, 6, 6, 6), (16, 8, 3, 3, 3), {"stride": 2, "padding": 1, "groups": 2}),
    ((8, 6, 6, 6), (8, 4, 3, 3, 3), {"stride": 2, "padding": 1}),
)


def _draw(rng, shape):
    return rng.standard_normal(shape).astype(BFLOAT16)


def _route(plan, grad):
    return next(name for name, applies, _ in INPUT_GRAD_ALGORITHMS if applies(plan, grad))


@pytest.fixture
def phase_stack_runs(monkeypatch):
    """The number of times the phase-stack route runs meanwhile (a list of one count)."""
    runs = [0]

    def counted(run):
        def run_counted(*arguments):
            runs[0] += 1
            return run(*arguments)
        return run_counted

    monkeypatch.setattr(input_grad_routes, "INPUT_GRAD_ALGORITHMS", tuple(
        (name, applies, counted(run) if name == "phase-stack" else run)
        for name, applies, run in INPUT_GRAD_ALGORITHMS))
    return runs


def _plan(x, w, kwargs):
    return plan_conv_transpose3d("t", x, w, None, kwargs["stride"], kwargs.get("padding", 0),
                                 kwargs.get("output_padding", 0), kwargs.get("groups", 1), 1)


@pytest.mark.parametrize("x_shape,w_shape,kwargs", TRANSPOSED)
@pytest.mark.parametrize("bias", [True, False])
def test_transposed_within_float32_sums_rounded_once(x_shape, w_shape, kwargs, bias, phase_stack_runs):
    rng = np.random.default_rng(sum(w_shape))
    x, w = _draw(rng, x_shape), _draw(rng, w_shape)
    b = _draw(rng, (w_shape[1] * kwargs.get("groups", 1),)) if bias else None
    batched = x if x.ndim == 5 else x[np.newaxis]
    assert _route(_plan(x, w, kwargs), batched) == "phase-stack"
    out = conv_transpose3d(x, w, b, **kwargs)
    assert phase_stack_runs == [1]
    # the zero weights' products add exact zeros: at most C_in / groups x taps terms (and the bias)
    terms = w_shape[0] // kwargs.get("groups", 1) * int(np.prod(w_shape[2:])) + bias
    assert_transposed_within_bound(out if x.ndim == 5 else out[np.newaxis], batched, w, b, terms, **kwargs)


def test_input_gradient_of_a_strided_convolution(phase_stack_runs):
    rng = np.random.default_rng(7)
    w, g = _draw(rng, (16, 12, 3, 3, 3)), _draw(rng, (2, 16, 4, 8, 8))
    x_shape = (2, 12, 8, 16, 15)
    plan = plan_input_grad("i", x_shape, w, g, 2, 1, 1, 1, "zeros")
    assert _route(plan, g) == "phase-stack"
    out = conv3d_input(x_shape, w, g, stride=2, padding=1)
    assert phase_stack_runs == [1]
    # The input gradient is the transposed convolution by the same weight (C_out, C_in, K...).
    wide_w, wide_g = w.astype(np.float64), g.astype(np.float64)
    kwargs = {"stride": 2, "padding": 1, "output_padding": (1, 1, 0)}
    expected = transposed_reference(wide_g, wide_w, **kwargs)
    magnitude = transposed_reference(np.abs(wide_g), np.abs(wide_w), **kwargs)
    assert_reduced_within_bound(out, expected, magnitude, 16 * 27)


@pytest.mark.parametrize("dtype,positions,kernel,padding,expected", [
    (BFLOAT16, PHASE_STACK_MIN_POSITIONS, 3, 1, "phase-stack"),
    (BFLOAT16, PHASE_STACK_MIN_POSITIONS // 2, 3, 1, "stride-phases"),
    (BFLOAT16, PHASE_STACK_MIN_POSITIONS, 4, 1, "stride-phases"),  # phases 2 apart: 3.4x the products
    (np.float16, PHASE_STACK_MIN_POSITIONS, 3, 1, "stride-phases"),
    (np.float32, PHASE_STACK_MIN_POSITIONS, 3, 1, "stride-phases"),
])
def test_where_the_route_is_taken(dtype, positions, kernel, padding, expected, without_amx):
    x = np.zeros((1, 16, 2, 2, positions // 4), dtype)
    w = np.zeros((16, 16, kernel, kernel, kernel), dtype)
    plan = plan_conv_transpose3d("t", x, w, None, 2, padding, 0, 1, 1)
    assert _route(plan, x) == expected


@pytest.mark.skipif(not has_amx_tiles(), reason=AMX_TILES_REASON)
def test_on_amx_tiles_the_route_is_taken_on_fewer_positions():
    """Where AMX tiles take the stacked correlation, below ``PHASE_STACK_MIN_POSITIONS`` too."""
    x = np.zeros((1, 256, 2, 4, PHASE_STACK_MIN_POSITIONS // 16), BFLOAT16)  # half as many positions
    w = np.zeros((256, 128, 3, 3, 3), BFLOAT16)
    assert _route(plan_conv_transpose3d("t", x, w, None, 2, 1, 1, 1, 1), x) == "phase-stack"


def test_not_where_the_forward_convolution_is_a_matrix_product(without_amx):
    # Small volumes with many channels: the float32 matrix product and col2im run as fast as the dot
    # products.
    x, w = np.zeros((1, 256, 4, 4, 4), BFLOAT16), np.zeros((256, 128, 3, 3, 3), BFLOAT16)
    assert _route(_plan(x, w, {"stride": 2, "padding": 1}), x) == "gemm-col2im"


@pytest.mark.parametrize("where", ["input", "weight"])
def test_non_finite_operands_take_the_widened_route(where, phase_stack_runs):
    # A zero weight of the stacked kernel meets every input element (0 * Inf is NaN), and a non-finite
    # weight the zeros padded around the input: the result is the widened route's, rounded once.
    rng = np.random.default_rng(8)
    x, w, b = _draw(rng, (1, 16, 6, 6, 6)), _draw(rng, (16, 8, 3, 3, 3)), _draw(rng, (8,))
    if where == "input":
        x[0, 1, 2, 3, 4], x[0, 5, 5, 0, 5] = np.inf, np.nan
    else:
        w[1, 2, 0, 1, 0] = np.inf
    out = conv_transpose3d(x, w, b, stride=2, padding=1, output_padding=1)
    assert phase_stack_runs == [0]
    wide = conv_transpose3d(x.astype(np.float32), w.astype(np.float32), b.astype(np.float32), stride=2,
                            padding=1, output_padding=1)
    np.testing.assert_array_equal(out.view(np.uint16), wide.astype(BFLOAT16).view(np.uint16))
    assert np.isnan(out.astype(np.float32)).any()


def test_bitwise_for_one_and_two_threads():
    rng = np.random.default_rng(9)
    x, w, b = _draw(rng, (2, 16, 8, 8, 8)), _draw(rng, (16, 8, 3, 3, 3)), _draw(rng, (8,))
    assert_bitwise_for_one_and_two_threads(
        lambda: conv_transpose3d(x, w, b, stride=2, padding=1, output_padding=1).view(np.uint16))


@pytest.mark.parametrize("kernel,stride", [(3, 2), (5, 2), (4, 2), (5, 3), (2, 1), (7, 3)])
def test_stacked_phases_read_what_the_definition_reads(kernel, stride):
    # Plainly: padded position start + r + q * stride gets weight[k] * grad[o] where start + r + q *
    # stride = o * stride + k, 0 <= o < extent; the stacked correlation reads grad[q + j - front].
    for start, length, extent in [(0, 9, 4), (1, 12, 6), (2, 7, 3), (3, 13, 9)]:
        found = stacked(start, length, kernel, stride, extent)
        assert found.size == -(-length // stride)
        assert found.size + found.extent - 1 == extent + sum(found.pads)
        for r, taps in enumerate(found.taps):
            for q in range(-(-(length - r) // stride)):
                position = start + r + q * stride
                expected = {k: (position - k) // stride for k in range(kernel)
                            if (position - k) % stride == 0 and 0 <= (position - k) // stride < extent}
                reached = {k: q + j - found.pads[0] for j, k in taps
                           if 0 <= q + j - found.pads[0] < extent}
                assert reached == expected and all(0 <= j < found.extent for j, _ in taps)


@pytest.mark.parametrize("groups", [1, 2])
def test_stacked_weight_holds_each_phases_taps(groups):
    weight = _draw(np.random.default_rng(10), (4 * groups, 3, 3, 3, 1))
    dims = [stacked(1, 8, 3, 2, 4), stacked(1, 8, 3, 2, 4), stacked(0, 4, 1, 1, 4)]
    taps = tuple(d.taps for d in dims)
    result = phase_stack.stacked_weight(weight, groups, taps)
    assert result.dtype == BFLOAT16
    assert result.shape == (groups * 3 * 4, 4) + tuple(d.extent for d in dims)
    expected = np.zeros(result.shape, np.float32)
    for g, c, o in itertools.product(range(groups), range(3), range(4)):
        for index, phase in enumerate(itertools.product(*taps)):
            for (jd, kd), (jh, kh), (jw, kw) in itertools.product(*phase):
                expected[(g * 3 + c) * 4 + index, o, jd, jh, jw] = weight[g * 4 + o, c, kd, kh, kw]
    np.testing.assert_array_equal(result.astype(np.float32), expected)
    assert phase_stack.finite_bits(weight) and not phase_stack.finite_bits(np.full_like(weight, np.inf))
