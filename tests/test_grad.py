"""Gradients of conv3d (numba_conv3d.grad) against torch's autograd, an independent finite-difference
Jacobian, and the rules: validation, determinism across thread counts, a NumPy training loop."""

import numba
import numpy as np
import pytest

from checks import assert_close, gradient_bounds, random_operands
from numba_conv3d import Conv3d, conv3d
from numba_conv3d.cpu import gradients as cpu_gradients
from numba_conv3d.grad import conv3d_backward, conv3d_bias, conv3d_input, conv3d_weight
from numba_conv3d.grad_planner import plan_input_grad
from numba_conv3d.input_grad_routes import INPUT_GRAD_ALGORITHMS
from reference import conv3d_reference

# (input shape, weight shape, conv3d keyword arguments): every padding mode, strides, dilations,
# groups, depthwise, 'same' with even kernels, 'valid', unbatched input.
CASES = [
    ((2, 4, 5, 6, 7), (6, 2, 3, 2, 3), dict(groups=2, stride=(2, 1, 3), padding=(1, 2, 0),
                                            dilation=(1, 2, 1))),
    ((1, 3, 6, 5, 7), (3, 1, 3, 3, 3), dict(groups=3, padding=1, padding_mode="reflect")),
    ((1, 2, 5, 6, 7), (3, 2, 3, 3, 2), dict(stride=(1, 2, 2), padding=(2, 1, 1), padding_mode="reflect")),
    ((1, 2, 5, 6, 7), (4, 2, 3, 3, 2), dict(stride=2, padding=(2, 1, 1), padding_mode="replicate")),
    ((2, 2, 4, 5, 6), (2, 2, 2, 3, 2), dict(padding=(4, 1, 2), dilation=(1, 2, 1),
                                            padding_mode="circular")),
    ((1, 2, 5, 6, 7), (3, 2, 2, 3, 4), dict(padding="same", padding_mode="reflect")),
    ((2, 5, 6, 7), (4, 2, 2, 3, 4), dict(padding="same", dilation=(2, 1, 1), padding_mode="circular")),
    ((2, 2, 5, 6, 7), (2, 2, 2, 2, 3), dict(padding="same", padding_mode="replicate", dilation=2)),
    ((1, 2, 5, 6, 7), (3, 2, 2, 3, 2), dict(padding="valid", stride=(1, 3, 2), dilation=(2, 1, 2))),
    ((1, 3, 5, 6, 7), (4, 3, 3, 3, 3), dict(padding=(1, 2, 0))),  # zero pads: the cropped correlation
    ((1, 2, 4, 5, 6), (3, 2, 2, 2, 2), dict(padding=(3, 0, 1))),  # zero pads wider than the kernel
    ((2, 3, 4, 5, 19), (10, 3, 2, 2, 3), dict(padding=1, padding_mode="circular")),  # partial blocks
]
DTYPES = [np.float32, np.float64, np.complex64]


def _torch():
    return pytest.importorskip("torch", reason="torch is the optional second oracle")


def torch_gradients(x, w, b, g, stride=1, padding=0, dilation=1, groups=1, padding_mode="zeros"):
    """torch.autograd.grad of torch.nn.Conv3d (float64 / complex128) at (x, w, b) for grad_output g."""
    torch = _torch()
    wide = np.complex128 if np.iscomplexobj(w) else np.float64
    module = torch.nn.Conv3d(w.shape[1] * groups, w.shape[0], w.shape[2:], stride=stride, padding=padding,
                             dilation=dilation, groups=groups, bias=b is not None,
                             padding_mode=padding_mode, dtype=getattr(torch, np.dtype(wide).name))
    with torch.no_grad():
        module.weight.copy_(torch.from_numpy(w.astype(wide)))
        if b is not None:
            module.bias.copy_(torch.from_numpy(b.astype(wide)))
    tx = torch.from_numpy(x.astype(wide)).requires_grad_()
    params = (tx, module.weight) + ((module.bias,) if b is not None else ())
    grads = torch.autograd.grad(module(tx), params, torch.from_numpy(g.astype(wide)))
    return [t.numpy() for t in grads] + ([] if b is not None else [None])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("input_shape, weight_shape, kwargs", CASES)
def test_gradients_match_torch_autograd(input_shape, weight_shape, kwargs, dtype):
    rng = np.random.default_rng(0)
    x, w, b = random_operands(rng, input_shape, weight_shape, True, dtype)
    g = random_operands(rng, conv3d(x, w, **kwargs).shape, weight_shape, False, dtype)[0]
    expected = torch_gradients(x, w, b, g, **kwargs)
    grads = conv3d_backward(x, w, g, **kwargs)
    # ours and torch's float64 each lie within the bound of the exact gradient
    magnitudes = torch_gradients(np.abs(x), np.abs(w), None, np.abs(g), **kwargs)[:2]
    for actual, wanted, bound in zip(grads, expected, gradient_bounds(dtype, w, g, magnitudes, **kwargs)):
        assert actual.dtype == np.dtype(dtype) and actual.flags.c_contiguous
        assert_close(actual, wanted, 2 * bound)
    # the one-gradient functions give the very same bits
    np.testing.assert_array_equal(conv3d_input(x.shape, w, g, **kwargs), grads[0])
    np.testing.assert_array_equal(conv3d_weight(x, w.shape, g, **kwargs), grads[1])
    np.testing.assert_array_equal(conv3d_bias(g), grads[2])


def finite_difference_jacobian_vjp(f, point, g):
    """The vector-Jacobian product vdot(J e_i, g) for every element i of ``point``, each Jacobian column
    by a central difference of ``f`` (exact up to rounding: convolution is linear in each operand)."""
    result = np.empty_like(point)
    step = 0.5
    for i in np.ndindex(point.shape):
        basis = np.zeros_like(point)
        basis[i] = step
        result[i] = np.vdot((f(point + basis) - f(point - basis)) / (2 * step), g)
    return result


@pytest.mark.parametrize("dtype", [np.float64, np.complex128])
@pytest.mark.parametrize("input_shape, weight_shape, kwargs", [
    ((1, 2, 4, 3, 5), (2, 1, 2, 2, 3), dict(groups=2, stride=(2, 1, 2), padding=(1, 2, 2),
                                            padding_mode="reflect")),
    ((2, 3, 4, 5), (2, 2, 3, 2, 2), dict(padding="same", dilation=(1, 2, 1), padding_mode="circular")),
    ((1, 1, 3, 4, 4), (2, 1, 2, 3, 2), dict(stride=(1, 2, 3), padding=2, padding_mode="replicate")),
])
def test_gradients_match_finite_differences_of_the_reference(input_shape, weight_shape, kwargs, dtype):
    rng = np.random.default_rng(1)
    x, w, _ = random_operands(rng, input_shape, weight_shape, False, dtype)
    g = random_operands(rng, conv3d(x, w, **kwargs).shape, weight_shape, False, dtype)[0]
    expected_x = finite_difference_jacobian_vjp(lambda v: conv3d_reference(v, w, **kwargs), x, g)
    expected_w = finite_difference_jacobian_vjp(lambda v: conv3d_reference(x, v, **kwargs), w, g)
    np.testing.assert_allclose(conv3d_input(x.shape, w, g, **kwargs), expected_x, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(conv3d_weight(x, w.shape, g, **kwargs), expected_w, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dtype", [np.float64, np.complex128])
@pytest.mark.parametrize("stride, mode, names", [
    (1, "zeros", ["cropped-correlation", "full-correlation", "gather"]),
    (1, "reflect", ["full-correlation", "gather"]),
    ((2, 1, 3), "zeros", ["stride-phases", "upsampled-correlation", "gather"]),
    ((2, 1, 3), "reflect", ["stride-phases", "upsampled-correlation", "gather"]),
])
def test_every_input_gradient_route_agrees(dtype, stride, mode, names):
    rng = np.random.default_rng(2)
    x, w, b = random_operands(rng, (2, 4, 5, 6, 7), (6, 2, 3, 2, 3), True, dtype)
    kwargs = dict(groups=2, stride=stride, padding=(1, 2, 0), dilation=(1, 2, 1), padding_mode=mode)
    g = conv3d(x, w, **kwargs)
    plan = plan_input_grad("test", x.shape, w, g, **kwargs)
    routes = [(name, run) for name, applies, run in INPUT_GRAD_ALGORITHMS if applies(plan, g)]
    assert [name for name, _ in routes] == names
    bias = b[:4]  # a transposed convolution's bias: one per input channel
    for conjugate in (False, True):
        results = [run(plan, g, w, conjugate, cpu_gradients, bias) for _, run in routes]
        for result in results[1:]:
            np.testing.assert_allclose(result, results[0], rtol=1e-13, atol=1e-13)


def test_any_memory_layout_and_empty_batch():
    rng = np.random.default_rng(3)
    x, w, _ = random_operands(rng, (2, 3, 6, 5, 8), (4, 3, 2, 2, 3), False, np.float32)
    g = conv3d(x, w, stride=2)
    expected = conv3d_backward(x, w, g, stride=2)
    x_view = np.asfortranarray(x[:, :, ::-1])[:, :, ::-1]
    actual = conv3d_backward(x_view, w, np.asfortranarray(g), stride=2)
    for a, b in zip(actual, expected):
        np.testing.assert_array_equal(a, b)
    empty = conv3d_backward(x[:0], w, g[:0], stride=2)
    assert empty[0].shape == x[:0].shape and not empty[1].any() and not empty[2].any()


@pytest.mark.parametrize("stride", [1, 2])
def test_bitwise_equal_for_one_and_two_threads(stride):
    rng = np.random.default_rng(4)
    x, w, _ = random_operands(rng, (2, 8, 7, 9, 20), (8, 4, 3, 3, 3), False, np.float32)
    kwargs = dict(stride=stride, padding=1, groups=2, padding_mode="reflect")
    g = conv3d(x, w, **kwargs)
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = conv3d_backward(x, w, g, **kwargs)
        numba.set_num_threads(min(2, numba.config.NUMBA_NUM_THREADS))
        two = conv3d_backward(x, w, g, **kwargs)
    finally:
        numba.set_num_threads(before)
    for a, b in zip(one, two):
        np.testing.assert_array_equal(a, b)


X = np.zeros((1, 2, 4, 4, 4), np.float32)
W = np.zeros((3, 2, 3, 3, 3), np.float32)
G = np.zeros((1, 3, 2, 2, 2), np.float32)


@pytest.mark.parametrize("call, error, message", [
    (lambda: conv3d_input(X.shape, W, G[:, :, :1]), ValueError,
     r"grad_output must have shape \(1, 3, 2, 2, 2\).*but got grad_output of shape \(1, 3, 1, 2, 2\)"),
    (lambda: conv3d_weight(X, W.shape, G, padding=1), ValueError, r"must have shape \(1, 3, 4, 4, 4\)"),
    (lambda: conv3d_input(X.shape, W, G.astype(np.float64)), TypeError,
     "grad_output dtype float64 does not match weight dtype float32"),
    (lambda: conv3d_input(X.shape, W, G.tolist()), TypeError, "grad_output must be a NumPy array"),
    (lambda: conv3d_weight(X, (3, 2, 3, 3), G), ValueError, "expected weight to have 5 dimensions"),
    (lambda: conv3d_weight(X, W.shape, G, groups=2), ValueError, "groups=2"),
    (lambda: conv3d_input(X.shape, W, G, padding=4, padding_mode="reflect"), ValueError,
     "padding_mode='reflect' needs pads smaller"),
    (lambda: conv3d_input(X.shape, W, G, stride=2, padding="same"), ValueError,
     "padding='same' is not supported for strided"),
    (lambda: conv3d_input(X.shape, W.astype(np.int32), G), TypeError, "weight dtype int32"),
    (lambda: conv3d_bias(G[0, 0]), ValueError, "grad_output to have 4 or 5 dimensions"),
    (lambda: conv3d_backward(X, W.astype(np.float64), G), TypeError, "weight dtype float64 does not"),
])
def test_bad_arguments_raise_before_computing(call, error, message):
    with pytest.raises(error, match=message):
        call()


def test_numpy_training_loop_fits_a_target_convolution():
    rng = np.random.default_rng(5)
    target = Conv3d(2, 3, 3, padding=1, padding_mode="replicate", dtype="float64", rng=6)
    layer = Conv3d(2, 3, 3, padding=1, padding_mode="replicate", dtype="float64", rng=7)
    x = rng.standard_normal((4, 2, 5, 5, 5))
    wanted = target(x)
    losses = []
    for _ in range(60):
        residual = layer(x) - wanted
        losses.append(0.5 * np.mean(residual ** 2))
        layer.backward(residual / residual.size)
        layer.weight -= 0.5 * layer.weight_grad
        layer.bias -= 0.5 * layer.bias_grad
    assert losses[-1] < 1e-3 * losses[0]


def test_conv3d_backward_method_uses_the_last_forward_input():
    rng = np.random.default_rng(8)
    layer = Conv3d(2, 4, 2, stride=2, groups=2, dtype="float64", rng=9)
    x = rng.standard_normal((2, 2, 4, 4, 4))
    g = rng.standard_normal(layer(x).shape)
    grad_input = layer.backward(g)
    expected = conv3d_backward(x, layer.weight, g, stride=2, groups=2)
    np.testing.assert_array_equal(grad_input, expected[0])
    np.testing.assert_array_equal(layer.weight_grad, expected[1])
    np.testing.assert_array_equal(layer.bias_grad, expected[2])
    with pytest.raises(RuntimeError, match="call the layer on an input first"):
        Conv3d(2, 4, 2).backward(g)
