"""The bfloat16 dot-product kernels (``cpu/bfloat16_dot.py``): float32 sums of bfloat16 pairs by
AVX512-BF16, channel-vectorized (``bfloat16-dot``) and along output rows (``bfloat16-rows``), against
the float64 oracle of the bfloat16 operands, torch, each other, and the planner's choice; the checks
every such kernel must pass (batch 0, views, NaN and Inf, threads, torch) also on AMX tiles
(``bfloat16-amx``, where the CPU has them)."""
import ml_dtypes
import numba
import numpy as np
import pytest

from checks import (AMX_TILES_REASON, BFLOAT16, assert_bfloat16_within_bound, assert_close, bfloat16_operands,
                    has_amx_tiles, mode_cases, reduced_bound, torch_of)
from numba_conv3d import conv3d
from numba_conv3d.cpu import bfloat16_dot
from numba_conv3d.cpu.simd import load_rows, store_rows, vector_lanes, zero_block
from numba_conv3d.cpu.simd_bfloat16 import stored_element
from numba_conv3d.planner import plan_conv3d
from numba_conv3d.precision import narrow
from reference import conv3d_reference

pytestmark = pytest.mark.skipif(not bfloat16_dot.serves(plan_conv3d((1, 2, 3, 3, 3), (2, 2, 1, 1, 1),
                                                                    dtype="bfloat16")),
                                reason="this CPU has no AVX512-BF16 dot products (or no 512-bit vectors)")

# Odd and even channel counts per group (a pair half zero), strides, dilation, groups, 1-wide and odd
# extents, unbatched input, tall (8-wide) and wide (7-wide) tiles, rows merged, strided 1x1x1.
SHAPES = (
    ((2, 5, 4, 7, 6), (16, 5, 3, 3, 3), {"padding": 1}),
    ((1, 6, 5, 8, 8), (18, 3, 3, 3, 3), {"padding": (1, 0, 1), "groups": 2, "stride": (1, 2, 1)}),
    ((1, 4, 6, 7, 1), (20, 4, 3, 3, 1), {"padding": (2, 2, 0), "dilation": (2, 2, 1)}),
    ((8, 3, 9, 14), (33, 8, 1, 3, 3), {"padding": (0, 1, 1)}),
    ((1, 7, 3, 5, 5), (16, 7, 2, 2, 2), {"stride": 2}),
    ((2, 6, 3, 4, 10), (16, 6, 3, 1, 1), {"padding": (1, 0, 0)}),  # pointwise in (H, W): rows merged
    ((2, 6, 3, 4, 5), (16, 6, 1, 1, 1), {}),  # 1x1x1 on small planes: the volume as one row
    ((1, 8, 5, 3, 3), (12, 4, 1, 1, 1), {"groups": 2}),
    ((1, 8, 3, 8, 8), (256, 8, 1, 1, 1), {}),  # 8x8 planes for many output channels: one row
    ((2, 6, 5, 8, 9), (16, 6, 1, 1, 1), {"stride": (2, 2, 3)}),  # strided 1x1x1: the positions copied out
    ((1, 8, 6, 7, 8), (20, 4, 1, 1, 1), {"stride": (1, 2, 2), "groups": 2}),
    # tiles past the plane's last row, taps reading padding at some of a tile's rows and columns only
    ((1, 6, 2, 7, 7), (16, 6, 3, 3, 3), {"padding": 1}),
    ((1, 5, 3, 4, 4), (16, 5, 3, 3, 3), {"padding": 1}),
    ((1, 4, 2, 5, 12), (16, 4, 3, 5, 5), {"padding": (1, 2, 2)}),
)
ALGORITHMS = ("bfloat16-dot", "bfloat16-rows")
# Every kernel that sums bfloat16 pairs in float32, for the checks they all must pass.
KERNELS = ALGORITHMS + (pytest.param("bfloat16-amx", marks=pytest.mark.skipif(not has_amx_tiles(),
                                                                              reason=AMX_TILES_REASON)),)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
@pytest.mark.parametrize("x_shape,w_shape,kwargs,mode", mode_cases(SHAPES))
def test_matches_reference(x_shape, w_shape, kwargs, mode, algorithm):
    kwargs = dict(kwargs, padding_mode=mode)
    for bias in (True, False):
        x, w, b = bfloat16_operands(x_shape, w_shape, bias)
        assert_bfloat16_within_bound(conv3d(x, w, b, algorithm=algorithm, **kwargs), x, w, b, **kwargs)


@pytest.mark.parametrize("x_shape,w_shape,kwargs,mode", mode_cases(SHAPES))
def test_rows_and_channel_vectors_sum_alike(x_shape, w_shape, kwargs, mode):
    """Both kernels add each output's pairs and taps in the same order: the same bits."""
    x, w, b = bfloat16_operands(x_shape, w_shape, True)
    kwargs = dict(kwargs, padding_mode=mode)
    np.testing.assert_array_equal(*(conv3d(x, w, b, algorithm=algorithm, **kwargs).view(np.uint16)
                                    for algorithm in ALGORITHMS))


@pytest.mark.parametrize("size,kernel,stride,pads_none,out_per_group,expected", [
    ((3, 4, 5), (1, 1, 1), (1, 1, 1), True, 16, (1, 1, 60)),  # 20-position planes: all 3 in one row
    ((26, 5, 5), (1, 1, 1), (1, 1, 1), True, 16, (1, 1, 650)),  # no divisor of 26 reaches 1024 columns first
    ((64, 7, 7), (1, 1, 1), (1, 1, 1), True, 16, (2, 1, 1568)),
    ((499, 5, 5), (1, 1, 1), (1, 1, 1), True, 16, (499, 5, 5)),  # one row would pass the longest
    ((13, 1, 100), (1, 1, 1), (1, 1, 1), True, 16, (13, 1, 100)),  # planes of 100 positions stay apart
    ((13, 1, 100), (1, 1, 1), (1, 1, 1), True, 256, (1, 1, 1300)),  # ... but for many output channels
    ((8, 8, 8), (1, 1, 1), (1, 1, 1), True, 255, (8, 8, 8)),
    ((8, 8, 8), (1, 1, 1), (1, 1, 1), True, 2048, (1, 1, 512)),
    ((8, 12, 12), (1, 1, 1), (1, 1, 1), True, 2048, (8, 12, 12)),  # 144-position planes stay apart
    ((8, 1, 1024), (1, 1, 1), (1, 1, 1), True, 16, (8, 1, 1024)),  # long rows already
    ((3, 4, 5), (1, 1, 1), (1, 1, 1), False, 16, (3, 4, 5)),
    ((3, 4, 5), (3, 1, 1), (1, 1, 1), True, 16, (3, 4, 5)),
    ((3, 4, 5), (1, 1, 1), (2, 1, 1), True, 16, (3, 4, 5)),
])
def test_volume_rows(size, kernel, stride, pads_none, out_per_group, expected):
    assert bfloat16_dot.volume_rows(size, kernel, stride, pads_none, out_per_group) == expected


@pytest.mark.parametrize("algorithm", KERNELS)
def test_batch_zero_and_strided_views(algorithm):
    x, w, b = bfloat16_operands((3, 4, 5, 6, 14), (16, 4, 3, 3, 3), True)
    empty = conv3d(x[:0], w, b, padding=1, algorithm=algorithm)
    assert empty.shape == (0, 16, 5, 6, 14) and empty.dtype == BFLOAT16
    view = x[::2, :, :, :, ::2]
    assert_bfloat16_within_bound(conv3d(view, w, b, padding=1, algorithm=algorithm), view, w, b, padding=1)


@pytest.mark.parametrize("algorithm", KERNELS)
def test_nan_and_inf_reach_the_outputs_whose_taps_read_them(algorithm):
    x, w, b = bfloat16_operands((1, 4, 4, 5, 5), (16, 4, 3, 3, 3), True)
    x[0, 1, 2, 2, 3] = np.inf
    x[0, 2, 0, 4, 0] = np.nan
    out = conv3d(x, w, b, padding=1, algorithm=algorithm).astype(np.float64)
    expected = conv3d_reference(x.astype(np.float64), w.astype(np.float64), b.astype(np.float64), padding=1)
    np.testing.assert_array_equal(np.isnan(out), np.isnan(expected))
    np.testing.assert_array_equal(np.isinf(out), np.isinf(expected))


@pytest.mark.parametrize("algorithm", KERNELS)
def test_an_inf_weight_times_zero_padding_is_nan_as_in_torch(algorithm):
    x, w, b = bfloat16_operands((1, 2, 3, 4, 4), (16, 2, 3, 3, 3), False)
    w[3, 1, 0, 0, 0] = np.inf
    out = conv3d(x, w, padding=1, algorithm=algorithm).astype(np.float64)
    expected = conv3d_reference(x.astype(np.float64), w.astype(np.float64), padding=1)
    np.testing.assert_array_equal(np.isnan(out), np.isnan(expected))
    assert np.isnan(out[0, 3, 0, 0, 0])


@pytest.mark.parametrize("algorithm", KERNELS)
def test_bitwise_the_same_for_one_and_two_threads(algorithm):
    x, w, b = bfloat16_operands((2, 32, 3, 6, 7), (48, 32, 3, 3, 3), True)
    results = []
    for threads in (1, 2):
        numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
        try:
            results.append(conv3d(x, w, b, padding=1, algorithm=algorithm).view(np.uint16))
        finally:
            numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
    np.testing.assert_array_equal(results[0], results[1])


def test_pairs_of_channels():
    bits = np.arange(2 * 6 * 2 * 2 * 2, dtype=np.uint16).reshape(2, 6, 2, 2, 2)
    pairs = bfloat16_dot.pair_channels(bits, 2, 2)  # groups of 3 channels: pairs (0, 1), (2, zero)
    assert pairs.shape == (2, 4, 2, 2, 2)
    np.testing.assert_array_equal(pairs[:, 0] & 0xFFFF, bits[:, 0])
    np.testing.assert_array_equal(pairs[:, 0] >> 16, bits[:, 1])
    np.testing.assert_array_equal(pairs[:, 1], bits[:, 2])
    np.testing.assert_array_equal(pairs[:, 3], bits[:, 5])


@pytest.mark.parametrize("algorithm", KERNELS)
def test_agrees_with_torch(algorithm):
    torch = pytest.importorskip("torch", reason="torch is the optional second oracle")
    x, w, b = bfloat16_operands((1, 32, 4, 8, 8), (64, 32, 3, 3, 3), True)
    ours = conv3d(x, w, b, padding=1, algorithm=algorithm).astype(np.float64)
    theirs = torch.nn.functional.conv3d(*(torch_of(torch, a) for a in (x, w, b)), padding=1).double().numpy()
    wide = [a.astype(np.float64) for a in (x, w, b)]
    expected = conv3d_reference(*wide, padding=1)
    assert_close(ours, theirs, 2 * reduced_bound(BFLOAT16, expected, *wide, padding=1))


@pytest.mark.parametrize("input_shape,weight_shape,kwargs,expected", [
    ((1, 128, 8, 8, 8), (256, 128, 3, 3, 3), {"padding": 1}, "bfloat16-dot"),  # 8-wide rows
    ((1, 256, 4, 14, 14), (256, 256, 3, 3, 3), {"padding": 1}, "bfloat16-dot"),
    ((1, 32, 8, 16, 16), (32, 32, 5, 5, 5), {"padding": 2}, "bfloat16-rows"),  # whole vectors
    ((1, 32, 32, 32, 32), (64, 32, 3, 3, 3), {"padding": 1}, "bfloat16-rows"),
    ((1, 230, 8, 28, 28), (128, 230, 3, 1, 1), {"padding": (1, 0, 0)}, "bfloat16-rows"),  # 784 columns
    ((1, 921, 2, 7, 7), (512, 921, 3, 1, 1), {"padding": (1, 0, 0)}, "bfloat16-dot"),  # 49 columns
    ((1, 64, 16, 56, 56), (128, 64, 3, 3, 3), {"padding": 1}, "winograd"),
    ((1, 64, 32, 32, 32), (64, 64, 3, 3, 3), {"padding": 1}, "winograd"),  # estimated gain 2.64
    ((1, 128, 8, 16, 16), (128, 128, 5, 5, 5), {"padding": 2}, "bfloat16-rows"),  # gain 2.36
    ((1, 1, 32, 32, 32), (16, 1, 3, 3, 3), {"padding": 1}, "row-blocked"),
    ((1, 54, 13, 40, 40), (54, 1, 3, 3, 3), {"padding": 1, "groups": 54}, "row-blocked"),
    ((1, 128, 4, 4, 4), (256, 128, 1, 1, 1), {}, "bfloat16-rows"),
    ((1, 96, 13, 10, 10), (216, 96, 1, 1, 1), {}, "bfloat16-rows"),
    ((1, 32, 64, 64, 64), (3, 32, 1, 1, 1), {}, "gemm"),  # fewer than BLOCKED_MIN_CHANNELS
    ((1, 54, 1, 1, 1), (8, 54, 1, 1, 1), {}, "gemm"),  # one position
    ((1, 8, 1, 1, 1), (54, 8, 1, 1, 1), {}, "gemm"),  # one position: widened
    ((1, 64, 2, 4, 4), (128, 64, 1, 1, 1), {}, "gemm"),  # 32 positions
    ((1, 64, 4, 14, 14), (128, 64, 1, 1, 1), {"stride": 2}, "bfloat16-rows"),  # 98 positions
    ((1, 128, 4, 4, 4), (256, 128, 1, 1, 1), {"stride": 2}, "gemm"),  # 8 positions
])
def test_where_the_planner_takes_it(input_shape, weight_shape, kwargs, expected, without_amx):
    assert plan_conv3d(input_shape, weight_shape, dtype="bfloat16", **kwargs).algorithm == expected


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_other_dtypes_are_not_served(algorithm):
    for dtype in ("float32", "float16"):
        with pytest.raises(ValueError, match="does not serve"):
            plan_conv3d((1, 4, 4, 4, 4), (16, 4, 3, 3, 3), dtype=dtype, algorithm=algorithm)


@pytest.mark.parametrize("input_shape,weight_shape", [((1, 96, 7, 8, 9), (160, 96, 3, 3, 3)),
                                                      ((1, 96, 7, 8, 32), (160, 96, 3, 3, 3))])
def test_without_the_instructions_it_does_not_serve(monkeypatch, input_shape, weight_shape):
    monkeypatch.setattr(bfloat16_dot, "has_bfloat16_dot", lambda: False)  # shapes planned only here
    assert plan_conv3d(input_shape, weight_shape, padding=1, dtype="bfloat16").algorithm not in ALGORITHMS


def test_packing_pairs_the_weights_and_finds_non_finite_ones():
    weight = np.arange(2 * 3 * 2, dtype=np.float32).reshape(2, 3, 2, 1, 1).astype(ml_dtypes.bfloat16)
    bits = weight.view(np.uint16)
    packed, finite = bfloat16_dot.pack_pairs(bits, 1, 16)
    assert packed.shape == (1, 1, 2, 2, 16) and finite
    np.testing.assert_array_equal(packed[0, 0, 0, :, :2] & 0xFFFF, bits[:, 0, :, 0, 0].T)
    np.testing.assert_array_equal(packed[0, 0, 0, :, :2] >> 16, bits[:, 1, :, 0, 0].T)
    np.testing.assert_array_equal(packed[0, 0, 1, :, :2], bits[:, 2, :, 0, 0].T)  # half zero
    assert not packed[..., 2:].any()
    packed_bias = bfloat16_dot.pack_bias(np.ones(2, np.float32), True, 1, 2, 16, np.float32)
    assert packed_bias.tolist() == [1, 1] + [0] * 14
    for bad in (np.inf, -np.inf, np.nan):
        for channel in (1, 2):
            spoiled = weight.copy()
            spoiled[1, channel, 1] = bad
            assert not bfloat16_dot.pack_pairs(spoiled.view(np.uint16), 1, 16)[1]


@numba.njit(cache=True)
def _stored_bits(values, vector_bits, element_bits):
    """``values`` (whole vectors of float32) stored into uint16 arrays by vector stores and element by
    element."""
    lanes = vector_lanes(values)
    for start in range(0, values.size, lanes):
        vector = load_rows(zero_block(values, 1, 1, 1), values, start, 0, 1, 1)
        store_rows(vector, vector_bits, start, 0, 0, 1, 1)
    for i in range(values.size):
        element_bits[i] = stored_element(element_bits, values[i])


def test_sums_are_stored_as_bfloat16_bits_as_narrowing_rounds():
    """The kernels round their float32 sums into the result's bits as ``half_precision.narrow`` does:
    ties to even, overflow to Inf, NaNs quiet with their sign, subnormals kept."""
    special = np.array([0x3F808000, 0x3F818000, 0x3F807FFF, 0x7F7FFFFF, 0x7F7F7FFF, 0xFF7FFFFF, 0x7F800000,
                        0xFF800000, 0x7FC00001, 0x7F800001, 0xFF800001, 0x00000001, 0x80018000, 0x00008000,
                        0x80000000, 0x00000000], np.uint32)
    words = np.concatenate([special, np.random.default_rng(0).integers(0, 2 ** 32, 16 * 63, dtype=np.uint32)])
    values = words.view(np.float32)
    vector_bits, element_bits = np.empty(values.size, np.uint16), np.empty(values.size, np.uint16)
    _stored_bits(values, vector_bits, element_bits)
    expected = narrow(values, BFLOAT16).view(np.uint16)
    with np.errstate(invalid="ignore"):  # ml_dtypes' cast warns on the NaNs it converts
        np.testing.assert_array_equal(expected, values.astype(BFLOAT16).view(np.uint16))
    np.testing.assert_array_equal(vector_bits, expected)
    np.testing.assert_array_equal(element_bits, expected)
