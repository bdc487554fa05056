"""The weight gradient vectorized over output channels (``cpu/channel_weight_grad.py``) against the
float64 reference over padding modes, strides, dilations, groups, channel counts that leave blocks
partly empty and odd extents; NaN and Inf where the definition puts them; bitwise the same for 1 and 2
threads; and where the gradient routes take it."""
import numpy as np
import pytest

from checks import (MODES, assert_bitwise_for_one_and_two_threads, pads_fit, route_weight_grad,
                    weight_grad_operands)
from numba_conv3d import conv3d_weight, plan_conv3d
from numba_conv3d.cpu import channel_weight_grad
from numba_conv3d.cpu.tasks import tasks_wanted
from reference import weight_gradient_reference

CASES = [
    ((2, 8, 4, 5, 6), (6, 8, 3, 3, 3), {"padding": 1}),
    ((1, 12, 3, 7, 7), (40, 6, 3, 3, 3), {"padding": 1, "groups": 2}),
    ((1, 9, 5, 6, 7), (33, 9, 3, 2, 3), {"padding": (1, 0, 2), "stride": (1, 2, 1), "dilation": (2, 1, 1)}),
    ((1, 16, 4, 8, 8), (32, 16, 5, 5, 5), {"padding": 2}),
    ((3, 5, 1, 1, 9), (7, 5, 3, 3, 3), {"padding": 1}),
    ((1, 4, 6, 5, 9), (4, 4, 3, 3, 3), {"padding": 1, "stride": 2}),
    ((2, 6, 2, 3, 4), (6, 2, 1, 3, 3), {"padding": (0, 1, 1), "groups": 3}),
    ((1, 3, 5, 6, 7), (5, 3, 2, 3, 2), {"padding": (2, 1, 1), "stride": (2, 2, 3), "dilation": (1, 2, 1)}),
    # pads along D only, 8 channels a group: zero pads read from the input as it is
    ((2, 16, 5, 4, 6), (24, 16, 3, 1, 1), {"padding": (1, 0, 0)}),
    ((1, 16, 7, 3, 5), (16, 8, 3, 1, 1), {"padding": (2, 0, 0), "dilation": (2, 1, 1), "stride": (2, 1, 1),
                                          "groups": 2}),
]


def _gradient(x, g, w_shape, kwargs):
    return route_weight_grad(channel_weight_grad, x, g, w_shape, kwargs)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("x_shape, w_shape, kwargs, mode", [
    (x_shape, w_shape, kwargs, mode) for x_shape, w_shape, kwargs in CASES for mode in MODES
    if pads_fit(x_shape, kwargs, mode)])
def test_matches_reference(x_shape, w_shape, kwargs, mode, dtype):
    rng = np.random.default_rng(sum(x_shape) + 2 * sum(w_shape))
    kwargs = dict(kwargs, padding_mode=mode)
    x, g = weight_grad_operands(rng, x_shape, w_shape, kwargs, dtype)
    result = _gradient(x, g, w_shape, kwargs)
    assert result.dtype == dtype and result.shape == w_shape
    exact = weight_gradient_reference(x, w_shape, g, **kwargs)
    magnitudes = weight_gradient_reference(np.abs(x), w_shape, np.abs(g), **kwargs)
    length = g.shape[0] * int(np.prod(g.shape[2:]))
    assert np.all(np.abs(result - exact) <= (length + 2) * np.finfo(dtype).eps * magnitudes)


def test_nan_and_inf_reach_every_tap_that_reads_them():
    rng = np.random.default_rng(9)
    x, g = weight_grad_operands(rng, (1, 3, 4, 5, 5), (40, 3, 3, 3, 3), {"padding": 1}, np.float64)
    g[0, 1, 0, 0, 0] = np.inf  # times the padding it reads at the corner: NaN
    x[0, 2, 3, 4, 4] = np.nan
    result = _gradient(x, g, (40, 3, 3, 3, 3), {"padding": 1})
    expected = weight_gradient_reference(x, (40, 3, 3, 3, 3), g, padding=1)
    np.testing.assert_array_equal(np.isnan(result), np.isnan(expected))
    np.testing.assert_array_equal(np.isinf(result), np.isinf(expected))


def test_bitwise_the_same_for_one_and_two_threads():
    rng = np.random.default_rng(7)
    x, g = weight_grad_operands(rng, (2, 24, 3, 6, 5), (48, 24, 3, 3, 3), {"padding": 1}, np.float32)
    assert_bitwise_for_one_and_two_threads(lambda: _gradient(x, g, (48, 24, 3, 3, 3), {"padding": 1}))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_wide_and_narrow_register_blocks_give_the_same_bits(monkeypatch, dtype):
    rng = np.random.default_rng(11)
    kwargs = {"padding": (1, 1, 0), "stride": (1, 2, 1)}
    x, g = weight_grad_operands(rng, (2, 13, 3, 7, 6), (64, 13, 3, 3, 2), kwargs, dtype)
    results = []
    for shape in [(channel_weight_grad.COLUMNS, channel_weight_grad.VECTORS),
                  (channel_weight_grad.WIDE_COLUMNS, channel_weight_grad.WIDE_VECTORS)]:
        monkeypatch.setattr(channel_weight_grad, "block_shape", lambda out, itemsize, shape=shape: shape)
        results.append(_gradient(x, g, (64, 13, 3, 3, 2), kwargs))
    np.testing.assert_array_equal(results[0], results[1])
    exact = weight_gradient_reference(x, (64, 13, 3, 3, 2), g, **kwargs)
    magnitudes = weight_gradient_reference(np.abs(x), (64, 13, 3, 3, 2), np.abs(g), **kwargs)
    length = g.shape[0] * int(np.prod(g.shape[2:]))
    assert np.all(np.abs(results[1] - exact) <= (length + 2) * np.finfo(dtype).eps * magnitudes)


@pytest.mark.parametrize("out_channels, wide", [(128, True), (256, True), (230, True), (64, False),
                                                (96, False), (32, False), (460, False)])
def test_wide_blocks_where_output_channels_fill_them(out_channels, wide):
    shape = channel_weight_grad.block_shape(out_channels, 4)
    narrow = (channel_weight_grad.COLUMNS, channel_weight_grad.VECTORS)
    if channel_weight_grad.WIDE_VECTORS == channel_weight_grad.VECTORS:
        pytest.skip("one register block shape with this vector width")
    assert shape == ((channel_weight_grad.WIDE_COLUMNS, channel_weight_grad.WIDE_VECTORS) if wide else narrow)


@pytest.mark.parametrize("out_blocks, units", [(5, 72), (9, 72), (4, 72), (16, 288), (1, 54), (7, 3), (5, 1)])
@pytest.mark.parametrize("input_bytes, grad_bytes", [(14e6, 32e6), (14e6, 6e6)])
def test_tasks_take_equal_ranges_of_output_blocks(out_blocks, units, input_bytes, grad_bytes):
    out_splits, unit_splits = channel_weight_grad.task_splits(out_blocks, units, 1, input_bytes, grad_bytes)
    assert out_blocks % out_splits == 0 and unit_splits <= units
    assert out_splits * unit_splits >= min(tasks_wanted(), out_blocks * units)


@pytest.mark.parametrize("x_shape, w_shape, kwargs, expected", [
    ((1, 64, 16, 56, 56), (64, 64, 3, 3, 3), {"padding": 1}, True),
    ((1, 144, 16, 56, 56), (64, 144, 3, 1, 1), {"padding": (1, 0, 0)}, True),
    ((1, 16, 32, 64, 64), (32, 16, 2, 2, 2), {"stride": 2}, True),
    ((1, 16, 32, 32, 32), (16, 16, 3, 3, 3), {"padding": 1}, False),  # 16 output channels
    ((1, 3, 16, 112, 112), (64, 3, 3, 7, 7), {"padding": (1, 3, 3)}, False),  # 3 input channels
    ((1, 54, 13, 40, 40), (54, 1, 3, 3, 3), {"padding": 1, "groups": 54}, False),  # depthwise
    ((1, 64, 16, 56, 56), (128, 64, 1, 1, 1), {}, False),  # one tap
    ((1, 256, 2, 4, 4), (256, 256, 5, 5, 5), {"padding": 2}, False),  # 32 output positions
    ((1, 64, 16, 32, 32), (64, 64, 3, 3, 3), {"padding": 1, "dtype": "complex64"}, False),
])
def test_where_the_weight_gradient_takes_it(x_shape, w_shape, kwargs, expected):
    assert channel_weight_grad.preferred(plan_conv3d(x_shape, w_shape, **kwargs)) == expected


def test_conv3d_weight_takes_it_where_preferred(monkeypatch):
    rng = np.random.default_rng(3)
    x, g = weight_grad_operands(rng, (1, 16, 4, 6, 7), (32, 16, 3, 3, 3), {"padding": 1}, np.float32)
    assert channel_weight_grad.preferred(plan_conv3d(x.shape, (32, 16, 3, 3, 3), padding=1))
    calls = []
    weight_grad = channel_weight_grad.weight_grad
    monkeypatch.setattr(channel_weight_grad, "weight_grad", lambda *a: calls.append(1) or weight_grad(*a))
    result = conv3d_weight(x, (32, 16, 3, 3, 3), g, padding=1)
    assert calls
    exact = weight_gradient_reference(x, (32, 16, 3, 3, 3), g, padding=1)
    magnitudes = weight_gradient_reference(np.abs(x), (32, 16, 3, 3, 3), np.abs(g), padding=1)
    assert np.all(np.abs(result - exact) <= (168 + 2) * np.finfo(np.float32).eps * magnitudes)
