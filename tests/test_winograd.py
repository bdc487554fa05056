"""Winograd F(2x2x2, 3x3x3) and F(2x2x2, 5x5x5) (and F(2x2, 3x3), F(2x2, 5x5) for 1xKxK kernels) on the
CPU, fused ('winograd') and point by point ('winograd-points'): its rounding bound, every padding mode,
groups and extents, NaN and Inf as the direct sums give them, determinism, and where the planner takes
each."""
import numba
import numpy as np
import pytest

from checks import (BFLOAT16, MODES, assert_close, assert_forced_algorithm_within,
                    assert_matches_winograd_bound, assert_nonfinite_as_direct_sums, direct_fallback,
                    mode_cases, random_operands, serving_algorithms, spread_dynamic_range)
from numba_conv3d import Conv3d, conv3d, conv3d_input, plan_conv3d
from numba_conv3d.config import BLOCK_CHANNELS, VECTOR_BYTES
from numba_conv3d.crossovers import WINOGRAD_POINTS_RANGES
from numba_conv3d.cpu import winograd, winograd_points, winograd_tiles
from numba_conv3d.precision import narrow, widen

WINOGRAD_ROWS = ("winograd", "winograd-points")


SHAPES = [
    ((2, 8, 7, 9, 11), (12, 8, 3, 3, 3), {"padding": 1}),
    ((1, 4, 5, 5, 5), (4, 4, 3, 3, 3), {"padding": 0}),
    ((2, 8, 6, 5, 4), (8, 4, 3, 3, 3), {"padding": 1, "groups": 2}),
    ((1, 3, 4, 6, 3), (5, 3, 3, 3, 3), {"padding": (2, 1, 0)}),
    ((1, 6, 5, 4, 7), (6, 2, 3, 3, 3), {"padding": 1, "groups": 3}),
    ((3, 2, 3, 3, 3), (1, 2, 3, 3, 3), {"padding": 0}),
    ((1, 16, 1, 1, 40), (9, 16, 3, 3, 3), {"padding": 1}),
    ((5, 9, 1, 9), (7, 5, 3, 3, 3), {"padding": "same"}),
    ((0, 4, 5, 5, 5), (4, 4, 3, 3, 3), {"padding": 1}),
    ((2, 6, 3, 7, 9), (5, 6, 1, 3, 3), {"padding": (0, 1, 1)}),
    ((1, 8, 2, 5, 4), (8, 2, 1, 3, 3), {"padding": 1, "groups": 4}),
    ((4, 3, 1, 6), (6, 4, 1, 3, 3), {"padding": "same"}),
    ((2, 5, 7, 9, 11), (6, 5, 5, 5, 5), {"padding": 2}),
    ((1, 6, 6, 5, 7), (8, 3, 5, 5, 5), {"padding": (2, 1, 2), "groups": 2}),
    ((1, 4, 5, 6, 5), (3, 4, 5, 5, 5), {"padding": 0}),
    ((3, 6, 3, 8), (4, 3, 5, 5, 5), {"padding": "same"}),
    ((2, 6, 2, 7, 9), (5, 6, 1, 5, 5), {"padding": (0, 2, 2)}),
    ((1, 4, 3, 2, 30), (4, 2, 1, 5, 5), {"padding": (0, 2, 2), "groups": 2}),
    ((1, 3, 2, 28, 30), (4, 3, 1, 3, 3), {"padding": (0, 1, 1)}),
    ((1, 4, 1, 31, 33), (6, 2, 1, 3, 3), {"padding": (0, 2, 1), "groups": 2}),
    ((2, 16, 3, 15, 21), (32, 16, 1, 3, 3), {"padding": (0, 1, 1)}),
    ((2, 48, 2, 15, 23), (64, 24, 1, 3, 3), {"padding": (0, 1, 0), "groups": 2}),
    ((1, 2, 48, 28, 29), (3, 2, 3, 3, 3), {"padding": 1}),
    ((2, 4, 9, 30, 31), (4, 2, 3, 3, 3), {"padding": (1, 0, 2), "groups": 2}),
]


@pytest.mark.parametrize("algorithm", WINOGRAD_ROWS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("x_shape, w_shape, kwargs, mode", mode_cases(SHAPES))
def test_matches_reference_within_its_bound(x_shape, w_shape, kwargs, mode, dtype, algorithm):
    assert_forced_algorithm_within(algorithm, assert_matches_winograd_bound, x_shape, w_shape, kwargs, mode,
                                   dtype)


@pytest.mark.parametrize("algorithm", WINOGRAD_ROWS)
@pytest.mark.parametrize("taps", [3, 5])
def test_large_dynamic_range_within_its_bound(taps, algorithm):
    rng = np.random.default_rng(3)
    x, w, b = random_operands(rng, (1, 6, 9, 8, 10), (5, 6, taps, taps, taps), True, np.float32)
    spread_dynamic_range(rng, x, w)
    padding = taps // 2
    assert_matches_winograd_bound(conv3d(x, w, b, padding=padding, algorithm=algorithm), x, w, b,
                                  padding=padding)


@pytest.mark.parametrize("algorithm", WINOGRAD_ROWS)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("taps", [3, 5])
def test_nan_and_inf_as_the_direct_sums_give_them(taps, mode, algorithm):
    rng = np.random.default_rng(4)
    x, w, b = random_operands(rng, (2, 6, 7, 6, 9), (8, 6, taps, taps, taps), True, np.float32)
    x[0, 1, 2, 3, 4], x[1, 2, 6, 0, 0], x[1, 5, 3, 5, 8] = np.inf, -np.inf, np.nan
    w[3, 2, 1, 1, 1] = 0  # 0 * Inf is NaN in the direct sums too
    assert_nonfinite_as_direct_sums(algorithm, x, w, b, padding=taps // 2, padding_mode=mode)


@pytest.mark.parametrize("algorithm", WINOGRAD_ROWS)
@pytest.mark.parametrize("taps", [3, 5])
def test_overflow_in_the_transforms_falls_back_to_direct_sums(taps, algorithm):
    # +-3e38 two planes apart: the input transform's d0 - d2 (F(2, 5): 2 d0 ... - 4 d2) overflows, the
    # direct sums stay finite.
    x = np.zeros((1, 4, 6, 6, 6), np.float32)
    x[:, :, 0], x[:, :, 2] = 3e38, -3e38
    w = np.full((4, 4, taps, taps, taps), 1e-6, np.float32)
    out = conv3d(x, w, algorithm=algorithm)
    assert np.isfinite(out).all()
    np.testing.assert_array_equal(out, direct_fallback(x, w))


@pytest.mark.parametrize("algorithm", WINOGRAD_ROWS)
@pytest.mark.parametrize("taps", [3, 5])
def test_bitwise_for_any_thread_count(taps, algorithm):
    x, w, b = random_operands(np.random.default_rng(5), (2, 8, 9, 7, 30), (12, 4, taps, taps, taps), True,
                              np.float32)
    kwargs = {"padding": taps // 2, "groups": 2, "padding_mode": "replicate"}
    first = conv3d(x, w, b, algorithm=algorithm, **kwargs)
    threads = numba.get_num_threads()
    try:
        for count in range(1, numba.config.NUMBA_NUM_THREADS + 1):
            numba.set_num_threads(count)
            np.testing.assert_array_equal(first, conv3d(x, w, b, algorithm=algorithm, **kwargs))
    finally:
        numba.set_num_threads(threads)


# A subset of SHAPES for the reduced-precision fronts: 3x3x3, grouped, 1x3x3 on wide planes (4x4
# tiles), 5x5x5, batch 0, unbatched.
REDUCED_SHAPES = [SHAPES[i] for i in (0, 2, 7, 8, 10, 12, 18)]


@pytest.mark.parametrize("algorithm", WINOGRAD_ROWS)
@pytest.mark.parametrize("dtype", [BFLOAT16, np.float16], ids=str)
@pytest.mark.parametrize("x_shape, w_shape, kwargs, mode", mode_cases(REDUCED_SHAPES))
def test_reduced_precision_is_float32_winograd_rounded_once(x_shape, w_shape, kwargs, mode, dtype, algorithm):
    # bfloat16 reads the input's bits and rounds each sum into the result's (Algorithm.operands 'bits');
    # float16 is widened first: both bitwise the float32 kernel on the widened operands, rounded once.
    x, w, b = random_operands(np.random.default_rng(sum(w_shape)), x_shape, w_shape, True, dtype)
    kwargs = dict(kwargs, padding_mode=mode, algorithm=algorithm)
    out = conv3d(x, w, b, **kwargs)
    assert out.dtype == dtype
    widened = conv3d(widen(x), widen(w), widen(b), **kwargs)
    np.testing.assert_array_equal(out.view(np.uint16), narrow(widened, dtype).view(np.uint16))


@pytest.mark.parametrize("algorithm", WINOGRAD_ROWS)
def test_bfloat16_nan_and_inf_as_the_direct_sums_give_them(algorithm):
    rng = np.random.default_rng(6)
    x, w, b = random_operands(rng, (2, 6, 7, 6, 9), (8, 6, 3, 3, 3), True, BFLOAT16)
    x[0, 1, 2, 3, 4], x[1, 2, 6, 0, 0], x[1, 5, 3, 5, 8] = np.inf, -np.inf, np.nan
    w[3, 2, 1, 1, 1] = 0
    out = conv3d(x, w, b, padding=1, padding_mode="reflect", algorithm=algorithm)
    wide = [widen(a) for a in (x, w, b)]
    expected = narrow(direct_fallback(*wide, padding=1, padding_mode="reflect"), BFLOAT16)
    np.testing.assert_array_equal(out.view(np.uint16), expected.view(np.uint16))
    assert np.isnan(out.astype(np.float32)).any() and np.isinf(out.astype(np.float32)).any()


POINTS_SHAPES = [
    ((2, 24, 5, 9, 11), (40, 24, 3, 3, 3), {"padding": 1}),
    ((1, 16, 3, 13, 7), (24, 8, 1, 3, 3), {"padding": (0, 1, 1), "groups": 2, "padding_mode": "circular"}),
    ((3, 9, 4, 5, 6), (13, 9, 3, 3, 3), {"padding": 0}),
    ((2, 12, 6, 10, 14), (18, 4, 3, 3, 3), {"padding": 1, "groups": 3}),
    ((2, 10, 5, 9, 11), (12, 5, 5, 5, 5), {"padding": 2, "groups": 2, "padding_mode": "reflect"}),
    ((1, 8, 3, 13, 7), (9, 8, 1, 5, 5), {"padding": (0, 2, 2)}),
    ((2, 8, 2, 29, 31), (12, 8, 1, 3, 3), {"padding": (0, 1, 1), "padding_mode": "replicate"}),
    ((1, 20, 2, 6, 6), (44, 10, 3, 3, 3), {"padding": 1, "groups": 2}),
    ((2, 3, 8, 28, 32), (5, 3, 3, 3, 3), {"padding": 1, "padding_mode": "reflect"}),
]


@pytest.mark.parametrize("x_shape, w_shape, kwargs", POINTS_SHAPES)
def test_points_sum_as_the_fused_kernel_in_any_number_of_passes(x_shape, w_shape, kwargs, monkeypatch):
    """With the same tile, both rows sum every output in the same order: bitwise equal results, also where
    the point-by-point kernel runs its tiles in passes of one or two chunks (its workspace limit set to
    their bytes; the last pass of two may hold one)."""
    x, w, b = random_operands(np.random.default_rng(9), x_shape, w_shape, True, np.float32)
    fused = conv3d(x, w, b, algorithm="winograd", **kwargs)
    np.testing.assert_array_equal(conv3d(x, w, b, algorithm="winograd-points", **kwargs), fused)
    one_chunk = winograd_points.chunk_bytes(plan_conv3d(x.shape, w.shape, algorithm="winograd-points",
                                                        **kwargs))
    for chunks in (1, 2):
        monkeypatch.setattr(winograd_points, "WINOGRAD_POINTS_MAX_WORKSPACE_BYTES", chunks * one_chunk)
        np.testing.assert_array_equal(conv3d(x, w, b, algorithm="winograd-points", **kwargs), fused)


@pytest.mark.parametrize("x_shape, w_shape, kwargs", POINTS_SHAPES)
def test_points_sum_as_the_fused_kernel_in_ranges_of_weight_points(x_shape, w_shape, kwargs, monkeypatch):
    """Weight points transformed and multiplied in ranges of one, two or three channel blocks (the last
    range may hold fewer) give bitwise the results of all of them at once, and the plan counts one
    range's points."""
    x, w, b = random_operands(np.random.default_rng(10), x_shape, w_shape, True, np.float32)
    fused = conv3d(x, w, b, algorithm="winograd", **kwargs)
    plan = plan_conv3d(x.shape, w.shape, algorithm="winograd-points", **kwargs)
    block_bytes = 4 * plan.groups * w.shape[1] * BLOCK_CHANNELS * winograd_tiles.points_of(
        w.shape[2:], winograd_tiles.plan_points_tile(plan))
    all_blocks = -(-plan.out_per_group // BLOCK_CHANNELS)
    all_at_once = winograd_points.call_bytes(plan)
    monkeypatch.setattr(winograd_points, "_RANGE_READS", 2 ** 40)
    for blocks in (1, 2, 3):
        monkeypatch.setattr(winograd_points, "WINOGRAD_POINTS_WEIGHT_RANGE_BYTES", blocks * block_bytes)
        held = all_at_once - (all_blocks - min(blocks, all_blocks)) * block_bytes
        assert winograd_points.call_bytes(plan) == held
        np.testing.assert_array_equal(conv3d(x, w, b, algorithm="winograd-points", **kwargs), fused)


@pytest.mark.parametrize("algorithm", WINOGRAD_ROWS)
def test_serves_3x3x3_and_5x5x5_unit_stride_and_dilation_of_real_dtypes(algorithm):
    x = np.zeros((1, 4, 6, 6, 6), np.float32)
    for kernel in [(3, 3, 3), (1, 3, 3), (5, 5, 5), (1, 5, 5)]:
        assert algorithm in serving_algorithms(x, np.zeros((4, 4) + kernel, np.float32), padding=1)
    for w, kwargs in [(np.zeros((4, 4, 3, 3, 3), np.float32), {"stride": (1, 1, 2)}),
                      (np.zeros((4, 4, 3, 3, 3), np.float32), {"dilation": 2}),
                      (np.zeros((4, 4, 3, 3, 1), np.float32), {}),
                      (np.zeros((4, 4, 1, 3, 3), np.float32), {"stride": (2, 1, 1)}),
                      (np.zeros((4, 4, 3, 5, 5), np.float32), {"padding": 2}),
                      (np.zeros((4, 4, 5, 3, 3), np.float32), {"padding": 1}),
                      (np.zeros((4, 4, 5, 5, 5), np.float32), {"padding": (2, 4, 2), "dilation": (1, 2, 1)}),
                      (np.zeros((4, 4, 7, 7, 7), np.float32), {"padding": 3})]:
        assert algorithm not in serving_algorithms(x, w, **kwargs)
        with pytest.raises(ValueError, match=f"algorithm '{algorithm}' does not serve"):
            conv3d(x, w, algorithm=algorithm, **kwargs)
    complex_x = x.astype(np.complex64)
    assert algorithm not in serving_algorithms(complex_x, np.zeros((4, 4, 3, 3, 3), np.complex64))


@pytest.mark.parametrize("in_channels, out_channels, size, batch, expected", [
    (64, 64, (16, 16, 16), 1, True),
    (128, 64, (4, 28, 28), 1, True),
    (32, 32, (32, 32, 32), 1, True),
    (32, 32, (16, 16, 16), 1, True),
    (16, 32, (64, 64, 64), 1, True),
    (16, 32, (16, 16, 16), 1, False),
    (16, 16, (64, 64, 64), 1, True),
    (16, 16, (32, 32, 32), 1, False),
    (64, 64, (2, 14, 14), 2, False),
    (256, 256, (4, 4, 4), 2, False),
    (384, 128, (16, 16, 16), 1, True),
    (512, 512, (4, 14, 14), 1, False),
])
def test_planner_takes_it_past_the_measured_crossovers(in_channels, out_channels, size, batch, expected):
    plan = plan_conv3d((batch, in_channels) + size, (out_channels, in_channels, 3, 3, 3), padding=1)
    assert (plan.algorithm == "winograd") == expected


@pytest.mark.parametrize("in_channels, out_channels, size, expected", [
    (256, 256, (16, 14, 14), True),
    (128, 128, (16, 28, 28), True),
    (16, 16, (16, 56, 56), False),
    (512, 512, (2, 7, 7), False),
])
def test_planner_takes_it_for_1x3x3_kernels(in_channels, out_channels, size, expected):
    plan = plan_conv3d((1, in_channels) + size, (out_channels, in_channels, 1, 3, 3), padding=(0, 1, 1))
    assert (plan.algorithm == "winograd") == expected


@pytest.mark.parametrize("x_shape, w_shape, expected", [
    ((1, 256, 4, 14, 14), (512, 256, 3, 3, 3), True),
    ((1, 512, 16, 7, 7), (512, 512, 1, 3, 3), True),
    ((2, 128, 4, 4, 4), (128, 128, 3, 3, 3), True),
    ((1, 128, 4, 4, 4), (128, 128, 3, 3, 3), False),
    ((1, 512, 2, 7, 7), (512, 512, 3, 3, 3), False),
    ((1, 256, 8, 28, 28), (256, 256, 3, 3, 3), False),
    ((1, 64, 32, 32, 32), (64, 64, 3, 3, 3), False),
])
def test_planner_takes_points_for_few_tiles_and_many_channels(x_shape, w_shape, expected):
    """From 16 tiles and within 0.06-1 tiles per channel: 8 tiles for 128 channels (4^3, batch 1) and
    16 for 512 (2x7x7) go to the channel-vectorized kernel, 784 for 256 (8x28x28) to the fused kernel."""
    padding = (w_shape[2] // 2, 1, 1)
    plan = plan_conv3d(x_shape, w_shape, padding=padding)
    assert (plan.algorithm == "winograd-points") == expected


@pytest.mark.skipif(VECTOR_BYTES != 64, reason="the crossovers with the direct kernels and FFT move with the "
                                               "vector width; these are those of 512-bit vectors")
@pytest.mark.parametrize("x_shape, w_shape, expected", [
    ((1, 32, 16, 32, 32), (32, 32, 5, 5, 5), "winograd"),
    ((2, 64, 16, 32, 32), (64, 64, 5, 5, 5), "winograd"),
    ((1, 32, 32, 64, 64), (32, 32, 5, 5, 5), "winograd"),
    ((1, 128, 8, 16, 16), (128, 128, 5, 5, 5), "winograd-points"),
    ((1, 256, 4, 8, 8), (256, 256, 5, 5, 5), "winograd-points"),
    ((1, 64, 8, 8, 8), (64, 64, 5, 5, 5), "channel-vectorized"),
    ((1, 256, 2, 4, 4), (256, 256, 5, 5, 5), "channel-vectorized"),
    ((1, 16, 64, 64, 64), (16, 16, 5, 5, 5), "winograd"),
    ((1, 16, 16, 16, 16), (16, 16, 5, 5, 5), "blocked"),
])
def test_planner_takes_it_for_5x5x5_kernels(x_shape, w_shape, expected):
    """Measured on V-Net's layers and C -> C at 8^3 to 32^3: fused from 32 channels at 16^3 (ahead of FFT
    where its estimated gain is larger: 64 channels at 2x16x32x32, 2.38 against 1.40); point by point from
    128 channels at up to 3 tiles per channel (but 128 channels at 4x8x8, under 1 tile per channel, and
    256 at 2x4x4: the channel-vectorized kernel, ``small_dense_volume``); 64 channels at 8^3 and 16 at
    64^3 to the direct kernels."""
    assert plan_conv3d(x_shape, w_shape, padding=2).algorithm == expected


@pytest.mark.parametrize("kernel_size, output_size, batch, channels, tile", [
    ((1, 3, 3), (2, 28, 30), 1, (4, 3), 4),
    ((1, 3, 3), (16, 56, 56), 1, (512, 512), 4),
    ((1, 3, 3), (16, 27, 40), 1, (64, 64), 2),
    ((1, 3, 3), (4, 14, 14), 1, (64, 64), 2),
    ((3, 3, 3), (16, 56, 56), 1, (64, 64), 4),
    ((3, 3, 3), (64, 64, 64), 1, (32, 16), 4),
    ((3, 3, 3), (8, 28, 28), 2, (128, 128), 4),
    ((3, 3, 3), (8, 28, 28), 1, (128, 128), 2),
    ((3, 3, 3), (8, 28, 28), 2, (256, 256), 2),
    ((3, 3, 3), (16, 24, 24), 2, (64, 64), 2),
    ((1, 5, 5), (16, 56, 56), 1, (64, 64), 2),
])
def test_3x3_planes_take_4x4_tiles_where_they_are_wide(kernel_size, output_size, batch, channels, tile):
    """The fused kernel takes F(4, 3) along H and W from output planes of 28x28: always for 1x3x3 kernels
    (1.35-1.51x F(2x2, 3x3) there; 0.63-0.91x on 7x7 to 20x20 planes), for 3x3x3 kernels (tiles of 2x4x4)
    from 384 tiles whose weight points stay within ``WINOGRAD_MAX_WEIGHT_BYTES`` (256 channels' 38 MB do
    not)."""
    pair_bytes = channels[0] * channels[1] * 4
    assert winograd_tiles.plane_tile(kernel_size, output_size, batch, pair_bytes) == tile
    assert winograd_tiles.tile_shape(kernel_size, tile)[1:] == (tile, tile)


def test_the_bound_cases_cover_both_tiles_of_3x3x3_kernels():
    """The accuracy cases above hold 3x3x3 kernels on 2x2x2 tiles and on 2x4x4 ones."""
    tiles = {winograd_tiles.plan_tile(plan_conv3d(x_shape, w_shape, **kwargs))
             for x_shape, w_shape, kwargs in SHAPES if tuple(w_shape[2:]) == (3, 3, 3)}
    assert tiles == {2, 4}


@pytest.mark.parametrize("kernel_size, output_size, batch, channels, tile", [
    ((1, 3, 3), (16, 7, 7), 1, (512, 512), 4),
    ((1, 3, 3), (8, 7, 7), 1, (512, 512), 2),
    ((1, 3, 3), (8, 7, 7), 2, (512, 512), 4),
    ((1, 3, 3), (2, 7, 7), 1, (512, 921), 2),
    ((1, 3, 3), (16, 14, 14), 1, (256, 256), 4),
    ((1, 3, 3), (4, 14, 14), 1, (256, 460), 2),
    ((1, 3, 3), (16, 56, 56), 1, (64, 144), 4),
    ((1, 3, 3), (3, 15, 21), 2, (16, 32), 4),
    ((3, 3, 3), (16, 7, 7), 2, (512, 512), 2),
    ((1, 5, 5), (16, 7, 7), 2, (512, 512), 2),
])
def test_points_kernel_takes_4x4_tiles_where_they_amortize_the_weight_points(kernel_size, output_size,
                                                                              batch, channels, tile):
    """Point by point, F(4x4, 3x3) wherever its estimated gain is the larger: 16 planes of 7x7 with 512
    channels (1.10-1.38x F(2x2, 3x3)), not 2-8 (0.55-1.00x), whose 2.25x the weight points cost more
    than their products save."""
    pair_bytes = channels[0] * channels[1] * 4
    assert winograd_tiles.points_tile(kernel_size, output_size, batch, *channels, pair_bytes) == tile


def test_every_kernel_served_has_a_points_range():
    assert {kernel[2] for kernel in winograd.KERNELS} <= set(WINOGRAD_POINTS_RANGES)


def test_algorithm_argument():
    x, w, b = random_operands(np.random.default_rng(6), (1, 4, 5, 6, 7), (4, 4, 3, 3, 3), True, np.float32)
    np.testing.assert_array_equal(conv3d(x, w, b, padding=1, algorithm="auto"), conv3d(x, w, b, padding=1))
    layer = Conv3d(4, 4, 3, padding=1, algorithm="winograd", rng=0)
    np.testing.assert_array_equal(layer(x), conv3d(x, layer.weight, layer.bias, padding=1,
                                                   algorithm="winograd"))
    with pytest.raises(ValueError, match="unknown cpu algorithm 'fourier'"):
        conv3d(x, w, b, algorithm="fourier")
    with pytest.raises(TypeError, match="algorithm must be a string or None, but got int"):
        conv3d(x, w, b, algorithm=3)


def test_input_gradient_takes_it_where_the_planner_prefers_it():
    rng = np.random.default_rng(7)
    x_shape, w_shape = (1, 64, 16, 16, 16), (64, 64, 3, 3, 3)
    _, w, _ = random_operands(rng, x_shape, w_shape, False, np.float32)
    grad = rng.standard_normal((1, 64, 16, 16, 16)).astype(np.float32)
    flipped = np.ascontiguousarray(np.swapaxes(w[:, :, ::-1, ::-1, ::-1], 0, 1))
    assert plan_conv3d(grad.shape, flipped.shape, padding=1).algorithm == "winograd"
    result = conv3d_input(x_shape, w, grad, padding=1)
    assert_matches_winograd_bound(result, grad, flipped, padding=1)


@pytest.mark.parametrize("algorithm", WINOGRAD_ROWS)
def test_matches_torch(algorithm):
    torch_oracle = pytest.importorskip("torch_oracle")
    from checks import winograd_rounding_bound

    for taps in (3, 5):
        x, w, b = random_operands(np.random.default_rng(8), (2, 8, 6, 7, 9), (6, 8, taps, taps, taps), True,
                                  np.float32)
        kwargs = {"padding": taps // 2, "padding_mode": "reflect"}
        out = conv3d(x, w, b, algorithm=algorithm, **kwargs)
        expected = torch_oracle.torch_conv3d(x, w, b, **kwargs)
        assert_close(out, expected, 2 * winograd_rounding_bound(np.float32, x, w, b, **kwargs))
