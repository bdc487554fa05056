"""The tap-by-tap products (``cpu/tap_gemm.py``): each tap's range of outputs against brute force, the
float64 reference and torch over padding modes, strides, dilations, groups and odd extents, NaN and Inf
where the definition puts them, bitwise the same for 1 and 2 threads, and where the planner takes
them."""
import numpy as np
import pytest

from checks import (MODES, assert_bitwise_for_one_and_two_threads, assert_forced_algorithm_within,
                    assert_matches_reference, flipped_operands, mode_cases, random_operands)
from numba_conv3d import conv3d, conv3d_input, conv3d_weight, plan_conv3d
from numba_conv3d.cpu import blas, channel_weight_grad, execute_flipped, gradients, tap_gemm
from numba_conv3d.cpu.slab import index_map
from numba_conv3d.shape_rules import padding_mode_code
from reference import conv3d_reference

CASES = [
    ((2, 8, 4, 5, 6), (6, 8, 3, 3, 3), {"padding": 1}),
    ((1, 4, 3, 7, 7), (8, 2, 3, 3, 3), {"padding": 1, "groups": 2}),
    ((1, 3, 5, 6, 7), (4, 3, 3, 2, 3), {"padding": (1, 0, 2), "stride": (1, 2, 1), "dilation": (2, 1, 1)}),
    ((1, 6, 4, 8, 8), (5, 6, 5, 5, 5), {"padding": 2}),
    ((3, 5, 1, 1, 9), (7, 5, 3, 3, 3), {"padding": 1}),
    ((1, 4, 6, 5, 9), (4, 4, 3, 3, 3), {"padding": 1, "stride": 2}),
    ((2, 6, 2, 3, 4), (6, 2, 1, 3, 3), {"padding": (0, 1, 1), "groups": 3}),
    ((5, 4, 6, 7), (3, 5, 2, 2, 3), {"padding": "same"}),
    ((0, 4, 5, 5, 5), (4, 4, 3, 3, 3), {"padding": 1}),
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("x_shape, w_shape, kwargs, mode", mode_cases(CASES))
def test_matches_reference(x_shape, w_shape, kwargs, mode, dtype):
    assert_forced_algorithm_within("tap-gemm", assert_matches_reference, x_shape, w_shape, kwargs, mode,
                                   dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("x_shape, w_shape, kwargs, mode", [
    case for case in mode_cases(CASES) if case[0][0] > 0 and len(case[0]) == 5])
def test_correlating_with_the_unflipped_weight_matches_the_flipped_copy(x_shape, w_shape, kwargs, mode,
                                                                        dtype):
    rng = np.random.default_rng(sum(x_shape) + 3 * sum(w_shape))
    x, unflipped, flipped, b = flipped_operands(rng, x_shape, w_shape, kwargs.get("groups", 1), dtype)
    kwargs = dict(kwargs, padding_mode=mode)
    plan = plan_conv3d(x_shape, w_shape, dtype=dtype, algorithm="tap-gemm", **kwargs)
    assert_matches_reference(execute_flipped(plan, x, unflipped, b), x, flipped, b, **kwargs)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("size, taps, stride, dilation, pad", [
    (8, 5, 1, 1, 2), (4, 3, 1, 1, 1), (7, 3, 2, 1, 1), (9, 3, 1, 3, 3), (1, 3, 1, 1, 1), (5, 2, 1, 1, 0),
    (6, 4, 3, 2, 4)])
def test_each_taps_range_holds_exactly_the_outputs_that_read_the_input(size, taps, stride, dilation,
                                                                      pad, mode):
    if mode == "reflect" and pad >= size:
        pytest.skip("reflect pads must be smaller than the extent")
    padded = size + 2 * pad
    outputs = (padded - dilation * (taps - 1) - 1) // stride + 1
    source_map = index_map(padded, pad, size, padding_mode_code(mode))
    ranges = tap_gemm.tap_ranges(source_map, taps, stride, dilation, outputs)
    for tap in range(taps):
        reading = {o for o in range(outputs) if source_map[o * stride + tap * dilation] >= 0}
        assert set(range(*ranges[tap])) == reading
    every = tap_gemm.tap_ranges(source_map, taps, stride, dilation, outputs, skip_padding=False)
    assert np.all(every == (0, outputs))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("x_shape, w_shape, kwargs, mode", [
    case for case in mode_cases(CASES) if case[0][0] > 0 and len(case[0]) == 5])
def test_weight_gradient_matches_reference(x_shape, w_shape, kwargs, mode, dtype):
    rng = np.random.default_rng(sum(x_shape) + 2 * sum(w_shape))
    kwargs = dict(kwargs, padding_mode=mode)
    x, w, _ = random_operands(rng, x_shape, w_shape, False, dtype)
    plan = plan_conv3d(x_shape, w_shape, dtype=dtype, **kwargs)
    g = rng.standard_normal((plan.batch, plan.out_channels) + plan.output_size).astype(dtype)
    result = tap_gemm.weight_grad(x, g, w_shape, plan.stride, plan.dilation, plan.pad_front,
                                  plan.padded_size, plan.mode_code, plan.groups)
    exact = conv3d_weight(x.astype(np.float64), w_shape, g.astype(np.float64), **kwargs)
    magnitudes = conv3d_weight(np.abs(x).astype(np.float64), w_shape, np.abs(g).astype(np.float64),
                               **kwargs)
    length = plan.batch * int(np.prod(plan.output_size))
    assert np.all(np.abs(result - exact) <= (length + 2) * np.finfo(dtype).eps * magnitudes)


def test_weight_gradient_nan_and_inf_reach_every_tap_that_reads_them():
    rng = np.random.default_rng(9)
    x, w, _ = random_operands(rng, (1, 3, 4, 5, 5), (4, 3, 3, 3, 3), False, np.float64)
    g = rng.standard_normal((1, 4, 4, 5, 5))
    g[0, 1, 0, 0, 0] = np.inf
    x[0, 2, 3, 4, 4] = np.nan
    plan = plan_conv3d(x.shape, w.shape, padding=1)
    result = tap_gemm.weight_grad(x, g, w.shape, plan.stride, plan.dilation, plan.pad_front,
                                  plan.padded_size, plan.mode_code, plan.groups)
    expected = conv3d_weight(x, w.shape, g, padding=1)
    np.testing.assert_array_equal(np.isnan(result), np.isnan(expected))
    np.testing.assert_array_equal(np.isinf(result), np.isinf(expected))


@pytest.mark.parametrize("x_shape, w_shape, padding", [
    ((1, 512, 2, 7, 7), (512, 512, 3, 3, 3), 1),  # the forward plan is a GEMM; too few positions for
])                                                # the kernel vectorized over output channels
def test_the_weight_gradient_takes_it_where_it_prefers_it(x_shape, w_shape, padding):
    rng = np.random.default_rng(10)
    x, w, _ = random_operands(rng, x_shape, w_shape, False, np.float32)
    plan = plan_conv3d(x_shape, w_shape, padding=padding)
    assert tap_gemm.prefers_weight_grad(plan) and not channel_weight_grad.preferred(plan)
    g = rng.standard_normal((plan.batch, plan.out_channels) + plan.output_size).astype(np.float32)
    calls = []
    weight_grad = tap_gemm.weight_grad
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(tap_gemm, "weight_grad", lambda *args: calls.append(1) or weight_grad(*args))
        result = conv3d_weight(x, w.shape, g, padding=padding)
    assert calls
    exact = conv3d_weight(x.astype(np.float64), w.shape, g.astype(np.float64), padding=padding)
    magnitudes = conv3d_weight(np.abs(x).astype(np.float64), w.shape, np.abs(g).astype(np.float64),
                               padding=padding)
    length = plan.batch * int(np.prod(plan.output_size))
    assert np.all(np.abs(result - exact) <= (length + 2) * np.finfo(np.float32).eps * magnitudes)


@pytest.mark.parametrize("x_shape, w_shape, padding, mode, expected", [
    ((1, 512, 2, 7, 7), (512, 512, 3, 3, 3), 1, "zeros", True),
    ((1, 921, 4, 7, 7), (512, 921, 3, 1, 1), (1, 0, 0), "zeros", True),
    ((1, 256, 4, 14, 14), (256, 256, 3, 3, 3), 1, "zeros", True),
    ((1, 256, 4, 4, 4), (256, 256, 3, 3, 3), 1, "zeros", False),  # 64 positions
    ((1, 256, 8, 28, 28), (256, 256, 3, 3, 3), 1, "zeros", False),  # 6272 positions
    ((1, 128, 4, 14, 14), (128, 128, 3, 3, 3), 1, "zeros", False),  # 128 channels
    ((1, 512, 2, 7, 7), (512, 512, 3, 3, 3), 1, "replicate", False),  # every pair reads the input
])
def test_where_the_weight_gradient_prefers_it(x_shape, w_shape, padding, mode, expected):
    plan = plan_conv3d(x_shape, w_shape, padding=padding, padding_mode=mode)
    assert tap_gemm.prefers_weight_grad(plan) == expected


def test_read_share_counts_the_pairs_that_read_the_input():
    plan = plan_conv3d((1, 8, 4, 8, 8), (8, 8, 5, 5, 5), padding=2)
    assert tap_gemm.read_share(plan) == pytest.approx((14 / 20) * (34 / 40) ** 2)
    assert tap_gemm.read_share(plan_conv3d((1, 8, 4, 8, 8), (8, 8, 3, 3, 3), padding=1,
                                           padding_mode="reflect")) == 1.0


def test_agrees_with_torch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(5)
    x, w, b = random_operands(rng, (2, 24, 4, 6, 6), (16, 24, 3, 3, 3), True, np.float32)
    ours = conv3d(x, w, b, padding=1, algorithm="tap-gemm")
    theirs = torch.nn.functional.conv3d(*(torch.from_numpy(a) for a in (x, w, b)), padding=1).numpy()
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=2e-5 * np.abs(theirs).max())


def test_nan_and_inf_reach_the_outputs_whose_taps_read_them():
    rng = np.random.default_rng(6)
    x, w, b = random_operands(rng, (1, 4, 4, 5, 5), (3, 4, 3, 3, 3), True, np.float64)
    x[0, 1, 2, 2, 3] = np.inf
    x[0, 2, 0, 4, 0] = np.nan
    out = conv3d(x, w, b, padding=1, algorithm="tap-gemm")
    expected = conv3d_reference(x, w, b, padding=1)
    np.testing.assert_array_equal(np.isnan(out), np.isnan(expected))
    np.testing.assert_array_equal(np.isinf(out), np.isinf(expected))


def test_bitwise_the_same_for_one_and_two_threads_and_any_chunking(monkeypatch):
    rng = np.random.default_rng(7)
    x, w, b = random_operands(rng, (2, 32, 3, 6, 5), (48, 32, 3, 3, 3), True, np.float32)
    assert_bitwise_for_one_and_two_threads(lambda: conv3d(x, w, b, padding=1, algorithm="tap-gemm"))
    monkeypatch.setattr(tap_gemm, "TAP_GEMM_MAX_CHUNKS", 1)
    assert_matches_reference(conv3d(x, w, b, padding=1, algorithm="tap-gemm"), x, w, b, padding=1)


def test_chunks_cover_the_taps_within_the_partial_outputs_budget():
    for taps, output_bytes in [(125, 2 ** 10), (27, 2 ** 30), (1, 1), (8, 2 ** 20)]:
        chunks = tap_gemm.tap_chunks(taps, output_bytes)
        assert chunks[0, 0] == 0 and chunks[-1, 1] == taps
        assert np.all(chunks[1:, 0] == chunks[:-1, 1]) and np.all(chunks[:, 1] > chunks[:, 0])
        assert len(chunks) * output_bytes <= max(output_bytes, tap_gemm.TAP_GEMM_PARTIAL_BYTES)


def test_the_input_gradient_takes_it_where_the_forward_would():
    rng = np.random.default_rng(8)
    x, w, _ = random_operands(rng, (1, 128, 4, 8, 8), (128, 128, 5, 5, 5), False, np.float32)
    g = rng.standard_normal((1, 128, 4, 8, 8)).astype(np.float32)
    kwargs = {"padding": 4, "dilation": 2}
    assert plan_conv3d(g.shape, (128, 128, 5, 5, 5), **kwargs).algorithm == "tap-gemm"
    expected = conv3d_input(x.shape, w.astype(np.float64), g.astype(np.float64), **kwargs)
    magnitudes = conv3d_input(x.shape, np.abs(w).astype(np.float64), np.abs(g).astype(np.float64),
                              **kwargs)
    bound = (128 * 125 + 2) * np.finfo(np.float32).eps * magnitudes

    def refused(*args):
        raise AssertionError("the input gradient copied its flipped weight")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(gradients, "flipped_transpose", refused)
        result = conv3d_input(x.shape, w, g, **kwargs)
    assert np.all(np.abs(result - expected) <= bound)


@pytest.mark.parametrize("input_shape, weight_shape, padding, mode, expected", [
    ((1, 256, 4, 8, 8), (256, 256, 7, 7, 7), 3, "zeros", True),
    ((1, 128, 4, 8, 8), (128, 128, 7, 7, 7), 3, "zeros", True),
    ((1, 256, 4, 8, 8), (256, 256, 5, 5, 5), 2, "zeros", False),  # winograd-points, 1.15-1.33x faster
    ((1, 512, 4, 14, 14), (512, 512, 3, 3, 3), 1, "zeros", False),  # winograd-points, 1.85x faster
    ((1, 256, 4, 14, 14), (512, 256, 3, 3, 3), 1, "zeros", False),
    ((1, 128, 8, 8, 8), (256, 128, 3, 3, 3), 1, "zeros", False),
    ((1, 128, 4, 8, 8), (128, 128, 7, 7, 7), 3, "replicate", False),
    ((1, 128, 8, 8, 8), (128, 128, 3, 3, 3), 1, "zeros", False),
    ((1, 64, 4, 8, 8), (64, 64, 5, 5, 5), 2, "zeros", False),
    ((1, 256, 2, 4, 4), (256, 256, 5, 5, 5), 2, "zeros", False),
])
def test_where_the_planner_takes_it(input_shape, weight_shape, padding, mode, expected):
    plan = plan_conv3d(input_shape, weight_shape, padding=padding, padding_mode=mode)
    assert (plan.algorithm == "tap-gemm") == expected, plan.algorithm


def test_without_openblas_it_does_not_serve(monkeypatch):
    monkeypatch.setattr(blas, "openblas", lambda: None)
    plan = plan_conv3d((1, 256, 4, 8, 8), (256, 256, 5, 5, 5), padding=2)
    assert not tap_gemm.serves(plan)
    with pytest.raises(ValueError, match="tap-gemm"):
        plan_conv3d((1, 8, 4, 8, 8), (8, 8, 3, 3, 3), padding=1, algorithm="tap-gemm")
