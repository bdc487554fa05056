"""The Conv3d layer: parameters, initialisation, forward, repr."""
import math

import numpy as np
import pytest

from checks import assert_matches_reference
from numba_conv3d import Conv3d, conv3d

# constructor arguments -> the string torch.nn.Conv3d prints for them (checked against torch in
# test_torch.py)
REPRS = [
    ((16, 33, 3), dict(stride=2), "Conv3d(16, 33, kernel_size=(3, 3, 3), stride=(2, 2, 2))"),
    ((16, 33, (3, 5, 2)), dict(stride=(2, 1, 1), padding=(4, 2, 0)),
     "Conv3d(16, 33, kernel_size=(3, 5, 2), stride=(2, 1, 1), padding=(4, 2, 0))"),
    ((4, 8, 3), dict(padding="same", dilation=2, groups=4, bias=False, padding_mode="reflect"),
     "Conv3d(4, 8, kernel_size=(3, 3, 3), stride=(1, 1, 1), padding=same, dilation=(2, 2, 2), "
     "groups=4, bias=False, padding_mode=reflect)"),
    ((2, 2, [1, 2, 3]), dict(padding="valid", padding_mode="circular"),
     "Conv3d(2, 2, kernel_size=(1, 2, 3), stride=(1, 1, 1), padding=valid, padding_mode=circular)"),
]


@pytest.mark.parametrize("args, kwargs, text", REPRS)
def test_repr(args, kwargs, text):
    assert repr(Conv3d(*args, **kwargs)) == text


@pytest.mark.parametrize("dtype", [None, "float64", np.complex64, np.dtype("complex128")])
def test_parameters_shape_dtype_and_bounds(dtype):
    layer = Conv3d(6, 4, (2, 3, 4), groups=2, dtype=dtype, rng=0)
    expected = np.dtype(np.float32 if dtype is None else dtype)
    assert layer.weight.shape == (4, 3, 2, 3, 4) and layer.weight.dtype == expected
    assert layer.bias.shape == (4,) and layer.bias.dtype == expected
    bound = 1 / math.sqrt(3 * 2 * 3 * 4)
    for param in (layer.weight, layer.bias):
        assert np.all(np.abs(param.real) <= bound) and np.all(np.abs(param.imag) <= bound)


def test_initialisation_is_uniform_on_the_torch_interval():
    layer = Conv3d(8, 64, 3, rng=1)
    bound = 1 / math.sqrt(8 * 27)
    w = layer.weight.ravel() / bound
    assert w.min() >= -1 and w.max() <= 1
    counts, _ = np.histogram(w, bins=10, range=(-1, 1))
    expected = w.size / 10
    assert np.all(np.abs(counts - expected) < 5 * math.sqrt(expected))


def test_seeded_initialisation_repeats_and_reset_redraws():
    a, b = Conv3d(2, 3, 3, rng=7), Conv3d(2, 3, 3, rng=7)
    np.testing.assert_array_equal(a.weight, b.weight)
    np.testing.assert_array_equal(a.bias, b.bias)
    before = a.weight.copy()
    a.reset_parameters(rng=8)
    assert not np.array_equal(before, a.weight)
    a.reset_parameters(rng=np.random.default_rng(7))
    np.testing.assert_array_equal(a.weight, b.weight)


def test_no_bias():
    layer = Conv3d(2, 3, 3, bias=False)
    assert layer.bias is None
    x = np.ones((1, 2, 3, 3, 3), np.float32)
    np.testing.assert_array_equal(layer(x), conv3d(x, layer.weight))


@pytest.mark.parametrize("mode", ["zeros", "reflect", "replicate", "circular"])
def test_forward_is_conv3d_with_the_layer_arguments(mode):
    layer = Conv3d(4, 6, (2, 3, 4), padding="same", dilation=(1, 2, 1), groups=2, padding_mode=mode,
                   dtype="float64", rng=3)
    x = np.random.default_rng(4).standard_normal((2, 4, 5, 6, 7))
    out = layer.forward(x)
    np.testing.assert_array_equal(out, layer(x))
    assert out.shape == (2, 6, 5, 6, 7)
    assert_matches_reference(out, x, layer.weight, layer.bias, padding="same", dilation=(1, 2, 1),
                             groups=2, padding_mode=mode)
    np.testing.assert_array_equal(layer(x[0]), out[0])


def test_attributes_are_normalized():
    layer = Conv3d(2, 4, 3, stride=(1, 2, 3), padding=1, dilation=2)
    assert layer.kernel_size == (3, 3, 3) and layer.stride == (1, 2, 3)
    assert layer.padding == (1, 1, 1) and layer.dilation == (2, 2, 2)
    assert layer.padding_mode == "zeros" and layer.groups == 1
    assert layer.extra_repr() in repr(layer)
