"""conv3d against the independent float64 oracle: named corner cases, layouts, dtypes, NaN/Inf."""
import numba
import numpy as np
import pytest

from checks import (assert_every_algorithm_matches_reference, assert_matches_reference,
                    conv3d_with, random_operands, serving_algorithms)
from numba_conv3d import conv3d
from numba_conv3d.planner import plan_for_arrays

MODES = ("zeros", "reflect", "replicate", "circular")

# (input shape, weight shape, bias, conv3d keyword arguments)
NAMED_CASES = {
    "pointwise": ((2, 3, 4, 5, 6), (4, 3, 1, 1, 1), True, {}),
    "k3-pad1": ((1, 2, 5, 6, 7), (3, 2, 3, 3, 3), True, {"padding": 1}),
    "anisotropic-kernel-stride-pad": ((2, 3, 7, 6, 9), (4, 3, 3, 5, 2), True,
                                      {"stride": (2, 1, 1), "padding": (4, 2, 0)}),
    "doc-example-small": ((2, 4, 5, 9, 11), (5, 4, 3, 3, 3), True, {"stride": 2}),
    "dilated-strided": ((2, 3, 9, 9, 9), (2, 3, 2, 2, 2), False, {"dilation": 2, "stride": 2}),
    "mixed-dilation": ((1, 2, 9, 8, 10), (3, 2, 2, 3, 2), True, {"dilation": (3, 1, 2)}),
    "same-even-kernel": ((1, 2, 6, 5, 7), (3, 2, 2, 4, 6), True, {"padding": "same"}),
    "same-even-dilated": ((1, 2, 6, 7, 8), (2, 2, 2, 3, 4), True,
                          {"padding": "same", "dilation": (3, 2, 1)}),
    "valid": ((1, 2, 5, 6, 7), (3, 2, 3, 2, 4), True, {"padding": "valid"}),
    "grouped": ((2, 6, 4, 5, 6), (8, 3, 2, 3, 2), True, {"groups": 2, "padding": 1}),
    "grouped-partial-block": ((1, 6, 4, 5, 6), (10, 3, 2, 2, 3), True, {"groups": 2, "stride": 2}),
    "depthwise": ((1, 4, 5, 6, 7), (4, 1, 3, 3, 3), True, {"groups": 4, "padding": 1}),
    "depth-multiplier": ((1, 3, 5, 6, 7), (6, 1, 3, 3, 3), False, {"groups": 3, "stride": (1, 2, 3)}),
    "kernel-equals-input": ((2, 2, 3, 4, 5), (3, 2, 3, 4, 5), True, {}),
    "kernel-equals-padded-input": ((1, 2, 2, 3, 2), (2, 2, 4, 5, 4), True, {"padding": 1}),
    "stride-larger-than-kernel": ((1, 2, 9, 10, 11), (2, 2, 2, 2, 2), True, {"stride": (4, 5, 3)}),
    "width-one": ((1, 2, 4, 4, 1), (2, 2, 3, 3, 1), True, {"padding": (1, 1, 0)}),
    "many-output-channels": ((1, 3, 3, 4, 5), (40, 3, 2, 2, 2), True, {"padding": 1}),
    "many-input-channels-in-chunks": ((1, 40, 4, 5, 6), (5, 40, 3, 3, 3), True, {"padding": 1}),
    "depthwise-stride-equals-dilation": ((1, 3, 5, 9, 8), (3, 1, 2, 3, 3), True,
                                         {"groups": 3, "stride": (1, 2, 1), "dilation": (2, 2, 1),
                                          "padding": (1, 2, 1)}),
    "one-channel-one-kernel-row": ((1, 2, 4, 5, 20), (1, 2, 3, 1, 5), True, {"padding": (1, 0, 2)}),
    "wide-rows-many-column-blocks": ((1, 2, 3, 4, 150), (5, 2, 2, 3, 5), True,
                                     {"stride": (1, 1, 3), "dilation": (1, 1, 4)}),
}


@pytest.mark.parametrize("name", NAMED_CASES)
@pytest.mark.parametrize("mode", MODES)
def test_named_case_every_mode(name, mode):
    input_shape, weight_shape, bias, kwargs = NAMED_CASES[name]
    if mode != "zeros" and "padding" not in kwargs:
        # give the mode something to fill; reflect cannot pad an extent of 1
        kwargs = dict(kwargs, padding=tuple(int(n > 1) for n in input_shape[2:]))
    x, w, b = random_operands(np.random.default_rng(len(name)), input_shape, weight_shape, bias,
                              np.float64)
    results = assert_every_algorithm_matches_reference(x, w, b, padding_mode=mode, **kwargs)
    chosen = plan_for_arrays(x, w, b, padding_mode=mode, **kwargs).algorithm
    np.testing.assert_array_equal(conv3d(x, w, b, padding_mode=mode, **kwargs), results[chosen])


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.complex64, np.complex128])
@pytest.mark.parametrize("mode", MODES)
def test_every_dtype_and_mode(dtype, mode):
    x, w, b = random_operands(np.random.default_rng(1), (2, 4, 5, 6, 7), (8, 2, 3, 2, 3), True, dtype)
    kwargs = dict(stride=(1, 2, 1), padding=(1, 1, 2), dilation=(1, 1, 2), groups=2, padding_mode=mode)
    assert conv3d(x, w, b, **kwargs).dtype == dtype
    results = assert_every_algorithm_matches_reference(x, w, b, **kwargs)
    real = np.dtype(dtype).kind == "f"
    real_algorithms = {"tap-gemm", "gemm", "phase-flat", "channel-vectorized", "blocked", "row-blocked",
                       "direct"}
    assert set(results) == (real_algorithms if real else {"direct"})


def test_unbatched_input_gives_unbatched_output():
    x, w, b = random_operands(np.random.default_rng(2), (3, 5, 6, 7), (4, 3, 3, 3, 3), True,
                              np.float32)
    out = conv3d(x, w, b, padding=1, padding_mode="circular")
    assert out.shape == (4, 5, 6, 7)
    np.testing.assert_array_equal(out, conv3d(x[None], w, b, padding=1, padding_mode="circular")[0])
    assert_matches_reference(out, x, w, b, padding=1, padding_mode="circular")


def test_zero_size_batch():
    x = np.empty((0, 3, 4, 5, 6), np.float32)
    w = np.ones((2, 3, 2, 2, 2), np.float32)
    out = conv3d(x, w, stride=2)
    assert out.shape == (0, 2, 2, 2, 3) and out.dtype == np.float32


@pytest.mark.parametrize("layout", ["fortran", "strided-view", "negative-strides", "broadcast",
                                    "read-only"])
def test_input_layouts(layout):
    rng = np.random.default_rng(3)
    base = rng.standard_normal((2, 6, 7, 8, 9))
    x = {"fortran": lambda: np.asfortranarray(base[:, :3]),
         "strided-view": lambda: base[:, ::2, 1:, ::2, 1::2],
         "negative-strides": lambda: base[::-1, :3, ::-1, :, ::-1],
         "broadcast": lambda: np.broadcast_to(base[:1, :3, :1], (2, 3, 7, 8, 9)),
         "read-only": lambda: _read_only(base[:, :3])}[layout]()
    w = _read_only(np.asfortranarray(rng.standard_normal((2, 3, 3, 2, 3))))
    b = rng.standard_normal(2)
    out = conv3d(x, w, b, padding=(1, 0, 1), padding_mode="reflect")
    assert out.flags.c_contiguous
    np.testing.assert_array_equal(out, conv3d(np.ascontiguousarray(x), np.ascontiguousarray(w), b,
                                              padding=(1, 0, 1), padding_mode="reflect"))
    assert_matches_reference(out, x, w, b, padding=(1, 0, 1), padding_mode="reflect")


@pytest.mark.parametrize("x_shape, w_shape, kwargs", [
    ((2, 8, 3, 12, 10), (8, 8, 1, 1, 1), {}),
    ((1, 4, 5, 6, 7), (8, 2, 3, 1, 1), {"stride": (2, 1, 1), "padding": (1, 0, 0), "groups": 2,
                                        "padding_mode": "circular"}),
    ((1, 3, 4, 9, 5), (3, 1, 2, 1, 1), {"dilation": (2, 3, 1), "groups": 3}),
])
def test_convolutions_pointwise_in_plane_run_on_merged_rows_bitwise(x_shape, w_shape, kwargs):
    """Where a convolution is pointwise in (H, W) the kernels run rows laid side by side
    (``ConvPlan.rows_merged``); a strided view, which they cannot merge, gives the same bits."""
    rng = np.random.default_rng(5)
    x, w, b = random_operands(rng, x_shape, w_shape, True, np.float32)
    out = conv3d(x, w, b, **kwargs)
    strided = np.empty(x_shape[:4] + (2 * x_shape[4],), np.float32)[..., ::2]
    strided[...] = x
    np.testing.assert_array_equal(out, conv3d(strided, w, b, **kwargs))
    assert_matches_reference(out, x, w, b, **kwargs)


def _read_only(a):
    a = a.copy()
    a.flags.writeable = False
    return a


def test_inputs_are_not_modified_and_output_is_new():
    x, w, b = random_operands(np.random.default_rng(4), (1, 2, 4, 4, 4), (2, 2, 3, 3, 3), True,
                              np.float32)
    copies = [a.copy() for a in (x, w, b)]
    out = conv3d(x, w, b, padding="same", padding_mode="replicate")
    for before, after in zip(copies, (x, w, b)):
        np.testing.assert_array_equal(before, after)
    assert not any(np.shares_memory(out, a) for a in (x, w, b))


@pytest.mark.parametrize("mode", MODES)
def test_nan_and_inf_reach_exactly_their_receptive_fields(mode):
    rng = np.random.default_rng(5)
    x, w, b = random_operands(rng, (1, 2, 6, 7, 8), (4, 2, 3, 3, 3), True, np.float32)
    w = np.abs(w) + np.float32(0.1)  # no zero weights: 0 * inf would turn an Inf into NaN
    x[0, 0, 1, 2, 3] = np.nan
    x[0, 1, 4, 5, 6] = np.inf
    x[0, 1, 0, 0, 0] = -np.inf
    results = assert_every_algorithm_matches_reference(x, w, b, padding=1, padding_mode=mode)
    assert set(results) == {"fft", "winograd", "winograd-points", "tap-gemm", "gemm", "phase-flat",
                            "channel-vectorized", "blocked", "row-blocked", "direct"}
    for out in results.values():
        assert np.isnan(out).any() and np.isinf(out).any() and np.isfinite(out).any()


@pytest.mark.parametrize("value", [np.inf, np.nan])
def test_a_non_finite_weight_times_zero_padding_gives_nan_as_torch(value):
    """A weight of Inf or NaN at a tap that reads only zero padding for the first output plane makes
    that plane NaN (Inf * 0), as torch computes it: the kernels that skip taps reading padding do not
    skip them then. 40 channels at 4x8x8 take the channel-vectorized kernel's tall tiles."""
    x, w, b = random_operands(np.random.default_rng(8), (1, 6, 4, 8, 8), (40, 6, 3, 3, 3), True,
                              np.float32)
    w[3, 2, 0, 1, 1] = value
    results = assert_every_algorithm_matches_reference(x, w, b, padding=1)
    assert {"channel-vectorized", "blocked"} <= set(results)
    for out in results.values():
        assert np.isnan(out[0, 3, 0]).all() and np.isfinite(out[0, :3]).all()


@pytest.mark.parametrize("dtype", [np.float32, np.complex64])
def test_same_plan_twice_and_bitwise_for_any_thread_count(dtype):
    x, w, b = random_operands(np.random.default_rng(6), (2, 8, 6, 9, 40), (8, 4, 3, 3, 3), True, dtype)
    kwargs = dict(padding=1, groups=2, stride=(1, 2, 1), padding_mode="reflect")
    threads = numba.get_num_threads()
    for name in serving_algorithms(x, w, b, **kwargs):
        first = conv3d_with(name, x, w, b, **kwargs)
        np.testing.assert_array_equal(first, conv3d_with(name, x, w, b, **kwargs))
        try:
            for count in range(1, numba.config.NUMBA_NUM_THREADS + 1):
                numba.set_num_threads(count)
                np.testing.assert_array_equal(first, conv3d_with(name, x, w, b, **kwargs))
        finally:
            numba.set_num_threads(threads)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("x_shape, w_shape, kwargs", [
    ((2, 6, 5, 5, 5), (6, 1, 3, 3, 3), {"padding": 1, "groups": 6, "stride": (1, 2, 2)}),
    ((1, 4, 7, 9, 1), (6, 2, 2, 3, 1), {"padding": (1, 2, 0), "groups": 2, "dilation": (2, 1, 1),
                                        "stride": (2, 3, 1)}),
    ((3, 4, 6, 7), (3, 1, 3, 2, 3), {"padding": "same", "groups": 3, "dilation": (1, 2, 2)}),
    ((2, 40, 3, 4, 5), (40, 1, 3, 3, 3), {"padding": 1, "groups": 40, "stride": (1, 2, 1)}),
    ((1, 6, 4, 6, 11), (6, 1, 2, 3, 3), {"padding": (1, 1, 2), "groups": 6, "stride": (1, 1, 3),
                                         "dilation": (1, 1, 2)}),
])
def test_the_flat_phase_kernel_matches_the_reference(mode, x_shape, w_shape, kwargs):
    """Stride phases along every axis, dilation, 1-wide rows, channel multipliers, unbatched input, 80
    tasks that share gather buffers in pairs; the same bits as the row-blocked kernel, which jitted
    conv3d runs for these layers."""
    x, w, b = random_operands(np.random.default_rng(7), x_shape, w_shape, True, np.float32)
    out = conv3d_with("phase-flat", x, w, b, padding_mode=mode, **kwargs)
    assert_matches_reference(out, x, w, b, padding_mode=mode, **kwargs)
    np.testing.assert_array_equal(out, conv3d_with("row-blocked", x, w, b, padding_mode=mode, **kwargs))
