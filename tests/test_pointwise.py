"""The register-blocked pointwise kernel (``cpu/pointwise.py``) against the float64 reference over
strides, groups, batches, unbatched input, odd extents and channel counts that leave a last strip or
channel block moved back, and panels of many strips; against torch where installed; NaN and Inf where
the definition puts them; bitwise the same for 1 and 2 threads; where the planner takes it and which
arguments it does not serve."""
import numpy as np
import pytest

from checks import (assert_bitwise_for_one_and_two_threads, assert_forced_algorithm_within,
                    assert_matches_reference, random_operands, reference_input_gradient)
from numba_conv3d import conv3d, conv3d_input, plan_conv3d
from numba_conv3d.config import BLOCK_CHANNELS
from numba_conv3d.cpu import pointwise
from reference import conv3d_reference

CASES = [
    ((2, 8, 6, 5, 7), (12, 8, 1, 1, 1), {}),
    ((1, 24, 3, 10, 10), (54, 24, 1, 1, 1), {}),
    ((1, 12, 7, 9, 8), (27, 4, 1, 1, 1), {"groups": 3}),
    ((3, 6, 9, 11, 13), (9, 6, 1, 1, 1), {"stride": 2}),
    ((1, 10, 5, 20, 22), (16, 10, 1, 1, 1), {"stride": (1, 2, 2)}),
    ((1, 16, 8, 9, 7), (24, 8, 1, 1, 1), {"stride": (2, 1, 3), "groups": 2}),
    ((1, 1, 4, 8, 8), (8, 1, 1, 1, 1), {}),
    ((5, 7, 3, 4), (11, 5, 1, 1, 1), {}),
    ((0, 4, 5, 5, 5), (8, 4, 1, 1, 1), {}),
    ((1, 3, 1, 1, 64), (8, 3, 1, 1, 1), {"dilation": 2}),
    ((1, 5, 1, 6, 8), (9, 5, 1, 1, 1), {}),  # one float32 strip, two float64 ones
    ((1, 5, 1, 7, 7), (9, 5, 1, 1, 1), {}),  # one strip and one position
    ((1, 5, 2, 3, 3), (9, 5, 1, 1, 1), {}),  # less than a strip: the blocked kernel
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("x_shape, w_shape, kwargs", CASES)
def test_matches_reference(x_shape, w_shape, kwargs, dtype):
    assert_forced_algorithm_within("pointwise", assert_matches_reference, x_shape, w_shape, kwargs, "zeros",
                                   dtype)


@pytest.mark.parametrize("x_shape, w_shape, kwargs", CASES[:6])
def test_matches_torch(x_shape, w_shape, kwargs):
    pytest.importorskip("torch", reason="torch is the second oracle where installed (test extra)")
    from torch_oracle import assert_matches_torch

    rng = np.random.default_rng(3)
    x, w, b = random_operands(rng, x_shape, w_shape, True, np.float32)
    assert_matches_torch(conv3d(x, w, b, algorithm="pointwise", **kwargs), x, w, b, **kwargs)


def test_nan_and_inf_reach_exactly_the_outputs_that_read_them():
    rng = np.random.default_rng(6)
    x, w, b = random_operands(rng, (1, 6, 4, 6, 10), (16, 6, 1, 1, 1), True, np.float64)
    x[0, 1, 2, 2, 4] = np.inf
    x[0, 3, 1, 4, 8] = np.nan
    w[5, 2, 0, 0, 0] = np.inf
    for stride in (1, 2):
        out = conv3d(x, w, b, stride=stride, algorithm="pointwise")
        expected = conv3d_reference(x, w, b, stride=stride)
        np.testing.assert_array_equal(np.isnan(out), np.isnan(expected))
        np.testing.assert_array_equal(np.isinf(out), np.isinf(expected))
        finite = np.isfinite(expected)
        np.testing.assert_allclose(out[finite], expected[finite], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("stride", [1, (1, 2, 2)])
def test_bitwise_the_same_for_one_and_two_threads(stride):
    rng = np.random.default_rng(7)
    x, w, b = random_operands(rng, (2, 40, 5, 18, 22), (60, 40, 1, 1, 1), True, np.float32)
    assert_bitwise_for_one_and_two_threads(lambda: conv3d(x, w, b, stride=stride, algorithm="pointwise"))


def test_moved_back_blocks_compute_the_same_sums():
    # 13 output channels and 61 positions: the last channel block and the last strip start before the
    # end of the ones before them; each output must equal the one the full blocks compute.
    rng = np.random.default_rng(9)
    x, w, b = random_operands(rng, (1, 5, 1, 1, 61), (13, 5, 1, 1, 1), True, np.float32)
    out = conv3d(x, w, b, algorithm="pointwise")
    wide = conv3d(np.concatenate([x, x], axis=-1), np.concatenate([w, w[:3]]),
                  np.concatenate([b, b[:3]]), algorithm="pointwise")
    np.testing.assert_array_equal(out, wide[:, :13, ..., :61])


def test_panels_of_many_strips_match_the_reference():
    # 8 input channels: a panel is many strips, each gathered (strided) or read in place (unit stride)
    # once, the last one moved back into the panel before it.
    rng = np.random.default_rng(11)
    x, w, b = random_operands(rng, (1, 8, 7, 30, 31), (16, 8, 1, 1, 1), True, np.float64)
    assert pointwise.panel_positions(8, 8) > 4 * pointwise.strip_positions(8)
    for stride in (1, (1, 2, 3)):
        out = conv3d(x, w, b, stride=stride, algorithm="pointwise")
        assert_matches_reference(out, x, w, b, stride=stride)


def test_below_one_strip_it_gives_the_blocked_kernels_bits():
    rng = np.random.default_rng(12)
    for dtype in (np.float32, np.float64):
        x, w, b = random_operands(rng, (2, 6, 2, 3, 3), (10, 6, 1, 1, 1), True, dtype)
        assert pointwise.strip_positions(np.dtype(dtype).itemsize) > 18
        np.testing.assert_array_equal(conv3d(x, w, b, algorithm="pointwise"),
                                      conv3d(x, w, b, algorithm="blocked"))


@pytest.mark.parametrize("weight_shape, gemm_shaped", [((54, 24, 1, 1, 1), True), ((64, 4, 1, 1, 1), False)])
def test_the_gradients_keep_the_routes_of_gemms_forward(weight_shape, gemm_shaped):
    # where GEMM would take the forward convolution, the input gradient stays col2im and the weight
    # gradient GEMM's product, as measured beside GEMM's forward
    from numba_conv3d.cpu import gemm
    from numba_conv3d.cpu.preferences import forward_is_gemm_shaped
    from numba_conv3d.grad_planner import plan_input_grad
    from numba_conv3d.input_grad_routes import INPUT_GRAD_ALGORITHMS

    input_shape = (1, weight_shape[1], 3, 10, 10)
    plan = plan_conv3d(input_shape, weight_shape)
    assert plan.algorithm == "pointwise"
    assert forward_is_gemm_shaped(plan) == gemm_shaped and gemm.computes_weight_grad(plan) == gemm_shaped
    rng = np.random.default_rng(4)
    w = rng.standard_normal(weight_shape)
    g = rng.standard_normal((1, weight_shape[0], 3, 10, 10))
    grad_plan = plan_input_grad("test", input_shape, w, g, stride=1, padding=0, dilation=1, groups=1,
                                padding_mode="zeros")
    route = next(name for name, applies, _ in INPUT_GRAD_ALGORITHMS if applies(grad_plan, g))
    assert (route == "gemm-col2im") == gemm_shaped, route
    np.testing.assert_allclose(conv3d_input(input_shape, w, g), reference_input_gradient(input_shape, w, g),
                               rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("input_shape, weight_shape, kwargs, expected", [
    ((1, 24, 13, 40, 40), (54, 24, 1, 1, 1), {}, True),
    ((1, 192, 13, 5, 5), (432, 192, 1, 1, 1), {}, True),
    ((1, 256, 4, 14, 14), (512, 256, 1, 1, 1), {"stride": 2}, True),
    ((1, 2, 32, 64, 64), (16, 2, 1, 1, 1), {}, True),
    ((1, 384, 4, 14, 14), (384, 384, 1, 1, 1), {}, False),  # a long reduction: GEMM's
    ((1, 54, 1, 1, 1), (8, 54, 1, 1, 1), {}, False),  # one position, less than a strip: GEMM's
    ((1, 32, 64, 64, 64), (3, 32, 1, 1, 1), {}, False),  # fewer outputs than a channel block
    ((1, 32, 16, 16, 16), (64, 32, 1, 1, 1), {"padding": 1}, False),  # pads
])
def test_where_the_planner_takes_it(input_shape, weight_shape, kwargs, expected):
    assert (plan_conv3d(input_shape, weight_shape, **kwargs).algorithm == "pointwise") == expected


@pytest.mark.parametrize("weight_shape, kwargs", [
    ((16, 8, 1, 1, 1), {"padding": (0, 1, 0)}),
    ((16, 8, 1, 1, 1), {"dtype": "complex64"}),
    ((16, 8, 3, 1, 1), {}),
    ((BLOCK_CHANNELS - 1, 8, 1, 1, 1), {}),
])
def test_what_it_does_not_serve(weight_shape, kwargs):
    assert not pointwise.serves(plan_conv3d((1, 8, 5, 6, 7), weight_shape, **kwargs))
    with pytest.raises(ValueError, match="pointwise"):
        plan_conv3d((1, 8, 5, 6, 7), weight_shape, algorithm="pointwise", **kwargs)
