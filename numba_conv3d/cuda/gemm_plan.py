"""What an implicit-GEMM launch needs besides the operands, worked out once per plan and free of any
``numba.cuda`` import: the tile, the split of the reduction, the grid, the geometry and taps arrays."""
import functools
from collections import namedtuple

import numpy as np

from .. import config
from ..shape_rules import ceil_div
from . import gemm_kernels as slots

_TILE_FIELDS = ("block_m", "block_n", "block_k", "thread_m", "thread_n")

# Grid limits of CUDA: y and z extents.
_GRID_YZ = 65535


class GemmTile(namedtuple("GemmTile", _TILE_FIELDS)):
    """A block's ``block_m`` positions x ``block_n`` output channels, ``block_k`` reduction steps per
    stage; each thread sums ``thread_m x thread_n`` outputs."""

    __slots__ = ()

    @property
    def threads(self):
        """Threads per block."""
        return (self.block_m // self.thread_m) * (self.block_n // self.thread_n)

    def shared_bytes(self, itemsize):
        """Static shared memory of a block: two stages of input columns and of (padded) weights."""
        return 2 * self.block_k * (self.block_m + self.block_n + 4) * itemsize


def checked_tile(settings):
    """``settings`` (a dict or sequence of ``GemmTile`` fields) as a tile the kernel can run: ValueError
    naming the rule it breaks otherwise."""
    tile = GemmTile(**settings) if isinstance(settings, dict) else GemmTile(*settings)
    threads = tile.threads
    rules = ((tile.block_m % tile.thread_m == 0 and tile.block_n % tile.thread_n == 0,
              "block_m and block_n must be multiples of thread_m and thread_n"),
             (threads % tile.block_m == 0 and tile.block_k % (threads // tile.block_m) == 0,
              "the threads must gather whole reduction rows of block_m positions"),
             (threads % tile.block_k == 0 and tile.block_n % (threads // tile.block_k) == 0,
              "the threads must stage whole columns of block_k weights"),
             (all(size % min(4, per) == 0 for size, per in ((tile.thread_m, tile.thread_m),
                                                            (tile.thread_n, tile.thread_n))),
              "thread_m and thread_n must be 1, 2 or multiples of 4"))
    for holds, rule in rules:
        if not holds:
            raise ValueError(f"CUDA GEMM tile {tuple(tile)} ({threads} threads): {rule}")
    return tile


def tile_for(plan):
    """The tile of ``config.CUDA_GEMM_TILES`` for the plan's output channels per group: the narrowest
    whose ``block_n`` covers them (the widest beyond)."""
    tiles = sorted((checked_tile(t) for t in config.CUDA_GEMM_TILES), key=lambda t: t.block_n)
    return next((t for t in tiles if t.block_n >= plan.out_per_group), tiles[-1])


def reduction_length(plan):
    """Reduction steps of one output: input channels per group x kernel taps."""
    return plan.in_per_group * int(np.prod(plan.kernel_size))


Launch = namedtuple("Launch", "tile grid splits stages")
Launch.__doc__ = """An implicit-GEMM launch: the tile, the grid (position tiles, groups x channel tiles,
splits), the number of reduction splits and the stages of ``block_k`` steps in all."""


def launch_for(plan, tile=None):
    """The launch of ``plan`` with ``tile`` (by default ``tile_for(plan)``): the reduction is split when
    the tiles alone would fill less than ``config.CUDA_GEMM_TARGET_BLOCKS`` blocks, keeping at least
    ``config.CUDA_GEMM_MIN_SPLIT_STAGES`` stages per split."""
    tile = tile or tile_for(plan)
    positions = plan.batch * int(np.prod(plan.output_size))
    blocks = ceil_div(positions, tile.block_m) * plan.groups * ceil_div(plan.out_per_group, tile.block_n)
    stages = ceil_div(reduction_length(plan), tile.block_k)
    splits = max(1, min(ceil_div(config.CUDA_GEMM_TARGET_BLOCKS, max(blocks, 1)),
                        stages // config.CUDA_GEMM_MIN_SPLIT_STAGES, _GRID_YZ))
    per_split = ceil_div(stages, splits)
    splits = ceil_div(stages, per_split)
    grid = (ceil_div(positions, tile.block_m), plan.groups * ceil_div(plan.out_per_group, tile.block_n),
            splits)
    return Launch(tile, grid, splits, stages)


def applies(plan):
    """Whether the implicit GEMM serves ``plan``: a real dtype, at least
    ``config.CUDA_GEMM_MIN_OUT_CHANNELS`` output channels per group, and a grid CUDA can launch."""
    if np.dtype(plan.dtype).kind != "f" or plan.out_per_group < config.CUDA_GEMM_MIN_OUT_CHANNELS:
        return False
    return launch_for(plan).grid[1] <= _GRID_YZ


def workspace_bytes(plan):
    """Device bytes beyond the output: the partial outputs of a split reduction, and the padded input
    of a non-zero padding mode."""
    itemsize = np.dtype(plan.dtype).itemsize
    splits = launch_for(plan).splits
    partials = plan.batch * plan.out_channels * int(np.prod(plan.output_size)) * splits
    padded = plan.batch * plan.in_channels * int(np.prod(plan.padded_size))
    return itemsize * ((partials if splits > 1 else 0) + (padded if plan.padding_mode != "zeros" else 0))


def shared_bytes(plan):
    """Shared memory of one block (static: the tile is compiled in)."""
    return tile_for(plan).shared_bytes(np.dtype(plan.dtype).itemsize)


def reads_padded_copy(plan):
    """Whether the kernel reads a padded copy of the input (non-zero padding modes): it then sees no
    padding, only the copy's extents."""
    return plan.padding_mode != "zeros"


@functools.lru_cache(maxsize=256)
def geometry(plan):
    """The int64 geometry array of ``plan``'s launch (slots ``gemm_kernels.G_*``)."""
    launch = launch_for(plan)
    padded = reads_padded_copy(plan)
    extents = plan.padded_size if padded else plan.input_size
    pads = (0, 0, 0) if padded else plan.pad_front
    values = np.zeros(slots.GEOMETRY_SLOTS, np.int64)
    out_volume = int(np.prod(plan.output_size))
    values[[slots.G_OUT_DEPTH, slots.G_OUT_HEIGHT, slots.G_OUT_WIDTH]] = plan.output_size
    values[[slots.G_STRIDE_D, slots.G_STRIDE_H, slots.G_STRIDE_W]] = plan.stride
    values[[slots.G_PAD_D, slots.G_PAD_H, slots.G_PAD_W]] = pads
    values[[slots.G_DEPTH, slots.G_HEIGHT, slots.G_WIDTH]] = extents
    values[slots.G_POSITIONS] = plan.batch * out_volume
    values[slots.G_OUT_VOLUME] = out_volume
    values[slots.G_IN_CHANNELS] = plan.in_channels
    values[slots.G_IN_PER_GROUP] = plan.in_per_group
    values[slots.G_OUT_CHANNELS] = plan.out_channels
    values[slots.G_OUT_PER_GROUP] = plan.out_per_group
    values[slots.G_REDUCTION] = reduction_length(plan)
    values[slots.G_CHANNEL_TILES] = ceil_div(plan.out_per_group, launch.tile.block_n)
    values[slots.G_STAGES] = launch.stages
    values[slots.G_STAGES_PER_SPLIT] = ceil_div(launch.stages, launch.splits)
    values[slots.G_HAS_BIAS] = plan.has_bias
    values[slots.G_SPLIT_ELEMENTS] = plan.batch * plan.out_channels * out_volume
    return values


@functools.lru_cache(maxsize=256)
def taps(plan):
    """The int64 taps table of ``plan`` (rows of ``gemm_kernels.T_*``), one row per reduction step in
    the weight's memory order (input channel, kd, kh, kw), padded to whole stages with rows that
    reach no input."""
    launch = launch_for(plan)
    depth, height, width = plan.padded_size if reads_padded_copy(plan) else plan.input_size
    kernel_d, kernel_h, kernel_w = plan.kernel_size
    channel, kd, kh, kw = np.meshgrid(np.arange(plan.in_per_group), np.arange(kernel_d),
                                      np.arange(kernel_h), np.arange(kernel_w), indexing="ij")
    offsets = np.stack([kd * plan.dilation[0], kh * plan.dilation[1], kw * plan.dilation[2]])
    table = np.zeros((launch.stages * launch.tile.block_k, slots.TAP_FIELDS), np.int64)
    table[:, slots.T_DEPTH] = slots.FAR
    steps = reduction_length(plan)
    table[:steps, slots.T_DEPTH] = offsets[0].ravel()
    table[:steps, slots.T_ROW] = offsets[1].ravel()
    table[:steps, slots.T_COLUMN] = offsets[2].ravel()
    table[:steps, slots.T_OFFSET] = (((channel * depth + offsets[0]) * height + offsets[1]) * width
                                     + offsets[2]).ravel()
    return table
