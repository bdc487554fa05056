"""bfloat16 on AMX tiles (``cpu/amx_bfloat16.py``): float32 sums of bfloat16 pairs by ``tdpbf16ps``
against the float64 oracle of the bfloat16 operands on every padding mode, where the CPU has the tiles
(batch 0, views, NaN and Inf, threads and torch: ``test_bfloat16_dot.py``'s checks of every such
kernel); the input and weight layouts the tiles read, and the planner's rules, everywhere."""
import ml_dtypes
import numpy as np
import pytest

from checks import (AMX_TILES_REASON, assert_bfloat16_within_bound, bfloat16_operands, has_amx_tiles,
                    mode_cases)
from numba_conv3d import conv3d
from numba_conv3d.cpu import amx_bfloat16, amx_layout
from numba_conv3d.cpu.amx_tiles import aligned_zeros
from numba_conv3d.planner import plan_conv3d
from numba_conv3d.shape_rules import PADDING_MODES
from reference import NUMPY_PAD_MODES

ALGORITHM = "bfloat16-amx"
needs_tiles = pytest.mark.skipif(not has_amx_tiles(), reason=AMX_TILES_REASON)

# Channel counts whose pairs fill tile rows of 1 to 16 pairs, odd ones (a pair half zero), several
# chunks (40 and 70 channels), output channels past a block of 32 and short of one; groups, dilation,
# 1-wide and odd extents, outputs whose grid positions cross rows and planes, unbatched input, 1x1x1,
# strides.
SHAPES = (
    ((2, 5, 4, 7, 6), (16, 5, 3, 3, 3), {"padding": 1}),
    ((1, 6, 5, 8, 8), (18, 3, 3, 3, 3), {"padding": (1, 0, 1), "groups": 2}),
    ((1, 4, 6, 7, 1), (20, 4, 3, 3, 1), {"padding": (2, 2, 0), "dilation": (2, 2, 1)}),
    ((16, 3, 9, 14), (33, 16, 1, 3, 3), {"padding": (0, 1, 1)}),
    ((1, 40, 3, 5, 5), (40, 40, 2, 2, 2), {}),
    ((1, 70, 2, 4, 4), (8, 70, 3, 3, 3), {"padding": 1}),
    ((2, 12, 3, 4, 10), (64, 6, 3, 1, 1), {"padding": (1, 0, 0), "groups": 2}),
    ((1, 32, 3, 5, 6), (48, 32, 1, 1, 1), {}),
    ((1, 9, 6, 6, 6), (17, 9, 5, 5, 5), {"padding": 2}),
    ((1, 8, 2, 7, 7), (32, 8, 3, 3, 3), {"padding": 1, "dilation": (1, 2, 1)}),
    # strides: a grid per stride phase
    ((1, 16, 8, 9, 10), (32, 16, 3, 3, 3), {"stride": 2, "padding": 1}),
    ((2, 20, 5, 12, 11), (24, 20, 1, 3, 3), {"stride": (1, 2, 2), "padding": (0, 1, 1)}),
    ((1, 12, 9, 9, 9), (20, 6, 3, 3, 3), {"stride": (3, 2, 1), "padding": 1, "dilation": (1, 2, 1),
                                          "groups": 2}),
    ((1, 8, 8, 8, 7), (16, 8, 2, 2, 2), {"stride": 2}),
    ((1, 40, 6, 7, 8), (33, 40, 1, 1, 1), {"stride": 2}),
    # tasks of many position blocks, stored while the next one's products run (181 blocks)
    ((1, 8, 12, 20, 20), (16, 8, 3, 3, 3), {"padding": 1}),
    # planes laid out in two bands of rows (``LAYOUT_BAND_POSITIONS``)
    ((1, 6, 2, 40, 30), (8, 6, 3, 3, 3), {"padding": (1, 2, 1), "stride": (1, 2, 1)}),
    # fewer output channels than a tile's columns: 2 and 3 of 16 stored
    ((1, 32, 5, 6, 7), (2, 32, 3, 3, 3), {"padding": 1}),
    ((2, 40, 4, 5, 6), (3, 40, 1, 1, 1), {}),
)


@needs_tiles
@pytest.mark.parametrize("x_shape,w_shape,kwargs,mode", mode_cases(SHAPES))
def test_matches_reference(x_shape, w_shape, kwargs, mode):
    kwargs = dict(kwargs, padding_mode=mode)
    for bias in (True, False):
        x, w, b = bfloat16_operands(x_shape, w_shape, bias)
        assert_bfloat16_within_bound(conv3d(x, w, b, algorithm=ALGORITHM, **kwargs), x, w, b, **kwargs)


@needs_tiles
@pytest.mark.parametrize("input_shape,weight_shape,kwargs,expected", [
    ((1, 256, 4, 14, 14), (256, 256, 3, 3, 3), {"padding": 1}, ALGORITHM),
    ((1, 16, 32, 32, 32), (32, 16, 3, 3, 3), {"padding": 1}, ALGORITHM),  # 16 x 27 taps
    ((1, 3, 16, 112, 112), (64, 3, 3, 7, 7), {"padding": (1, 3, 3)}, ALGORITHM),  # 3 x 147 taps
    ((1, 460, 8, 14, 14), (256, 460, 3, 1, 1), {"padding": (1, 0, 0)}, ALGORITHM),
    ((1, 8, 32, 32, 32), (16, 8, 3, 3, 3), {"padding": 1}, ALGORITHM),  # 8 x 27 taps
    ((1, 2, 32, 64, 64), (16, 2, 3, 3, 3), {"padding": 1}, "bfloat16-rows"),  # 2 x 27 taps
    ((1, 64, 16, 56, 56), (128, 64, 3, 3, 3), {"padding": 1, "stride": 2}, ALGORITHM),
    ((1, 32, 16, 32, 32), (64, 32, 2, 2, 2), {"stride": 2}, ALGORITHM),  # strided: 64 x 8 taps / 8 phases
    ((1, 16, 32, 32, 32), (16, 16, 2, 2, 2), {"stride": 2}, "bfloat16-rows"),  # 16 x 8 taps / 8 phases
    ((1, 3, 64, 64, 64), (16, 3, 3, 3, 3), {"stride": 2, "padding": 1}, "bfloat16-rows"),  # 3 channels
    ((1, 3, 64, 64, 64), (16, 3, 3, 3, 3), {"padding": 1}, ALGORITHM),  # 3 x 27 taps, 16 x 27
    ((1, 96, 13, 10, 10), (432, 96, 1, 1, 1), {}, ALGORITHM),
    ((1, 64, 32, 32, 32), (128, 64, 1, 1, 1), {}, ALGORITHM),
    ((1, 24, 13, 40, 40), (54, 24, 1, 1, 1), {}, "bfloat16-rows"),  # 54 output channels x 1 tap
    ((1, 64, 32, 32, 32), (32, 64, 1, 1, 1), {}, "bfloat16-rows"),  # 32 outputs on a large volume
    ((1, 64, 16, 16, 16), (32, 64, 1, 1, 1), {}, ALGORITHM),  # ... on a small one
    ((1, 432, 1, 1, 1), (192, 432, 1, 1, 1), {}, "gemm"),  # one position
    ((1, 32, 32, 64, 64), (2, 32, 5, 5, 5), {"padding": 2}, ALGORITHM),  # few outputs of 32 channels
    ((1, 24, 32, 32, 32), (2, 24, 3, 3, 3), {"padding": 1}, "row-blocked"),  # ... of 24
    ((1, 128, 8, 28, 28), (256, 128, 1, 1, 1), {"stride": 2}, ALGORITHM),  # one phase of 8 read
    ((1, 64, 16, 32, 32), (64, 1, 7, 7, 7), {"padding": 3, "groups": 64}, "row-blocked"),  # depthwise
    ((1, 64, 16, 32, 32), (64, 2, 5, 5, 5), {"padding": 2, "groups": 32}, "row-blocked"),  # 2 per group
])
def test_where_the_planner_takes_it(input_shape, weight_shape, kwargs, expected):
    assert plan_conv3d(input_shape, weight_shape, dtype="bfloat16", **kwargs).algorithm == expected


def test_without_the_tiles_it_does_not_serve(without_amx):
    plan = plan_conv3d((1, 64, 7, 8, 9), (64, 64, 3, 3, 3), padding=1, dtype="bfloat16")
    assert plan.algorithm != ALGORITHM and not amx_bfloat16.serves(plan)


def test_other_dtypes_are_not_served():
    for dtype in ("float32", "float16"):
        with pytest.raises(ValueError, match="does not serve"):
            plan_conv3d((1, 32, 4, 4, 4), (32, 32, 3, 3, 3), dtype=dtype, algorithm=ALGORITHM)


def test_only_the_phases_some_tap_reads_are_laid_out():
    """A kernel that reads one phase along D and W (of stride 2) lays out those phases, each position
    the pair of channels at its padded position; the others are never read and need not be written."""
    read = amx_layout.phases_read((1, 3, 2), (1, 1, 2), (2, 2, 2))
    assert read.tolist() == [[1, 0], [1, 1], [1, 0]]  # 2 taps 2 apart along W: phase 0 only
    bits = np.arange(2 * 4 * 4 * 4, dtype=np.uint16).reshape(1, 2, 4, 4, 4)
    grid = amx_layout.grid_size((4, 4, 4), (2, 2, 2))
    grids = amx_layout.chunk_grids(bits, 1, 1, 1, (4, 4, 4), (0, 0, 0), 0, (2, 2, 2), read, grid, 8)
    for phase, (a, b, c) in enumerate(np.ndindex(2, 2, 2)):
        if (a, c) != (0, 0):
            continue
        held = grids[0, 0, 0, phase * 8:(phase + 1) * 8, 0]
        for z, y, x in np.ndindex(*grid):
            low, high = (int(bits[0, k, 2 * z + a, 2 * y + b, 2 * x + c]) for k in range(2))
            assert held[(z * grid[1] + y) * grid[2] + x] == low | high << 16


@pytest.mark.parametrize("in_per_group,expected", [
    (1, (1, 1)), (3, (1, 2)), (16, (1, 8)), (24, (1, 16)), (32, (1, 16)), (40, (2, 16)), (70, (3, 16)),
    (512, (16, 16)),
])
def test_chunking(in_per_group, expected):
    """Chunks of at most 16 pairs, as few as hold the channels, each a power of two pairs wide."""
    assert amx_layout.chunking(in_per_group) == expected


def test_aligned_zeros_start_on_a_cache_line():
    for count in (1, 7, 1000):
        for dtype in (np.uint16, np.uint32, np.float32):
            zeros = aligned_zeros(count, dtype)
            assert zeros.ctypes.data % 64 == 0 and zeros.size == count and zeros.dtype == dtype
            assert not zeros.any()


@pytest.mark.parametrize("mode", PADDING_MODES)
@pytest.mark.parametrize("stride", [(1, 1, 1), (2, 1, 2)])
@pytest.mark.parametrize("extents", [(3, 4, 5), (2, 37, 33)])  # planes of one band and of two
def test_chunk_grids_hold_the_padded_input_in_pairs_by_stride_phase(mode, stride, extents):
    """Each position of a stride phase's grid that lies in the padded volume holds the padded input's
    channel pairs of its chunk (low half the even channel), zero past the group's channels. (Positions
    past the padded volume are read only for grid positions that are no output.)"""
    bits = np.random.default_rng(1).integers(0, 1 << 16, (2, 10) + extents, dtype=np.uint16)
    groups, pads = 2, (1, 2, 1)
    padded = tuple(n + 2 * p for n, p in zip(bits.shape[2:], pads))
    grid = amx_layout.grid_size(padded, stride)
    positions = int(np.prod(grid)) + 16
    chunks, chunk_pairs = amx_layout.chunking(5)
    read = np.ones((3, 2), np.uint8)
    grids = amx_layout.chunk_grids(bits, groups, chunks, chunk_pairs, padded, pads,
                                     PADDING_MODES.index(mode), stride, read, grid, positions)
    phases = int(np.prod(stride))
    assert grids.shape == (2, groups, 1, phases * positions, 4) and grids.ctypes.data % 64 == 0
    wide = np.pad(bits, [(0, 0), (0, 0)] + [(p, p) for p in pads], mode=NUMPY_PAD_MODES[mode])
    wide = np.pad(wide, [(0, 0), (0, 0)] + [(0, g * s - n) for g, s, n in zip(grid, stride, padded)])
    for phase, (a, b, c) in enumerate(np.ndindex(*stride)):
        z, y, x = np.indices(grid).reshape(3, -1)
        inside = ((z * stride[0] + a < padded[0]) & (y * stride[1] + b < padded[1])
                  & (x * stride[2] + c < padded[2]))
        volume = wide[:, :, a::stride[0], b::stride[1], c::stride[2]].reshape(2, groups, 5, -1)[..., inside]
        held = grids[:, :, 0, phase * positions:phase * positions + z.size][:, :, inside]
        np.testing.assert_array_equal(held[..., :2] & 0xFFFF, volume[:, :, 0:4:2].transpose(0, 1, 3, 2))
        np.testing.assert_array_equal(held[..., :2] >> 16, volume[:, :, 1:4:2].transpose(0, 1, 3, 2))
        np.testing.assert_array_equal(held[..., 2], volume[:, :, 4])  # half zero
        assert not held[..., 3].any()


def test_packed_tiles_hold_pairs_by_output_channel():
    weight = np.arange(40 * 3 * 2, dtype=np.float32).reshape(40, 3, 2, 1, 1).astype(ml_dtypes.bfloat16)
    bits = weight.view(np.uint16)
    packed, = amx_bfloat16.pack_tiles(bits, 1)
    assert packed.shape == (1, 2, 1, 2, 2, 2, 16, 2) and packed.ctypes.data % 64 == 0
    for channel in (0, 17, 39):
        block, half, column = channel // 32, channel % 32 // 16, channel % 16
        for tap in range(2):
            tile = packed[0, block, 0, tap, half]
            assert tile[0, column].tolist() == [bits[channel, 0, tap, 0, 0], bits[channel, 1, tap, 0, 0]]
            assert tile[1, column].tolist() == [bits[channel, 2, tap, 0, 0], 0]
    assert not packed[0, 1, :, :, 0, :, 8:].any()  # channels 40-47 of the second block
    assert not packed[0, 1, :, :, 1].any()  # channels 48-63
