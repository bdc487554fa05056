"""conv_transpose3d and ConvTranspose3d against torch, the adjoint identity with conv3d, and the rules."""
import math

import numpy as np
import pytest

from checks import assert_close, random_operands
from numba_conv3d import conv3d
from numba_conv3d.transposed import ConvTranspose3d, conv_transpose3d

# (input shape, weight shape, conv_transpose3d keyword arguments)
CASES = [
    ((2, 4, 3, 4, 5), (4, 3, 3, 2, 3), dict(groups=2, stride=(2, 1, 3), padding=(1, 0, 1),
                                            dilation=(1, 2, 1), output_padding=(1, 1, 0))),
    ((4, 3, 4, 5), (4, 3, 3, 2, 3), dict(dilation=2, output_padding=1)),  # output_padding >= stride
    ((1, 6, 3, 3, 4), (6, 1, 3, 3, 3), dict(groups=6, stride=2, padding=1)),  # depthwise
    ((1, 3, 4, 3, 5), (3, 2, 2, 3, 1), dict(padding=(1, 1, 0))),
]
DTYPES = [np.float32, np.float64, np.complex64]


def _torch():
    return pytest.importorskip("torch", reason="torch is the optional second oracle")


def torch_conv_transpose3d(x, w, b, **kwargs):
    """torch.nn.functional.conv_transpose3d in float64 (complex128) and of |x|, |w|, |b| (the magnitude
    of every term, for the rounding bound)."""
    torch = _torch()
    wide = np.complex128 if np.iscomplexobj(w) else np.float64

    def run(x, w, b):
        return torch.nn.functional.conv_transpose3d(
            torch.from_numpy(x.astype(wide)), torch.from_numpy(w.astype(wide)),
            None if b is None else torch.from_numpy(b.astype(wide)), **kwargs).numpy()

    magnitude = run(np.abs(x), np.abs(w), None if b is None else np.abs(b)).real
    return run(x, w, b), magnitude


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("input_shape, weight_shape, kwargs", CASES)
def test_matches_torch_functional(input_shape, weight_shape, kwargs, bias, dtype):
    rng = np.random.default_rng(0)
    x, w, _ = random_operands(rng, input_shape, weight_shape, False, dtype)
    b = random_operands(rng, (1,), (weight_shape[1] * kwargs.get("groups", 1),), True, dtype)[2] if bias \
        else None
    expected, magnitude = torch_conv_transpose3d(x, w, b, **kwargs)
    actual = conv_transpose3d(x, w, b, **kwargs)
    assert actual.dtype == np.dtype(dtype) and actual.flags.c_contiguous
    terms = weight_shape[0] // kwargs.get("groups", 1) * math.prod(weight_shape[2:]) + bias
    eps = np.finfo(dtype).eps * (2 if np.dtype(dtype).kind == "c" else 1)
    assert_close(actual, expected, 2 * (terms + 2) * eps * magnitude + np.finfo(dtype).tiny)


def test_is_the_adjoint_of_conv3d():
    """<conv_transpose3d(y, w), x> == <y, conv3d(x, w)>, without torch."""
    rng = np.random.default_rng(1)
    kwargs = dict(stride=(2, 3, 1), padding=(1, 0, 2), dilation=(1, 1, 2), groups=2)
    x, w, _ = random_operands(rng, (2, 4, 8, 8, 6), (6, 2, 3, 2, 3), False, np.float64)
    y = rng.standard_normal(conv3d(x, w, **kwargs).shape)
    transposed = conv_transpose3d(y, w, output_padding=(1, 0, 0), **kwargs)
    assert transposed.shape == x.shape
    np.testing.assert_allclose(np.vdot(transposed, x), np.vdot(y, conv3d(x, w, **kwargs)), rtol=1e-12)


def test_empty_batch_gives_the_bias():
    x = np.zeros((0, 2, 3, 3, 3), np.float32)
    out = conv_transpose3d(x, np.ones((2, 4, 2, 2, 2), np.float32), np.ones(4, np.float32), stride=2)
    assert out.shape == (0, 4, 6, 6, 6)


REPRS = [
    ((16, 33, 3), dict(stride=2), "ConvTranspose3d(16, 33, kernel_size=(3, 3, 3), stride=(2, 2, 2))"),
    ((4, 8, (3, 5, 2)), dict(stride=(2, 1, 1), padding=(4, 2, 0), output_padding=(1, 0, 0), groups=2,
                             bias=False, dilation=(1, 2, 1)),
     "ConvTranspose3d(4, 8, kernel_size=(3, 5, 2), stride=(2, 1, 1), padding=(4, 2, 0), "
     "dilation=(1, 2, 1), output_padding=(1, 0, 0), groups=2, bias=False)"),
]


@pytest.mark.parametrize("args, kwargs, text", REPRS)
def test_repr_is_torch_repr(args, kwargs, text):
    assert repr(ConvTranspose3d(*args, **kwargs)) == text
    torch = pytest.importorskip("torch")
    assert repr(torch.nn.ConvTranspose3d(*args, **kwargs)) == text


def test_parameters_shape_dtype_and_torch_bounds():
    layer = ConvTranspose3d(6, 4, (2, 3, 4), groups=2, dtype="complex64", rng=0)
    assert layer.weight.shape == (6, 2, 2, 3, 4) and layer.weight.dtype == np.complex64
    bound = 1 / math.sqrt(2 * 2 * 3 * 4)  # torch's fan_in of a transposed weight: weight.shape[1] * prod(K)
    for param in (layer.weight, layer.bias):
        assert np.all(np.abs(param.real) <= bound) and np.all(np.abs(param.imag) <= bound)
        assert np.abs(param.real).max() > 0.8 * bound


@pytest.mark.parametrize("output_size", [(6, 8, 10), (1, 6, 5, 7, 12), [6, 7, 11]])
def test_layer_matches_torch_module_with_output_size(output_size):
    torch = _torch()
    layer = ConvTranspose3d(4, 6, 3, stride=(2, 2, 3), padding=1, groups=2, dtype="float64", rng=0)
    module = torch.nn.ConvTranspose3d(4, 6, 3, stride=(2, 2, 3), padding=1, groups=2, dtype=torch.float64)
    with torch.no_grad():
        module.weight.copy_(torch.from_numpy(layer.weight))
        module.bias.copy_(torch.from_numpy(layer.bias))
    x = np.random.default_rng(1).standard_normal((1, 4, 3, 4, 4))
    expected = module(torch.from_numpy(x), output_size=output_size).detach().numpy()
    np.testing.assert_allclose(layer(x, output_size=output_size), expected, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(layer(x[0], output_size=output_size[-3:])[None], expected, rtol=1e-12,
                               atol=1e-12)


X = np.zeros((1, 4, 3, 3, 3), np.float32)
W = np.zeros((4, 2, 3, 3, 3), np.float32)


@pytest.mark.parametrize("call, error, message", [
    (lambda: conv_transpose3d(X, W, stride=2, output_padding=2), ValueError,
     r"output_padding must be smaller than either stride or dilation.*\(2, 2, 2\)"),
    (lambda: conv_transpose3d(X, W, padding=3), ValueError, r"output extents \(-1, -1, -1\).*too small"),
    (lambda: conv_transpose3d(X[:, :3], W), ValueError, "expects input with 4 channels"),
    (lambda: conv_transpose3d(X, W, groups=3), ValueError, "groups=3 must divide the input channels"),
    (lambda: conv_transpose3d(X, W, padding="same"), TypeError, "padding must be an int"),
    (lambda: conv_transpose3d(X, W, np.zeros(3, np.float32)), ValueError, r"expected bias of shape \(2,\)"),
    (lambda: conv_transpose3d(X, W.astype(np.float64)), TypeError, "weight dtype float64 does not match"),
    (lambda: conv_transpose3d(X[0, 0], W), ValueError, "expected input of 4 or 5 dimensions"),
    (lambda: ConvTranspose3d(4, 4, 3, padding_mode="reflect"), ValueError, "only padding_mode='zeros'"),
    (lambda: ConvTranspose3d(4, 6, 3, groups=4), ValueError, "out_channels must be divisible by groups"),
    (lambda: ConvTranspose3d(4, 2, 3, stride=2)(X, output_size=(9, 7, 7)), ValueError,
     r"requested an output size of \(9, 7, 7\), but valid sizes range from \(7, 7, 7\) to \(8, 8, 8\)"),
    (lambda: ConvTranspose3d(4, 2, 3)(X, output_size=(5, 5)), ValueError, "output_size must have 3 or 5"),
])
def test_bad_arguments_raise_before_computing(call, error, message):
    with pytest.raises(error, match=message):
        call()
