"""Tile geometry of the CUDA kernels (pure Python: runs everywhere)."""
import numpy as np
import pytest

from numba_conv3d import config
from numba_conv3d.cuda import tiling


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
