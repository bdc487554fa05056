"""The weight gradient by Winograd F(3, 2) (``cpu/winograd_weight_grad.py``) against the float64
reference within its rounding bound (``checks.winograd_weight_grad_bound``): padding modes, groups,
3x3x3 and 1x3x3 kernels, odd and 1-deep extents, batches, several passes of tiles; NaN and Inf hand the
gradient back to the other routes; bitwise the same for 1 and 2 threads; where the gradient routes take
it."""
import numpy as np
import pytest

from checks import (MODES, assert_bitwise_for_one_and_two_threads, pads_fit, route_weight_grad,
                    weight_grad_operands, winograd_weight_grad_bound)
from numba_conv3d import conv3d_weight, plan_conv3d
from numba_conv3d.cpu import gradients, winograd_weight_grad
from reference import weight_gradient_reference

CASES = [
    ((2, 8, 4, 5, 6), (6, 8, 3, 3, 3), {"padding": 1}),
    ((1, 12, 5, 7, 9), (10, 6, 3, 3, 3), {"padding": 1, "groups": 2}),
    ((1, 9, 6, 7, 5), (7, 9, 3, 3, 3), {"padding": (0, 2, 1)}),
    ((3, 5, 1, 1, 9), (7, 5, 3, 3, 3), {"padding": 1}),
    ((2, 6, 3, 9, 8), (8, 6, 1, 3, 3), {"padding": (0, 1, 1)}),
    ((1, 8, 2, 5, 7), (12, 4, 1, 3, 3), {"padding": (0, 1, 0), "groups": 2}),
]


def _gradient(x, g, w_shape, kwargs):
    return route_weight_grad(winograd_weight_grad, x, g, w_shape, kwargs)


def _assert_within_bound(result, x, g, w_shape, kwargs):
    exact = weight_gradient_reference(x, w_shape, g, **kwargs)
    bound = winograd_weight_grad_bound(result.dtype, x, g, w_shape, **kwargs)
    assert np.all(np.abs(result - exact) <= bound)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("x_shape, w_shape, kwargs, mode", [
    (x_shape, w_shape, kwargs, mode) for x_shape, w_shape, kwargs in CASES for mode in MODES
    if pads_fit(x_shape, kwargs, mode)])
def test_matches_reference(x_shape, w_shape, kwargs, mode, dtype):
    rng = np.random.default_rng(sum(x_shape) + 3 * sum(w_shape))
    kwargs = dict(kwargs, padding_mode=mode)
    x, g = weight_grad_operands(rng, x_shape, w_shape, kwargs, dtype)
    result = _gradient(x, g, w_shape, kwargs)
    assert result.dtype == dtype and result.shape == w_shape
    _assert_within_bound(result, x, g, w_shape, kwargs)


@pytest.mark.parametrize("x_shape", [(2, 6, 4, 7, 9), (1, 6, 4, 7, 9)])
def test_passes_of_tiles_add_up(monkeypatch, x_shape):
    # passes of 16 tiles: over 2 samples' 40 tiles each (the third pass spans both), and over 40 tiles
    # (the last pass half full)
    monkeypatch.setattr(winograd_weight_grad, "_PASS_MOST_TILES", 16)
    monkeypatch.setattr(winograd_weight_grad, "_PASS_FEWEST_TILES", 16)
    rng = np.random.default_rng(4)
    kwargs = {"padding": 1}
    x, g = weight_grad_operands(rng, x_shape, (5, 6, 3, 3, 3), kwargs, np.float32)
    assert winograd_weight_grad._pass_tiles(40 * x_shape[0], 64, 6, 5, 1, 4) == 16
    _assert_within_bound(_gradient(x, g, (5, 6, 3, 3, 3), kwargs), x, g, (5, 6, 3, 3, 3), kwargs)


def test_large_dynamic_range_stays_within_the_bound():
    rng = np.random.default_rng(5)
    kwargs = {"padding": 1}
    x, g = weight_grad_operands(rng, (1, 8, 6, 6, 6), (8, 8, 3, 3, 3), kwargs, np.float32)
    x *= np.float32(10.0) ** rng.integers(-6, 7, x.shape).astype(np.float32)
    g *= np.float32(10.0) ** rng.integers(-6, 7, g.shape).astype(np.float32)
    _assert_within_bound(_gradient(x, g, (8, 8, 3, 3, 3), kwargs), x, g, (8, 8, 3, 3, 3), kwargs)


@pytest.mark.parametrize("where", ["input", "grad"])
def test_a_nonfinite_weight_hands_the_gradient_back(monkeypatch, where):
    rng = np.random.default_rng(6)
    x, g = weight_grad_operands(rng, (1, 128, 4, 12, 16), (128, 128, 3, 3, 3), {"padding": 1}, np.float32)
    (x if where == "input" else g)[0, 3, 1, 2, 3] = np.inf
    assert _gradient(x, g, (128, 128, 3, 3, 3), {"padding": 1}) is None
    plan = plan_conv3d(x.shape, (128, 128, 3, 3, 3), padding=1)
    assert winograd_weight_grad.preferred(plan)
    through_routes = conv3d_weight(x, (128, 128, 3, 3, 3), g, padding=1)
    monkeypatch.setattr(winograd_weight_grad, "preferred", lambda plan: False)
    np.testing.assert_array_equal(through_routes, gradients.weight_gradient(plan, x, g))


def test_through_conv3d_weight():
    rng = np.random.default_rng(8)
    kwargs = {"padding": 1}
    x, g = weight_grad_operands(rng, (1, 128, 4, 12, 16), (128, 128, 3, 3, 3), kwargs, np.float32)
    assert winograd_weight_grad.preferred(plan_conv3d(x.shape, (128, 128, 3, 3, 3), **kwargs))
    _assert_within_bound(conv3d_weight(x, (128, 128, 3, 3, 3), g, **kwargs), x, g, (128, 128, 3, 3, 3),
                         kwargs)


def test_bitwise_the_same_for_one_and_two_threads():
    rng = np.random.default_rng(7)
    x, g = weight_grad_operands(rng, (2, 24, 3, 6, 5), (48, 24, 3, 3, 3), {"padding": 1}, np.float32)
    assert_bitwise_for_one_and_two_threads(lambda: _gradient(x, g, (48, 24, 3, 3, 3), {"padding": 1}))


@pytest.mark.parametrize("x_shape, w_shape, kwargs, expected", [
    ((1, 128, 8, 28, 28), (128, 128, 3, 3, 3), {"padding": 1}, True),
    ((1, 256, 16, 14, 14), (256, 256, 1, 3, 3), {"padding": (0, 1, 1)}, True),
    ((2, 256, 4, 14, 14), (256, 128, 3, 3, 3), {"padding": 1, "groups": 2}, True),  # 2 x 98 tiles
    ((1, 256, 8, 28, 28), (256, 64, 3, 3, 3), {"padding": 1, "groups": 4}, False),  # 64 a group
    ((1, 512, 4, 14, 14), (512, 512, 3, 3, 3), {"padding": 1}, True),  # 98 tiles
    ((2, 256, 4, 8, 8), (256, 256, 3, 3, 3), {"padding": 1}, False),  # 64 tiles
    ((1, 512, 2, 7, 7), (512, 512, 3, 3, 3), {"padding": 1}, False),  # 16 tiles
    ((1, 64, 16, 56, 56), (64, 64, 3, 3, 3), {"padding": 1}, False),  # 64 channels
    ((1, 128, 8, 28, 28), (128, 128, 3, 3, 3), {"padding": 1, "stride": 2}, False),
    ((1, 128, 8, 28, 28), (128, 128, 3, 3, 3), {"padding": 2, "dilation": 2}, False),
    ((1, 128, 8, 28, 28), (128, 128, 5, 5, 5), {"padding": 2}, False),
])
def test_where_the_gradient_routes_take_it(x_shape, w_shape, kwargs, expected):
    assert winograd_weight_grad.preferred(plan_conv3d(x_shape, w_shape, **kwargs)) is expected
