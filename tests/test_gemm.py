"""The im2col + GEMM algorithm (cpu/gemm.py): forward chunks, its weight gradient against the weight-
gradient kernel and the float64 reference, and where the planner takes it. (Every named case, mode and
dtype also runs it through test_conv3d's every-algorithm checks.)"""
import numpy as np
import pytest

from checks import assert_matches_reference, conv3d_with, random_operands, reference_input_gradient
from numba_conv3d.cpu import gemm
from numba_conv3d.cpu.weight_grad import weight_grad
from numba_conv3d.grad import conv3d_weight
from numba_conv3d.planner import plan_conv3d
from reference import conv3d_reference

# (input shape, weight shape, conv3d keyword arguments): modes, strides, dilations, groups, odd extents
CASES = [
    ((2, 4, 5, 6, 7), (6, 2, 3, 2, 3), dict(groups=2, stride=(2, 1, 3), padding=(1, 2, 0),
                                            dilation=(1, 2, 1))),
    ((1, 3, 6, 5, 7), (4, 3, 3, 3, 3), dict(padding=1, padding_mode="reflect")),
    ((1, 2, 5, 6, 7), (4, 2, 3, 3, 2), dict(stride=2, padding=(2, 1, 1), padding_mode="replicate")),
    ((2, 2, 4, 5, 6), (3, 2, 2, 3, 2), dict(padding=(2, 1, 2), dilation=(1, 2, 1), padding_mode="circular")),
    ((1, 3, 1, 4, 1), (2, 3, 1, 3, 1), dict(padding=(0, 1, 0))),
]


@pytest.mark.parametrize("input_shape, weight_shape, kwargs", CASES)
def test_forward_in_chunks_of_one_plane_matches_the_reference(monkeypatch, input_shape, weight_shape, kwargs):
    x, w, b = random_operands(np.random.default_rng(0), input_shape, weight_shape, True, np.float64)
    monkeypatch.setattr(gemm, "GEMM_COLUMN_BYTES", 1)
    assert_matches_reference(conv3d_with("gemm", x, w, b, **kwargs), x, w, b, **kwargs)


def _reference_weight_grad(x, w_shape, g, **kwargs):
    """<conv(x, e_j), g> for every weight element j: the float64 reference is linear in the weight."""
    result = np.zeros(w_shape)
    unit = np.zeros(w_shape)
    for index in np.ndindex(*w_shape):
        unit[index] = 1.0
        result[index] = np.vdot(conv3d_reference(x, unit, **kwargs), g)
        unit[index] = 0.0
    return result


@pytest.mark.parametrize("input_shape, weight_shape, kwargs", CASES)
def test_weight_gradient_matches_the_kernel_and_the_reference(input_shape, weight_shape, kwargs):
    rng = np.random.default_rng(1)
    x, w, _ = random_operands(rng, input_shape, weight_shape, False, np.float64)
    g = rng.standard_normal(conv3d_reference(x, w, **kwargs).shape)
    plan = plan_conv3d(x.shape, w.shape, bias=False, dtype=x.dtype, **kwargs)
    numbers = (plan.stride, plan.dilation, plan.pad_front, plan.padded_size, plan.mode_code, plan.groups)
    ours = gemm.weight_grad(x, g, w.shape, *numbers)
    np.testing.assert_allclose(ours, weight_grad(x, g, w.shape, *numbers), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(ours, _reference_weight_grad(x, w.shape, g, **kwargs), rtol=1e-12, atol=1e-12)


def test_conv3d_weight_of_a_deep_layer_runs_the_gemm_route_and_matches_the_kernel():
    rng = np.random.default_rng(2)
    x, w, _ = random_operands(rng, (2, 128, 2, 3, 3), (128, 128, 3, 3, 3), False, np.float64)
    g = rng.standard_normal((2, 128, 2, 3, 3))
    plan = plan_conv3d(x.shape, w.shape, bias=False, dtype=x.dtype, padding=1)
    assert plan.algorithm == "gemm"
    kernel = weight_grad(x, g, w.shape, plan.stride, plan.dilation, plan.pad_front, plan.padded_size,
                         plan.mode_code, plan.groups)
    np.testing.assert_allclose(conv3d_weight(x, w.shape, g, padding=1), kernel, rtol=1e-11, atol=1e-11)


@pytest.mark.parametrize("input_shape, weight_shape, dtype, expected", [
    ((1, 128, 8, 28, 28), (256, 128, 3, 3, 3), "float32", True),  # many output channels
    ((1, 128, 8, 28, 28), (128, 128, 3, 3, 3), "float32", True),  # 49 positions per channel
    ((1, 64, 16, 56, 56), (128, 64, 3, 3, 3), "float32", False),  # 392 positions per channel
    ((1, 64, 16, 56, 56), (64, 64, 3, 3, 3), "float32", False),  # the kernel: 64 channels
    ((1, 512, 2, 7, 7), (64, 512, 3, 3, 3), "float64", False),
    ((1, 512, 2, 7, 7), (512, 512, 3, 3, 3), "float64", True),  # the forward plan is GEMM
    ((1, 128, 8, 28, 28), (256, 128, 3, 3, 3), "complex64", False),
])
def test_weight_gradient_is_a_matrix_product_for_many_output_channels(input_shape, weight_shape, dtype,
                                                                       expected):
    plan = plan_conv3d(input_shape, weight_shape, bias=False, padding=1, dtype=dtype)
    assert gemm.computes_weight_grad(plan) == expected


@pytest.mark.parametrize("input_shape, weight_shape, kwargs, expected", [
    ((1, 512, 2, 7, 7), (512, 512, 3, 3, 3), dict(padding=1), None),  # r3d_18 layer4: channel-vectorized
    ((1, 256, 4, 4, 4), (256, 256, 3, 3, 3), dict(padding=1), None),  # a U-Net's bottom: the same
    ((1, 256, 4, 14, 14), (512, 256, 3, 3, 3), dict(stride=2, padding=1), "gemm"),  # strided, deep
    ((1, 64, 16, 56, 56), (128, 64, 1, 1, 1), dict(stride=2), "pointwise"),  # strided 1x1x1
    ((1, 512, 4, 14, 14), (1024, 512, 1, 1, 1), dict(stride=2), "gemm"),  # 1x1x1 from 512 channels
    ((1, 64, 16, 56, 56), (64, 64, 3, 3, 3), dict(padding=1), None),  # large volume: direct kernels
    ((1, 24, 13, 40, 40), (24, 24, 1, 1, 1), dict(stride=(1, 2, 2)), "pointwise"),  # X3D's shortcut
    ((1, 8, 13, 40, 40), (4, 8, 1, 1, 1), dict(stride=(1, 2, 2)), None),  # too few output channels
    ((1, 432, 13, 5, 5), (432, 1, 3, 3, 3), dict(padding=1, groups=432), None),  # depthwise
    ((1, 8, 2, 3, 3), (128, 8, 1, 2, 2), {}, None),  # a reduction of 8 input channels x 4 taps
    ((1, 32, 16, 56, 56), (64, 32, 1, 1, 1), {}, "pointwise"),  # the register-blocked pointwise kernel
    ((1, 1024, 8, 8, 8), (256, 1024, 1, 1, 1), {}, "gemm"),  # pointwise, long reduction: input as matrix
    ((1, 4, 16, 56, 56), (64, 4, 1, 1, 1), {}, None),  # pointwise from 4 channels
    ((1, 576, 4, 14, 14), (256, 576, 3, 1, 1), dict(padding=(1, 0, 0)), None),  # R(2+1)D temporal: planes
    ((1, 256, 4, 14, 14), (256, 256, 3, 3, 3), dict(padding=1), None),  # the same positions, 27 taps
    ((1, 288, 8, 28, 28), (128, 288, 3, 1, 1), dict(padding=(1, 0, 0)), None),  # 49 positions/channel
])
def test_the_planner_takes_gemm_for_small_volumes_with_many_channels(input_shape, weight_shape, kwargs,
                                                                     expected):
    algorithm = plan_conv3d(input_shape, weight_shape, **kwargs).algorithm
    assert (algorithm == "gemm") == (expected == "gemm"), algorithm
    assert expected != "pointwise" or algorithm == "pointwise", algorithm
    assert plan_conv3d(input_shape, weight_shape, dtype="complex64", **kwargs).algorithm != "gemm"


# (input shape, weight shape, conv3d keyword arguments, whether the strided input gradient is col2im);
# rows: input channels per group x taps, the columns' rows
FEW_CHANNEL_ROUTES = [
    ((2, 3, 6, 8, 7), (4, 3, 2, 2, 2), dict(stride=2), True),  # 24 rows
    ((1, 16, 6, 8, 7), (4, 16, 2, 2, 2), dict(stride=2), True),  # 128 rows, taps that do not overlap
    ((1, 80, 4, 4, 4), (4, 80, 2, 2, 2), dict(stride=2), False),  # 640 rows, taps that do not overlap
    ((1, 4, 3, 8, 6), (8, 2, 1, 2, 2), dict(stride=(1, 2, 2), groups=2, padding=(0, 1, 0)), True),
    ((1, 6, 7, 6, 9), (5, 6, 3, 3, 3), dict(stride=3, padding=1, padding_mode="reflect"), True),  # 162
    ((1, 16, 8, 7, 8), (4, 16, 3, 3, 3), dict(stride=3, dilation=2, padding=2), True),  # 432, no overlap
    ((1, 14, 7, 8, 8), (4, 14, 2, 2, 2), dict(stride=2, dilation=2), False),  # 112 rows, overlapping
    ((1, 2, 7, 6, 5), (6, 2, 3, 3, 3), dict(stride=2, padding=1), True),  # 54 rows
    ((1, 4, 7, 6, 5), (6, 4, 3, 3, 3), dict(stride=2, padding=1, padding_mode="circular"), True),  # 108
    ((1, 5, 7, 6, 5), (6, 5, 3, 3, 3), dict(stride=2, padding=1), False),  # 135 rows
    ((1, 3, 6, 8, 7), (3, 3, 2, 2, 2), dict(stride=2), False),  # 3 output channels
    ((1, 6, 6, 8, 7), (6, 1, 2, 2, 2), dict(stride=2, groups=6), False),  # depthwise
    ((1, 10, 6, 8, 7), (4, 10, 3, 2, 2), dict(stride=(1, 2, 2), dilation=(1, 1, 2)), False),  # 120 rows
]


@pytest.mark.parametrize("input_shape, weight_shape, kwargs, col2im", FEW_CHANNEL_ROUTES)
def test_strided_input_gradients_with_few_channels_take_col2im_where_it_pays(input_shape, weight_shape,
                                                                             kwargs, col2im):
    """Columns of few rows, or of not many where the taps do not overlap, take col2im from 4 output
    channels per group (``grad_crossovers.COL2IM_*``); the gradient matches the reference either way."""
    from numba_conv3d.grad import conv3d_input
    from numba_conv3d.input_grad_routes import INPUT_GRAD_ALGORITHMS
    from numba_conv3d.grad_planner import plan_input_grad

    rng = np.random.default_rng(6)
    w = rng.standard_normal(weight_shape)
    g = rng.standard_normal(conv3d_reference(np.zeros(input_shape), w, **kwargs).shape)
    arguments = dict(dict(stride=1, padding=0, dilation=1, groups=1, padding_mode="zeros"), **kwargs)
    plan = plan_input_grad("test", input_shape, w, g, **arguments)
    route = next(name for name, applies, _ in INPUT_GRAD_ALGORITHMS if applies(plan, g))
    assert (route == "gemm-col2im") == col2im, route
    np.testing.assert_allclose(conv3d_input(input_shape, w, g, **kwargs),
                               reference_input_gradient(input_shape, w, g, **kwargs), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("kwargs", [
    dict(stride=2, padding=1),
    dict(stride=(2, 1, 3), padding=(1, 2, 0), dilation=(1, 2, 1), groups=2),
    dict(stride=(1, 2, 2), padding=(0, 1, 1), padding_mode="reflect"),
    dict(stride=2, padding=2, padding_mode="circular"),
    dict(padding=1),  # unit stride: the route where the forward plan is GEMM
])
def test_col2im_input_gradient_matches_the_gather_kernel_and_the_adjoint(kwargs):
    from numba_conv3d.cpu import gradients as cpu_gradients
    from numba_conv3d.input_grad_routes import INPUT_GRAD_ALGORITHMS

    rng = np.random.default_rng(3)
    groups = kwargs.get("groups", 1)
    x, w, _ = random_operands(rng, (2, 2 * groups, 5, 6, 7), (64 * groups, 2, 3, 2, 3), False, np.float64)
    g = rng.standard_normal(conv3d_reference(x, w, **kwargs).shape)
    routes = {name: (applies, run) for name, applies, run in INPUT_GRAD_ALGORITHMS}
    # at unit stride the route serves plans whose forward convolution is a matrix product
    forced = "gemm" if kwargs.get("stride", 1) == 1 else None
    plan = plan_conv3d(x.shape, w.shape, bias=False, dtype=x.dtype, algorithm=forced, **kwargs)
    assert routes["gemm-col2im"][0](plan, g)
    bias = rng.standard_normal(2 * groups)
    ours = routes["gemm-col2im"][1](plan, g, w, True, cpu_gradients, bias)
    np.testing.assert_allclose(ours, routes["gather"][1](plan, g, w, True, cpu_gradients, bias), rtol=1e-12,
                               atol=1e-12)
    expected = reference_input_gradient(x.shape, w, g, **kwargs)
    np.testing.assert_allclose(ours, expected + bias.reshape(-1, 1, 1, 1), rtol=1e-11, atol=1e-11)
