"""Tile geometry and index maps of the CUDA kernels (pure Python: runs everywhere)."""
import numpy as np
import pytest

from numba_conv3d import cuda_config, plan_conv3d
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
        assert sums <= cuda_config.CUDA_SUM_BYTES or tile.rows_per_thread == 1


def test_a_tile_whose_threads_cannot_stage_its_weights_is_refused(monkeypatch):
    monkeypatch.setattr(cuda_config, "CUDA_CHANNEL_TILE", dict(cuda_config.CUDA_CHANNEL_TILE, columns=3,
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


def test_a_gemm_tile_that_breaks_a_rule_is_refused():
    from numba_conv3d.cuda.gemm_plan import checked_tile

    with pytest.raises(ValueError, match=r"\(64, 64, 8, 3, 4\).*multiples of thread_m"):
        checked_tile((64, 64, 8, 3, 4))
    with pytest.raises(ValueError, match=r"whole reduction rows"):
        checked_tile((128, 64, 1, 8, 4))


def test_layer_classes_pick_tiles_by_channels_and_positions(monkeypatch):
    from numba_conv3d.cuda import gemm_plan

    monkeypatch.setattr(cuda_config, "CUDA_GEMM_CLASSES", (
        (16, None, (128, 16, 8, 4, 4), 0), (None, 4096, (64, 64, 8, 4, 4), 264),
        (None, None, (128, 64, 8, 8, 4), 0)))
    narrow = plan_conv3d((1, 8, 8, 8, 8), (16, 8, 3, 3, 3), padding=1, backend="cuda")
    small = plan_conv3d((1, 64, 4, 8, 8), (64, 64, 3, 3, 3), padding=1, backend="cuda")
    large = plan_conv3d((1, 64, 16, 32, 32), (64, 64, 3, 3, 3), padding=1, backend="cuda")
    assert gemm_plan.tile_for(narrow).block_n == 16
    assert gemm_plan.layer_class(small) == (gemm_plan.GemmTile(64, 64, 8, 4, 4), 264)
    assert gemm_plan.tile_for(large).block_m == 128


def test_a_small_volume_splits_its_reduction_in_whole_stages(monkeypatch):
    from numba_conv3d.cuda import gemm_plan

    monkeypatch.setattr(cuda_config, "CUDA_GEMM_CLASSES", ((None, None, (64, 64, 8, 4, 4), 264),))
    monkeypatch.setattr(cuda_config, "CUDA_GEMM_TAP_MAJOR_MIN_MACS", 0)
    plan = plan_conv3d((1, 512, 2, 7, 7), (512, 512, 3, 3, 3), padding=1, backend="cuda")
    launch = gemm_plan.launch_for(plan)
    assert launch.tap_major and launch.stages == 27 * 512 // 8
    blocks = launch.grid[0] * launch.grid[1]
    assert blocks == 2 * 8 and launch.splits == launch.grid[2] > 1
    per_split = -(-launch.stages // launch.splits)
    assert per_split >= cuda_config.CUDA_GEMM_MIN_SPLIT_STAGES
    assert (launch.splits - 1) * per_split < launch.stages
    assert blocks * launch.splits >= 264


@pytest.mark.parametrize("channels", [3, 16])
def test_the_taps_table_packs_each_steps_offset_and_taps(channels, monkeypatch):
    from numba_conv3d.cuda import gemm_plan, geometry

    monkeypatch.setattr(cuda_config, "CUDA_GEMM_TAP_MAJOR_MIN_MACS", 0)
    plan = plan_conv3d((1, channels, 5, 6, 7), (8, channels, 2, 3, 3), padding=1, dilation=(1, 2, 1),
                       backend="cuda")
    launch = gemm_plan.launch_for(plan)
    table = geometry.taps(plan)
    per_channel = 1 if launch.tap_major else channels
    c, kd, kh, kw = np.unravel_index(np.arange(per_channel * 18), (per_channel, 2, 3, 3))
    steps = table[:c.size]
    np.testing.assert_array_equal(steps & geometry.TAP_OFFSET, ((c * 5 + kd) * 6 + 2 * kh) * 7 + kw)
    for shift, index in ((geometry.TAP_DEPTH_SHIFT, kd), (geometry.TAP_ROW_SHIFT, kh),
                         (geometry.TAP_COLUMN_SHIFT, kw)):
        np.testing.assert_array_equal((steps >> shift) & geometry.TAP_INDEX, index)
    assert launch.tap_major == (channels == 16)
    assert np.all((table[c.size:] >> geometry.TAP_DEPTH_SHIFT) & geometry.TAP_INDEX == geometry.TAP_NONE)


def test_small_layers_reduce_in_the_weights_order():
    from numba_conv3d.cuda import gemm_plan

    small = plan_conv3d((1, 64, 4, 8, 8), (64, 64, 3, 3, 3), padding=1, backend="cuda")
    large = plan_conv3d((1, 64, 16, 56, 56), (64, 64, 3, 3, 3), padding=1, backend="cuda")
    assert small.macs < cuda_config.CUDA_GEMM_TAP_MAJOR_MIN_MACS <= large.macs
    assert not gemm_plan.launch_for(small).tap_major and gemm_plan.launch_for(large).tap_major
