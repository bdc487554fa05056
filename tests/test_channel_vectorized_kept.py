"""The channel-vectorized kernel called from Python (``channel_vectorized.compute_kept``): weights packed
once while their bytes stay the same, results as the jitted path's, and the planner's small dense
volumes (``preferences.small_dense_volume``)."""
import numba
import numpy as np
import pytest

from checks import assert_matches_reference
from numba_conv3d import conv3d, plan_conv3d
from numba_conv3d.cpu import channel_vectorized, packed_weights


def _operands(dtype=np.float32, seed=0):
    rng = np.random.default_rng(seed)
    draw = lambda shape: rng.standard_normal(shape).astype(dtype)  # noqa: E731
    return draw((1, 6, 3, 7, 7)), draw((40, 6, 3, 3, 3)), draw(40)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_kept_and_an_in_place_weight_change_packs_again(dtype):
    x, w, b = _operands(dtype)
    packed_weights.clear()
    for _ in range(2):
        conv3d(x, w, b, padding=1, algorithm="channel-vectorized")
    (kept,) = packed_weights._ENTRIES.values()
    assert kept[1][0].shape == (1, 40 // channel_vectorized.block_channels(x.itemsize) + 1, 6, 27,
                                channel_vectorized.block_channels(x.itemsize))
    w[3, 2, 1, 1, 1] += 1
    out = conv3d(x, w, b, padding=1, algorithm="channel-vectorized")
    assert_matches_reference(out, x, w, b, padding=1)
    w[5, 0, 0, 0, 0] = np.inf  # an Inf weight times zero padding is NaN, as in torch
    out = conv3d(x, w, b, padding=1, algorithm="channel-vectorized")
    assert np.isnan(out[0, 5, 0, 0, 0]) and np.isfinite(out[0, 4]).all()


def test_bitwise_as_the_jitted_path():
    x, w, b = _operands()

    @numba.njit
    def jitted(x, w, b):
        out = np.empty((1, 40, 3, 7, 7), np.float32)
        channel_vectorized.compute(x, w, b, True, out, (1, 1, 1), (1, 1, 1), (1, 1, 1), (5, 9, 9), 0, 1)
        return out

    np.testing.assert_array_equal(conv3d(x, w, b, padding=1, algorithm="channel-vectorized"), jitted(x, w, b))


@pytest.mark.parametrize("input_shape, weight_shape, dtype, expected", [
    ((1, 512, 2, 7, 7), (512, 512, 3, 3, 3), "float32", "channel-vectorized"),
    ((1, 256, 4, 4, 4), (256, 256, 3, 3, 3), "float32", "channel-vectorized"),
    ((1, 256, 2, 4, 4), (256, 256, 5, 5, 5), "float32", "channel-vectorized"),
    ((1, 512, 2, 7, 7), (512, 512, 3, 3, 3), "float64", "gemm"),  # measured in float32 only
    ((1, 512, 4, 7, 7), (512, 512, 3, 1, 1), "float32", "gemm"),  # few taps
    ((1, 128, 4, 8, 8), (128, 128, 5, 5, 5), "float32", "channel-vectorized"),  # V-Net, 0.25 tiles/channel
    ((2, 128, 4, 8, 8), (128, 128, 5, 5, 5), "float32", "channel-vectorized"),  # 0.5
    ((1, 128, 4, 8, 8), (128, 128, 5, 5, 5), "float64", "winograd-points"),
    ((1, 256, 4, 8, 8), (256, 256, 5, 5, 5), "float32", "winograd-points"),  # 256 channels
    ((1, 128, 8, 16, 16), (128, 128, 5, 5, 5), "float32", "winograd-points"),  # 2 tiles per channel
    ((1, 128, 8, 8, 8), (128, 128, 3, 3, 3), "float32", "winograd-points"),  # 1 tile per channel
    ((1, 64, 8, 8, 8), (64, 64, 3, 3, 3), "float32", "channel-vectorized"),  # fewer than 96 channels
])
def test_small_dense_volumes_take_the_channel_vectorized_kernel(input_shape, weight_shape, dtype, expected):
    padding = tuple(k // 2 for k in weight_shape[2:])
    assert plan_conv3d(input_shape, weight_shape, padding=padding, dtype=dtype).algorithm == expected
