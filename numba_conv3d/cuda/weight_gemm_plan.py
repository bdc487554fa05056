"""How a weight-gradient GEMM launch is shaped (``weight_gemm_kernels``), worked out per plan and free
of any ``numba.cuda`` import: the tile, the split of the positions, the grid, the geometry and taps
arrays."""
import functools
from collections import namedtuple

import numpy as np

from .. import cuda_config
from ..shape_rules import ceil_div
from . import gemm_plan, geometry
from .geometry import (G_CHANNEL_TILES, G_HAS_BIAS, G_SPLIT_ELEMENTS, G_STAGES, G_STAGES_PER_SPLIT)


WeightLaunch = namedtuple("WeightLaunch", "tile grid splits stages")
WeightLaunch.__doc__ = """A weight-gradient launch: the tile (``block_m`` output channels x ``block_n``
columns, ``block_k`` positions a stage), the grid (column tiles, groups x channel tiles, splits), the
number of position splits and the stages of ``block_k`` positions in all."""


def _shared_bytes(tile, itemsize):
    """Static shared memory of a block: two stages of gradient rows and of input columns."""
    pitches = gemm_plan.staged_pitch(tile.block_m) + gemm_plan.staged_pitch(tile.block_n)
    return 2 * tile.block_k * pitches * itemsize


def checked_tile(fields):
    """``fields`` as a weight-gradient tile the kernel can run: ValueError naming the rule it breaks
    otherwise."""
    tile = gemm_plan.GemmTile(*fields)
    threads = tile.threads
    lanes = threads // tile.block_k if threads % tile.block_k == 0 else 0
    rules = ((tile.block_m % tile.thread_m == 0 and tile.block_n % tile.thread_n == 0,
              "block_m and block_n must be multiples of thread_m and thread_n"),
             (lanes and tile.block_m % lanes == 0 and tile.block_n % lanes == 0,
              "the threads must gather whole stages: block_k positions x (block_m + block_n) values"),
             gemm_plan.runs_rule(tile))
    return gemm_plan.obeyed(tile, "CUDA weight-gradient tile", rules)


def tile_for(dtype):
    """``cuda_config.CUDA_WEIGHT_GEMM_TILE`` for ``dtype``: with fewer positions a stage while its two
    stages exceed ``cuda_config.CUDA_SHARED_BYTES`` (8-byte dtypes)."""
    tile = checked_tile(cuda_config.CUDA_WEIGHT_GEMM_TILE)
    itemsize = np.dtype(dtype).itemsize
    while _shared_bytes(tile, itemsize) > cuda_config.CUDA_SHARED_BYTES and tile.block_k % 2 == 0:
        smaller = tile._replace(block_k=tile.block_k // 2)
        try:
            tile = checked_tile(smaller)
        except ValueError:
            break
    return tile


def launch_for(plan):
    """The launch of ``plan``'s weight gradient: the positions are split while the tiles alone make
    fewer blocks than ``cuda_config.CUDA_WEIGHT_GEMM_BLOCKS``, keeping at least
    ``cuda_config.CUDA_GEMM_MIN_SPLIT_STAGES`` stages per split."""
    tile = tile_for(plan.dtype)
    columns = ceil_div(gemm_plan.reduction_length(plan), tile.block_n)
    channel_tiles = plan.groups * ceil_div(plan.out_per_group, tile.block_m)
    stages = ceil_div(gemm_plan.output_positions(plan), tile.block_k)
    splits = max(1, min(ceil_div(cuda_config.CUDA_WEIGHT_GEMM_BLOCKS, columns * channel_tiles),
                        stages // cuda_config.CUDA_GEMM_MIN_SPLIT_STAGES, gemm_plan.GRID_YZ))
    splits = ceil_div(stages, ceil_div(stages, splits)) if stages else 1
    return WeightLaunch(tile, (columns, channel_tiles, splits), splits, stages)


def applies(plan):
    """Whether the weight-gradient GEMM serves ``plan``: the forward GEMM's conditions on dtype,
    channels, positions and offsets (``gemm_plan.applies``), a grid CUDA can launch and a tile whose
    stages fit the static shared memory."""
    if not gemm_plan.applies(plan):
        return False
    launch = launch_for(plan)
    return (launch.grid[1] <= gemm_plan.GRID_YZ
            and _shared_bytes(launch.tile, np.dtype(plan.dtype).itemsize) <= cuda_config.CUDA_SHARED_BYTES)


@functools.lru_cache(maxsize=256)
def weight_geometry(plan):
    """The forward's geometry array of ``plan`` with the weight-gradient launch's slots: channel tiles
    per group, stages of positions, stages per split, and the weight's elements (one split's)."""
    launch = launch_for(plan)
    values = geometry.geometry(plan).copy()
    values[G_CHANNEL_TILES] = ceil_div(plan.out_per_group, launch.tile.block_m)
    values[G_STAGES] = launch.stages
    values[G_STAGES_PER_SPLIT] = ceil_div(launch.stages, launch.splits)
    values[G_SPLIT_ELEMENTS] = int(np.prod(plan.weight_shape))
    values[G_HAS_BIAS] = 0
    return values


@functools.lru_cache(maxsize=256)
def column_taps(plan):
    """The packed taps of a group's columns in the weight's order, padded to whole column tiles."""
    launch = launch_for(plan)
    return geometry.packed_taps(plan, plan.in_per_group, launch.grid[0] * launch.tile.block_n)
