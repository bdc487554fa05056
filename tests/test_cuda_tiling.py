"""Tile geometry and index maps of the CUDA kernels (pure Python: runs everywhere)."""
import numpy as np
import pytest

from numba_conv3d import config, plan_conv3d
from numba_conv3d.cuda import tiling
from numba_conv3d.shape_rules import padded_source_index


def test_unravel_matches_numpy():
    extents = (3, 5, 2, 7, 4)
    for index in range(int(np.prod(extents))):
        digits = tiling.unravel(index, *extents[:4])
        assert digits == tuple(int(d) for d in np.unravel_index(index, extents[::-1])[::-1])


def test_staged_extent_covers_the_last_tap_of_the_last_output():
    for outputs, stride, kernel, dilation in [(32, 1, 3, 1), (16, 2, 5, 3), (1, 4, 1, 1)]:
        last_read = (outputs - 1) * stride + (kernel - 1) * dilation
        assert tiling.staged_extent(outputs, stride, kernel, dilation) == last_read + 1


def test_wide_dtypes_trade_rows_per_thread_for_thread_rows():
    narrow, wide = tiling.channel_tile("float32"), tiling.channel_tile("complex128")
    assert wide.block_rows == narrow.block_rows and wide.block_channels == narrow.block_channels
    for dtype in ("float32", "float64", "complex64", "complex128"):
        tile = tiling.channel_tile(dtype)
        sums = tile.rows_per_thread * tile.channels_per_thread * np.dtype(dtype).itemsize
        assert sums <= config.CUDA_SUM_BYTES or tile.rows_per_thread == 1


def test_a_tile_whose_threads_cannot_stage_its_weights_is_refused(monkeypatch):
    monkeypatch.setattr(config, "CUDA_CHANNEL_TILE", dict(config.CUDA_CHANNEL_TILE, columns=3,
                                                          thread_rows=1, channel_threads=2))
    with pytest.raises(ValueError, match=r"CUDA_CHANNEL_TILE: the block's 6 threads must be a multiple"):
        tiling.channel_tile("float32")


@pytest.mark.parametrize("padding, mode", [(2, "zeros"), ((1, 2, 3), "reflect"), (3, "replicate"),
                                           ((4, 0, 5), "circular")])
def test_inverse_index_maps_list_every_copy_of_each_input_index_in_ascending_order(padding, mode):
    pytest.importorskip("numba.cuda")
    from numba_conv3d.cuda.gradients import inverse_index_maps

    plan = plan_conv3d((1, 1, 4, 5, 6), (1, 1, 2, 2, 2), padding=padding, padding_mode=mode)
    starts, positions = inverse_index_maps(plan)
    for axis in range(3):
        front, size = plan.pad_front[axis], plan.input_size[axis]
        for i in range(size):
            copies = [p for p in range(plan.padded_size[axis]) if padded_source_index(p, front, size,
                                                                                      plan.mode_code) == i]
            assert list(positions[axis, starts[axis, i]:starts[axis, i + 1]]) == copies
