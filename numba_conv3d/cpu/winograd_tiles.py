"""Winograd tiles: their geometry (outputs, points and count per call), the estimated gain over the direct
kernels, and which tile each Winograd row takes (``winograd.py`` fused, ``winograd_points.py`` point by
point); shared by both rows and the planner (``cpu.winograd_gain``)."""
from math import prod

import numpy as np
from numba.extending import register_jitable

from ..config import BLOCK_CHANNELS, BLOCK_VECTORS, VECTOR_BYTES
from ..crossovers import (WINOGRAD_DEEP_WIDE_MIN_TILES, WINOGRAD_MAX_WEIGHT_BYTES, WINOGRAD_ROW_EDGE_TILES,
                          WINOGRAD_TILE_WEIGHT_TILES, WINOGRAD_TRANSFORM_PAIRS, WINOGRAD_WIDE_TILE_MIN_EXTENT)
from ..shape_rules import ceil_div
from .winograd_transforms import TILE, WIDE_TILE, patch_of


@register_jitable
def depth_points(kernel_depth, taps):
    """Points of a tile along D: ``patch_of(taps)`` for a kernel as deep as it is wide, 1 (no transform)
    for a 1-tap one."""
    return patch_of(taps) if kernel_depth > 1 else 1


def estimated_gain(kernel_size, output_size, batch, in_per_group, out_per_group, tile, weight_tiles):
    """The estimated speed of Winograd with ``tile`` outputs along H and W over the direct kernels (see
    ``crossovers.WINOGRAD_*``): the direct multiplies per Winograd multiply (3.375 for 3x3x3 kernels, 2.25
    for 1x3x3 or 4.0 by F(4x4, 3x3), 4.63 for 5x5x5, 2.78 for 1x5x5) times the share of the tiles'
    outputs inside the output, over 1 plus the weight transform (``weight_tiles`` tiles' multiplies)
    shared by the tiles plus the input and output transforms per channel pair, which cost more on
    rows of few tiles."""
    shape = tile_shape(kernel_size, tile)
    outputs = prod(shape)
    along = tiles_of(output_size, kernel_size, tile)
    tiles = max(1, batch * prod(along))
    fill = batch * prod(output_size) / (outputs * tiles)
    channels = in_per_group * out_per_group / (in_per_group + out_per_group)
    transforms = WINOGRAD_TRANSFORM_PAIRS[tile] * (1 + WINOGRAD_ROW_EDGE_TILES / along[2]) / channels
    multiplies = prod(kernel_size) * outputs / points_of(kernel_size, tile)
    return multiplies * fill / (1 + weight_tiles / tiles + transforms)


def plane_tile(kernel_size, output_size, batch, weight_pair_bytes):
    """Outputs of a tile along H and W in the fused kernel (and in the planner's tile counts), on output
    planes of at least ``WINOGRAD_WIDE_TILE_MIN_EXTENT`` rows and columns: 4 (F(4x4, 3x3)) for a 1x3x3
    kernel; 4 for a 3x3x3 kernel (tiles of 2x4x4 outputs: F(2, 3) along D, F(4, 3) along H and W) from
    ``WINOGRAD_DEEP_WIDE_MIN_TILES`` such tiles (batch included) with at most
    ``WINOGRAD_MAX_WEIGHT_BYTES`` of weight points, ``weight_pair_bytes`` being one point's weights over
    every channel pair (C_out x C_in/g x itemsize, ``pair_bytes``). Else 2. The point-by-point kernel
    picks its own for 1x3x3 kernels (``winograd_tiles.points_tile``)."""
    wide_planes = min(output_size[1:]) >= WINOGRAD_WIDE_TILE_MIN_EXTENT
    if tuple(kernel_size) not in ((1, 3, 3), (3, 3, 3)) or not wide_planes:
        return TILE
    if kernel_size[0] == 1:
        return WIDE_TILE
    wide = (batch * prod(tiles_of(output_size, kernel_size, WIDE_TILE)) >= WINOGRAD_DEEP_WIDE_MIN_TILES
            and points_of(kernel_size, WIDE_TILE) * weight_pair_bytes <= WINOGRAD_MAX_WEIGHT_BYTES)
    return WIDE_TILE if wide else TILE


def pair_bytes(plan):
    """Bytes of one point's weights over every channel pair of a plan (C_out x C_in/g x itemsize)."""
    return plan.out_channels * plan.in_per_group * np.dtype(plan.dtype).itemsize


def plan_tile(plan):
    """``plane_tile`` for a plan."""
    return plane_tile(plan.kernel_size, plan.output_size, plan.batch, pair_bytes(plan))


def plane_patch(kernel_size, tile):
    """Points of a tile along H and W."""
    return kernel_size[2] + tile - 1


def tile_shape(kernel_size, tile):
    """Outputs of a tile along (D, H, W)."""
    return (TILE if kernel_size[0] > 1 else 1, tile, tile)


def tiles_of(output_size, kernel_size, tile):
    """Tiles along (D, H, W) that cover ``output_size``."""
    return tuple(ceil_div(extent, step) for extent, step in zip(output_size, tile_shape(kernel_size, tile)))


def chunk_tiles(itemsize):
    """Tiles per chunk (what a task transforms at once): ``BLOCK_VECTORS`` SIMD vectors of them."""
    return BLOCK_VECTORS * VECTOR_BYTES // itemsize


def call_tiles(plan, tile):
    """Tiles of a call with ``tile`` outputs along H and W: over its batch and output volume."""
    return plan.batch * prod(tiles_of(plan.output_size, plan.kernel_size, tile))


def points_of(kernel_size, tile):
    """Points per tile with ``tile`` outputs along H and W: 64 for a 3x3x3 kernel, 16 for 1x3x3 (36 by
    F(4x4, 3x3)), 216 for 5x5x5, 36 for 1x5x5."""
    return depth_points(kernel_size[0], kernel_size[2]) * plane_patch(kernel_size, tile) ** 2


def block_weight_bytes(itemsize, groups, points, in_per_group):
    """Bytes of one channel block's weight points (``points`` per tile), over every group."""
    return itemsize * groups * points * in_per_group * BLOCK_CHANNELS


def transform_weight_bytes(plan, tile):
    """Bytes of the weight points with ``tile`` outputs along H and W (64 per 27 weights, 16 or 36 per
    9, 216 per 125, 36 per 25; channel blocks filled out)."""
    return (block_weight_bytes(np.dtype(plan.dtype).itemsize, plan.groups, points_of(plan.kernel_size, tile),
                               plan.in_per_group)
            * ceil_div(plan.out_per_group, BLOCK_CHANNELS))


def points_tile(kernel_size, output_size, batch, in_per_group, out_per_group, weight_pair_bytes):
    """Outputs of a tile along H and W in the point-by-point kernel: for a 1x3x3 kernel, 4 (F(4x4, 3x3))
    where its estimated gain beats F(2x2, 3x3)'s with the weight transform counted as
    ``WINOGRAD_TILE_WEIGHT_TILES`` tiles (at batch 1, 16 planes of 7x7 with 512 channels take it, 8 do
    not), else ``plane_tile``."""
    if tuple(kernel_size) != (1, 3, 3):
        return plane_tile(kernel_size, output_size, batch, weight_pair_bytes)
    return max((TILE, WIDE_TILE), key=lambda tile: estimated_gain(
        kernel_size, output_size, batch, in_per_group, out_per_group, tile, WINOGRAD_TILE_WEIGHT_TILES))


def plan_points_tile(plan):
    """``points_tile`` for a plan."""
    return points_tile(plan.kernel_size, plan.output_size, plan.batch, plan.in_per_group, plan.out_per_group,
                       pair_bytes(plan))
