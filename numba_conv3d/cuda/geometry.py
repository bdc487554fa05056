"""The geometry and taps arrays that the flat-view kernels (implicit GEMM, depthwise) read instead of
many launch arguments: one small int64 device array per plan, built here once, free of any
``numba.cuda`` import."""
import functools

import numpy as np

from ..shape_rules import ceil_div
from . import gemm_plan

# Slots of the geometry array.
(G_POSITIONS, G_OUT_VOLUME, G_OUT_DEPTH, G_OUT_HEIGHT, G_OUT_WIDTH, G_STRIDE_D, G_STRIDE_H,
 G_STRIDE_W, G_PAD_D, G_PAD_H, G_PAD_W, G_DEPTH, G_HEIGHT, G_WIDTH, G_IN_CHANNELS, G_IN_PER_GROUP,
 G_OUT_CHANNELS, G_OUT_PER_GROUP, G_REDUCTION, G_CHANNEL_TILES, G_STAGES_PER_SPLIT, G_STAGES,
 G_HAS_BIAS, G_SPLIT_ELEMENTS, G_KERNEL_D, G_KERNEL_H, G_KERNEL_W, G_DILATION_D, G_DILATION_H,
 G_DILATION_W, G_CHANNEL_CHUNKS, G_IN_VOLUME, G_TAPS) = range(33)
GEOMETRY_SLOTS = 33

# A reduction step of the implicit GEMM packed in one int64 of the taps table: the input offset of its
# tap from a position's first tap in the low 32 bits (TAP_OFFSET), then its kd, kh and kw as 8-bit
# fields; the padding steps past the reduction carry tap index TAP_NONE along D, whose validity bit no
# position has. Kernel extents must stay below TAP_NONE (``gemm_plan.applies``).
TAP_OFFSET = (1 << 32) - 1
TAP_DEPTH_SHIFT, TAP_ROW_SHIFT, TAP_COLUMN_SHIFT = 32, 40, 48
TAP_INDEX = 63
TAP_NONE = 63


def reads_padded_copy(plan):
    """Whether the kernels read a padded copy of the input (non-zero padding modes): they then see no
    padding, only the copy's extents."""
    return plan.padding_mode != "zeros"


def _input_extents(plan):
    return plan.padded_size if reads_padded_copy(plan) else plan.input_size


@functools.lru_cache(maxsize=256)
def geometry(plan):
    """The geometry array of ``plan`` (slots ``G_*``); the GEMM's slots are filled where it serves."""
    out_volume = int(np.prod(plan.output_size))
    values = np.zeros(GEOMETRY_SLOTS, np.int64)
    values[[G_OUT_DEPTH, G_OUT_HEIGHT, G_OUT_WIDTH]] = plan.output_size
    values[[G_STRIDE_D, G_STRIDE_H, G_STRIDE_W]] = plan.stride
    values[[G_PAD_D, G_PAD_H, G_PAD_W]] = (0, 0, 0) if reads_padded_copy(plan) else plan.pad_front
    values[[G_DEPTH, G_HEIGHT, G_WIDTH]] = _input_extents(plan)
    values[[G_KERNEL_D, G_KERNEL_H, G_KERNEL_W]] = plan.kernel_size
    values[[G_DILATION_D, G_DILATION_H, G_DILATION_W]] = plan.dilation
    values[G_POSITIONS] = plan.batch * out_volume
    values[G_OUT_VOLUME] = out_volume
    values[G_IN_CHANNELS] = plan.in_channels
    values[G_IN_PER_GROUP] = plan.in_per_group
    values[G_OUT_CHANNELS] = plan.out_channels
    values[G_OUT_PER_GROUP] = plan.out_per_group
    values[G_REDUCTION] = gemm_plan.reduction_length(plan)
    values[G_HAS_BIAS] = plan.has_bias
    values[G_IN_VOLUME] = int(np.prod(_input_extents(plan)))
    values[G_TAPS] = int(np.prod(plan.kernel_size))
    values[G_SPLIT_ELEMENTS] = plan.batch * plan.out_channels * out_volume
    if gemm_plan.applies(plan):
        launch = gemm_plan.launch_for(plan)
        values[G_CHANNEL_TILES] = ceil_div(plan.out_per_group, launch.tile.block_n)
        values[G_STAGES] = launch.stages
        values[G_STAGES_PER_SPLIT] = ceil_div(launch.stages, launch.splits)
        values[G_CHANNEL_CHUNKS] = ceil_div(plan.in_per_group, launch.tile.block_k)
    return values


def packed_taps(plan, channels, rows):
    """``rows`` packed reduction steps (see ``TAP_OFFSET``) in the weight's memory order (input channel
    of ``channels``, kd, kh, kw), the rows past them padding steps (``TAP_NONE``)."""
    depth, height, width = _input_extents(plan)
    kernel_d, kernel_h, kernel_w = plan.kernel_size
    channel, kd, kh, kw = (index.ravel().astype(np.int64) for index in np.meshgrid(
        np.arange(channels), np.arange(kernel_d), np.arange(kernel_h), np.arange(kernel_w),
        indexing="ij"))
    offsets = (((channel * depth + kd * plan.dilation[0]) * height + kh * plan.dilation[1]) * width
               + kw * plan.dilation[2])
    table = np.full(max(rows, offsets.size), TAP_NONE << TAP_DEPTH_SHIFT, np.int64)
    table[:offsets.size] = (offsets | (kd << TAP_DEPTH_SHIFT) | (kh << TAP_ROW_SHIFT)
                            | (kw << TAP_COLUMN_SHIFT))
    return table


@functools.lru_cache(maxsize=256)
def taps(plan):
    """The taps table of the implicit GEMM for ``plan``: one packed int64 per reduction step, in the
    weight's memory order (input channel, kd, kh, kw), padded to whole stages; or, reducing tap by tap
    (``gemm_plan.tap_major``), one per tap (the input channel added by the kernel)."""
    launch = gemm_plan.launch_for(plan)
    if launch.tap_major:
        return packed_taps(plan, 1, 0)
    return packed_taps(plan, plan.in_per_group, launch.stages * launch.tile.block_k)
