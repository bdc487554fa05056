"""The Winograd rows run on the unflipped weight of an input gradient (``Algorithm.run_flipped``): their
weight transforms read the flipped, channel-swapped weight in place, so the results are bitwise those of
the same plan on ``flipped_transpose``'s copy, in every padding mode, with groups, 1xKxK and KxKxK
kernels, in ranges of weight points, and where a NaN or Inf sends the call to the direct sums."""
import numpy as np
import pytest

from checks import assert_matches_winograd_bound, flipped_operands, random_operands
from numba_conv3d import conv3d_input, plan_conv3d
from numba_conv3d.config import BLOCK_CHANNELS
from numba_conv3d.cpu import (execute, execute_flipped, gradients, reads_flipped, winograd_points,
                              winograd_tiles)
from numba_conv3d.cpu.gradients import flipped_transpose
from reference import conv3d_reference

WINOGRAD_ROWS = ("winograd", "winograd-points")

# (correlation input, its flipped weight's shape, arguments): the input gradient's correlations, whose
# weight is (C_in, C_out / g, K...) of the forward layer's (C_out, C_in / g, K...).
CASES = [
    ((2, 24, 5, 9, 11), (40, 24, 3, 3, 3), {"padding": 1}),
    ((1, 16, 3, 13, 7), (24, 8, 1, 3, 3), {"padding": (0, 1, 1), "groups": 2, "padding_mode": "circular"}),
    ((2, 12, 6, 10, 14), (18, 4, 3, 3, 3), {"padding": 2, "groups": 3}),
    ((2, 10, 5, 9, 11), (12, 5, 5, 5, 5), {"padding": 2, "groups": 2, "padding_mode": "reflect"}),
    ((1, 8, 3, 13, 7), (9, 8, 1, 5, 5), {"padding": (0, 4, 4)}),
    ((1, 20, 2, 6, 6), (44, 10, 3, 3, 3), {"padding": 1, "groups": 2, "padding_mode": "replicate"}),
    ((2, 3, 8, 28, 32), (5, 3, 3, 3, 3), {"padding": 1}),
]


def _operands(seed, x_shape, w_shape, kwargs, dtype=np.float32):
    """The correlation's input, the forward layer's (unflipped) weight, its flipped copy and a bias."""
    return flipped_operands(np.random.default_rng(seed), x_shape, w_shape, kwargs.get("groups", 1), dtype)


@pytest.mark.parametrize("algorithm", WINOGRAD_ROWS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("x_shape, w_shape, kwargs", CASES)
def test_unflipped_weight_gives_bitwise_the_flipped_copys_result(x_shape, w_shape, kwargs, dtype, algorithm):
    x, unflipped, flipped, b = _operands(sum(x_shape), x_shape, w_shape, kwargs, dtype)
    plan = plan_conv3d(x_shape, w_shape, dtype=dtype, algorithm=algorithm, **kwargs)
    assert reads_flipped(plan)
    result = execute_flipped(plan, x, unflipped, b)
    np.testing.assert_array_equal(result, execute(plan, x, flipped, b))
    assert_matches_winograd_bound(result, x, flipped, b, **kwargs)


@pytest.mark.parametrize("x_shape, w_shape, kwargs", CASES)
def test_ranges_of_weight_points_read_the_unflipped_weight(x_shape, w_shape, kwargs, monkeypatch):
    """Weight points made one or two channel blocks at a time, each range read flipped from the weight."""
    x, unflipped, flipped, b = _operands(5, x_shape, w_shape, kwargs)
    plan = plan_conv3d(x_shape, w_shape, algorithm="winograd-points", **kwargs)
    expected = execute(plan, x, flipped, b)
    block_bytes = 4 * plan.groups * plan.in_per_group * BLOCK_CHANNELS * winograd_tiles.points_of(
        w_shape[2:], winograd_tiles.plan_points_tile(plan))
    monkeypatch.setattr(winograd_points, "_RANGE_READS", 2 ** 40)
    for blocks in (1, 2):
        monkeypatch.setattr(winograd_points, "WINOGRAD_POINTS_WEIGHT_RANGE_BYTES", blocks * block_bytes)
        np.testing.assert_array_equal(execute_flipped(plan, x, unflipped, b), expected)


@pytest.mark.parametrize("algorithm", WINOGRAD_ROWS)
@pytest.mark.parametrize("where", ["weight", "input"])
def test_nan_and_inf_fall_back_to_the_direct_sums_of_the_flipped_weight(where, algorithm):
    x_shape, w_shape, kwargs = CASES[2]
    x, unflipped, _, b = _operands(6, x_shape, w_shape, kwargs)
    if where == "weight":
        unflipped[3, 1, 0, 2, 1], unflipped[7, 2, 2, 2, 2] = np.inf, np.nan
    else:
        x[0, 1, 2, 3, 4], x[1, 5, 5, 0, 0] = np.inf, -np.inf
    flipped = flipped_transpose(unflipped, kwargs["groups"], False)
    plan = plan_conv3d(x_shape, w_shape, algorithm=algorithm, **kwargs)
    result = execute_flipped(plan, x, unflipped, b)
    np.testing.assert_array_equal(result, execute(plan, x, flipped, b))
    expected = conv3d_reference(x, flipped, b, **kwargs)
    np.testing.assert_array_equal(np.isnan(result), np.isnan(expected))
    np.testing.assert_array_equal(result[np.isinf(expected)], expected[np.isinf(expected)])


@pytest.mark.parametrize("x_shape, w_shape, padding, algorithm", [
    ((1, 64, 16, 16, 16), (64, 64, 3, 3, 3), 1, "winograd"),
    ((1, 256, 4, 8, 8), (256, 256, 5, 5, 5), 2, "winograd-points"),
])
def test_input_gradient_copies_no_flipped_weight(x_shape, w_shape, padding, algorithm, monkeypatch):
    rng = np.random.default_rng(7)
    _, w, _ = random_operands(rng, x_shape, w_shape, False, np.float32)
    grad = rng.standard_normal((1, w_shape[0]) + x_shape[2:]).astype(np.float32)
    flipped = flipped_transpose(w, 1, False)
    assert plan_conv3d(grad.shape, flipped.shape, padding=padding).algorithm == algorithm

    def refused(*args):
        raise AssertionError("the input gradient copied its flipped weight")

    monkeypatch.setattr(gradients, "flipped_transpose", refused)
    result = conv3d_input(x_shape, w, grad, padding=padding)
    assert_matches_winograd_bound(result, grad, flipped, padding=padding)
