"""FFT convolution on the CPU: its rounding bound over every padding mode, groups, dilation, extents
and tilings, NaN and Inf as the direct sums give them, determinism, its error against scipy's, and
where the planner takes it."""
import numba
import numpy as np
import pytest

from checks import (assert_forced_algorithm_within, assert_matches_fft_bound,
                    assert_nonfinite_as_direct_sums, direct_fallback, fft_rounding_bound, random_operands,
                    spread_dynamic_range)
from numba_conv3d import Conv3d, conv3d, conv3d_input, conv_transpose3d, plan_conv3d
from numba_conv3d.crossovers import FFT_MAX_WORKSPACE_BYTES
from numba_conv3d.cpu import fft
from reference import conv3d_reference

MODES = ["zeros", "reflect", "replicate", "circular"]

SHAPES = [
    ((1, 1, 20, 21, 22), (1, 1, 7, 5, 6), {"padding": 3}),
    ((2, 4, 9, 10, 11), (6, 2, 3, 4, 5), {"padding": "same", "groups": 2}),
    ((1, 3, 12, 13, 14), (2, 3, 3, 3, 3), {"padding": (2, 1, 0), "dilation": (2, 1, 3)}),
    ((1, 2, 30, 8, 9), (3, 2, 5, 3, 1), {"padding": (1, 2, 0)}),
    ((3, 1, 1, 9), (2, 3, 1, 5, 5), {"padding": 2}),
    ((1, 2, 1, 1, 17), (4, 2, 1, 1, 9), {"padding": 4}),
    ((0, 2, 8, 8, 8), (2, 2, 5, 5, 5), {"padding": 2}),
]


def _pads_fit(x_shape, w_shape, kwargs, mode):
    """Whether ``mode`` takes the case's pads (reflect needs pads smaller than the extent, circular no
    larger)."""
    plan = plan_conv3d(x_shape, w_shape, **kwargs)
    room = {"reflect": 1, "circular": 0}.get(mode)
    return room is None or all(max(p) + room <= n for p, n in zip(plan.pads, plan.input_size))


@pytest.fixture(params=[(1, 1, 1), (2, 3, 1), (3, 1, 4)], ids=lambda tiles: "x".join(map(str, tiles)))
def tiles(request, monkeypatch):
    """Run the FFT with this many tiles per dimension (as many as the output has where fewer), not the
    tiling the estimate picks, so that tile edges fall inside and at the edge of the output."""
    def forced(plan):
        extents = [d * (k - 1) + 1 for k, d in zip(plan.kernel_size, plan.dilation)]
        tile = tuple(-(-o // min(t, o)) if o else 1 for o, t in zip(plan.output_size, request.param))
        counts = tuple(-(-o // t) for o, t in zip(plan.output_size, tile))
        return tuple(t + e - 1 for t, e in zip(tile, extents)), tile, counts

    monkeypatch.setattr(fft, "tiling", forced)
    return request.param


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("x_shape, w_shape, kwargs, mode", [
    (x_shape, w_shape, kwargs, mode) for x_shape, w_shape, kwargs in SHAPES for mode in MODES
    if _pads_fit(x_shape, w_shape, kwargs, mode)])
def test_matches_reference_within_its_bound(x_shape, w_shape, kwargs, mode, dtype, tiles):
    assert_forced_algorithm_within("fft", assert_matches_fft_bound, x_shape, w_shape, kwargs, mode,
                                   dtype)


def test_the_bound_is_not_loose_by_orders_of_magnitude_on_random_data():
    x, w, b = random_operands(np.random.default_rng(1), (1, 1, 24, 24, 24), (1, 1, 9, 9, 9), True,
                              np.float32)
    out = conv3d(x, w, b, padding=4, algorithm="fft")
    error = np.abs(out - conv3d_reference(x, w, b, padding=4))
    bound = fft_rounding_bound(np.float32, x, w, b, padding=4)
    assert 1e-4 < error.max() / bound.min() < 1


def test_large_dynamic_range_within_its_bound():
    rng = np.random.default_rng(3)
    x, w, b = random_operands(rng, (1, 3, 12, 11, 13), (4, 3, 5, 5, 5), True, np.float32)
    spread_dynamic_range(rng, x, w)
    assert_matches_fft_bound(conv3d(x, w, b, padding=2, algorithm="fft"), x, w, b, padding=2)


@pytest.mark.parametrize("mode", MODES)
def test_nan_and_inf_as_the_direct_sums_give_them(mode):
    rng = np.random.default_rng(4)
    x, w, b = random_operands(rng, (2, 3, 14, 12, 15), (4, 3, 5, 5, 5), True, np.float32)
    x[0, 1, 2, 3, 4], x[1, 2, 13, 0, 0], x[1, 0, 6, 5, 8] = np.inf, -np.inf, np.nan
    w[3, 2, 1, 1, 1] = 0  # 0 * Inf is NaN in the direct sums too
    assert_nonfinite_as_direct_sums("fft", x, w, b, padding=2, padding_mode=mode)


def test_overflow_in_the_transforms_falls_back_to_direct_sums():
    # The spectrum's zero frequency sums the whole tile: 64 values of 1e37 overflow float32 there,
    # while every direct sum (one value times a weight of 1e-6) stays finite.
    x = np.zeros((1, 1, 8, 8, 8), np.float32)
    x[0, 0, ::2, ::2, ::2] = 1e37
    w = np.full((1, 1, 5, 5, 5), 1e-6, np.float32)
    out = conv3d(x, w, algorithm="fft")
    assert np.isfinite(out).all()
    np.testing.assert_array_equal(out, direct_fallback(x, w))


def test_bitwise_for_any_thread_count():
    x, w, b = random_operands(np.random.default_rng(5), (2, 4, 30, 20, 25), (6, 2, 7, 7, 7), True,
                              np.float32)
    kwargs = {"padding": 3, "groups": 2, "padding_mode": "replicate", "algorithm": "fft"}
    first = conv3d(x, w, b, **kwargs)
    threads = numba.get_num_threads()
    try:
        for count in range(1, numba.config.NUMBA_NUM_THREADS + 1):
            numba.set_num_threads(count)
            np.testing.assert_array_equal(first, conv3d(x, w, b, **kwargs))
    finally:
        numba.set_num_threads(threads)


def test_error_at_most_4x_scipys_float32_error():
    signal = pytest.importorskip("scipy.signal")
    rng = np.random.default_rng(6)
    for size, k, mode, numpy_mode in ((40, 15, "reflect", "reflect"), (36, 21, "replicate", "edge"),
                                      (33, 31, "zeros", "constant")):
        x = rng.standard_normal((1, 1, size, size + 3, size + 5)).astype(np.float32)
        w = rng.standard_normal((1, 1, k, k, k)).astype(np.float32)
        expected = conv3d_reference(x, w, padding=k // 2, padding_mode=mode)[0, 0]
        ours = conv3d(x, w, padding=k // 2, padding_mode=mode, algorithm="fft")[0, 0]
        padded = np.pad(x[0, 0], k // 2, mode=numpy_mode)
        theirs = signal.fftconvolve(padded, w[0, 0, ::-1, ::-1, ::-1], mode="valid")
        assert theirs.dtype == np.float32
        assert np.abs(ours - expected).max() <= 4 * np.abs(theirs - expected).max()


def test_serves_real_dtypes_at_unit_stride():
    x = np.zeros((1, 2, 9, 9, 9), np.float32)
    w = np.zeros((2, 2, 5, 5, 5), np.float32)
    assert "fft" in serving_names(x, w, padding=2, dilation=(1, 2, 1))
    assert "fft" not in serving_names(x, w, stride=(1, 1, 2))
    assert "fft" not in serving_names(x.astype(np.complex64), w.astype(np.complex64))
    with pytest.raises(ValueError, match="algorithm 'fft' does not serve"):
        conv3d(x, w, stride=2, algorithm="fft")


def serving_names(x, w, **kwargs):
    from checks import serving_algorithms
    return serving_algorithms(x, w, **kwargs)


@pytest.mark.parametrize("size, kernel, channels, expected", [
    (64, 15, 1, True), (128, 31, 1, True), (64, 11, 1, True), (64, 5, 1, False), (32, 3, 1, False),
    (32, 3, 32, False), (16, 5, 32, False), (64, 7, 16, True)])
def test_planner_takes_it_for_large_kernels(size, kernel, channels, expected):
    plan = plan_conv3d((1, channels, size, size, size), (channels, channels) + (kernel,) * 3,
                       padding="same")
    assert (plan.algorithm == "fft") == expected, plan.algorithm


def test_memory_stays_bounded_on_a_large_volume():
    plan = plan_conv3d((1, 1, 256, 256, 256), (1, 1, 31, 31, 31), padding=15)
    assert plan.algorithm == "fft"
    assert plan.workspace_bytes == fft.workspace_bytes(plan) <= FFT_MAX_WORKSPACE_BYTES <= 256 * 2 ** 20
    fft_shape, tile, tiles = fft.tiling(plan)
    assert all(t * n >= 256 for t, n in zip(tile, tiles))


def test_tiling_is_the_same_for_any_thread_count():
    plan = plan_conv3d((2, 1, 100, 90, 80), (1, 1, 17, 17, 17), padding=8)
    fft.tiling.cache_clear()
    threads = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        first = fft.tiling(plan)
        fft.tiling.cache_clear()
        numba.set_num_threads(threads)
        assert fft.tiling(plan) == first
    finally:
        numba.set_num_threads(threads)


def test_algorithm_argument_and_layer():
    x, w, b = random_operands(np.random.default_rng(7), (1, 2, 12, 13, 14), (3, 2, 7, 7, 7), True,
                              np.float32)
    layer = Conv3d(2, 3, 7, padding=3, algorithm="fft", rng=0)
    np.testing.assert_array_equal(layer(x), conv3d(x, layer.weight, layer.bias, padding=3, algorithm="fft"))
    assert_matches_fft_bound(conv3d(x, w, b, padding=3, algorithm="fft"), x, w, b, padding=3)


def test_input_gradient_and_transposed_take_it_at_unit_stride():
    rng = np.random.default_rng(8)
    x_shape, w_shape = (1, 1, 40, 40, 40), (1, 1, 15, 15, 15)
    _, w, _ = random_operands(rng, x_shape, w_shape, False, np.float32)
    grad = rng.standard_normal((1, 1, 40, 40, 40)).astype(np.float32)
    flipped = np.ascontiguousarray(np.swapaxes(w[:, :, ::-1, ::-1, ::-1], 0, 1))
    assert plan_conv3d(grad.shape, flipped.shape, padding=7).algorithm == "fft"
    assert_matches_fft_bound(conv3d_input(x_shape, w, grad, padding=7), grad, flipped, padding=7)
    assert_matches_fft_bound(conv_transpose3d(grad, w, padding=7), grad, flipped, padding=7)


def test_matches_torch():
    torch_oracle = pytest.importorskip("torch_oracle")
    from checks import assert_close

    x, w, b = random_operands(np.random.default_rng(9), (2, 2, 16, 17, 18), (3, 2, 9, 9, 9), True,
                              np.float32)
    out = conv3d(x, w, b, padding=4, padding_mode="reflect", algorithm="fft")
    expected = torch_oracle.torch_conv3d(x, w, b, padding=4, padding_mode="reflect")
    bound = fft_rounding_bound(np.float32, x, w, b, padding=4, padding_mode="reflect")
    assert_close(out, expected, 2 * bound)
