"""Tile geometry of the CUDA kernels: written once for the planner (shared-memory bytes, launch size)
and for the kernels (``register_jitable``), and free of any ``numba.cuda`` import."""
from collections import namedtuple

import numpy as np
from numba.extending import register_jitable

from .. import cuda_config
from ..shape_rules import ceil_div, dilated_extent

_TILE_FIELDS = ("columns", "thread_rows", "rows_per_thread", "channel_threads", "channels_per_thread",
                "stage_channels")


class Tile(namedtuple("Tile", _TILE_FIELDS)):
    """The work of one thread block of a tiled kernel (see ``cuda_config.CUDA_CHANNEL_TILE``)."""

    __slots__ = ()

    @property
    def block_rows(self):
        """Output rows a block computes."""
        return self.thread_rows * self.rows_per_thread

    @property
    def block_channels(self):
        """Output channels a block computes."""
        return self.channel_threads * self.channels_per_thread

    @property
    def block_shape(self):
        """CUDA block dimensions (x: columns, y: thread rows, z: channel threads)."""
        return self.columns, self.thread_rows, self.channel_threads


def _checked(name, settings, dtype):
    tile = Tile(**settings)
    itemsize = np.dtype(dtype).itemsize
    while (tile.rows_per_thread > 1
           and tile.rows_per_thread * tile.channels_per_thread * itemsize > cuda_config.CUDA_SUM_BYTES):
        tile = tile._replace(rows_per_thread=tile.rows_per_thread // 2, thread_rows=tile.thread_rows * 2)
    threads = tile.columns * tile.thread_rows * tile.channel_threads
    if threads % tile.block_channels:
        raise ValueError(f"config.{name}: the block's {threads} threads must be a multiple of its "
                         f"{tile.block_channels} output channels (weights are staged one per thread)")
    return tile


def channel_tile(dtype):
    """The tile of the channel-blocked kernel for ``dtype``, read from ``config`` now (tests shrink
    it); wide dtypes trade rows per thread for thread rows to keep the sums within
    ``cuda_config.CUDA_SUM_BYTES``."""
    return _checked("CUDA_CHANNEL_TILE", cuda_config.CUDA_CHANNEL_TILE, dtype)


def row_tile(dtype):
    """The tile of the row-blocked kernel (few output channels per group) for ``dtype``."""
    return _checked("CUDA_ROW_TILE", cuda_config.CUDA_ROW_TILE, dtype)


@register_jitable
def unravel(index, first, second, third, fourth):
    """Digits of ``index`` in the mixed radix (first, second, third, fourth, unbounded), least
    significant first: how a flat work-item number becomes coordinates."""
    rest = index // first
    digit1 = index - rest * first
    digit2 = rest % second
    rest //= second
    digit3 = rest % third
    rest //= third
    return digit1, digit2, digit3, rest % fourth, rest // fourth


@register_jitable
def staged_extent(outputs, stride, kernel, dilation):
    """Input extent read by ``outputs`` consecutive outputs along one dimension (tile plus halo)."""
    return (outputs - 1) * stride + dilated_extent(kernel, dilation)


@register_jitable
def tile_counts(out_per_group, out_height, out_width, block_channels, block_rows, columns):
    """Channel blocks per group, row tiles and column tiles of one output depth slice."""
    return (ceil_div(out_per_group, block_channels), ceil_div(out_height, block_rows),
            ceil_div(out_width, columns))


@register_jitable
def staged_plane(block_rows, columns, stride_h, stride_w, kernel_h, kernel_w, dilation_h, dilation_w):
    """Columns of one staged input plane, and its element count (rows x columns)."""
    staged_columns = staged_extent(columns, stride_w, kernel_w, dilation_w)
    return staged_columns, staged_extent(block_rows, stride_h, kernel_h, dilation_h) * staged_columns


def shared_bytes(plan, make_tile):
    """Dynamic shared memory of one block of ``make_tile(dtype)`` on ``plan``: staged input planes, then
    weights."""
    tile = make_tile(plan.dtype)
    _, plane = staged_plane(tile.block_rows, tile.columns, *plan.stride[1:], *plan.kernel_size[1:],
                            *plan.dilation[1:])
    weights = tile.block_channels * plan.kernel_size[1] * plan.kernel_size[2]
    return tile.stage_channels * (plane + weights) * np.dtype(plan.dtype).itemsize


def fits(plan, make_tile):
    """Whether ``make_tile(dtype)`` on ``plan`` stays within ``cuda_config.CUDA_SHARED_BYTES``."""
    return shared_bytes(plan, make_tile) <= cuda_config.CUDA_SHARED_BYTES


def tile_launch_blocks(plan, tile):
    """Thread blocks to launch: one per tile, at most ``cuda_config.CUDA_MAX_BLOCKS``."""
    out_depth, out_height, out_width = plan.output_size
    per_slice = np.prod(tile_counts(plan.out_per_group, out_height, out_width, tile.block_channels,
                                    tile.block_rows, tile.columns))
    return int(min(plan.batch * plan.groups * out_depth * per_slice, cuda_config.CUDA_MAX_BLOCKS))


def grid_blocks(work, threads):
    """Thread blocks of a grid-stride launch over ``work`` items at ``threads`` items per block: one
    block per ``threads`` items, at least one, at most ``cuda_config.CUDA_MAX_BLOCKS``."""
    return int(max(1, min(ceil_div(work, threads), cuda_config.CUDA_MAX_BLOCKS)))


def direct_launch_blocks(plan):
    """Thread blocks of the direct kernel: one thread per output element."""
    elements = plan.batch * plan.out_channels * int(np.prod(plan.output_size))
    return grid_blocks(elements, cuda_config.CUDA_DIRECT_THREADS)


def depthwise_applies(plan):
    """Whether the depthwise kernel serves ``plan``: a real dtype, one input and one output channel per
    group, at most ``cuda_config.CUDA_DEPTHWISE_MAX_TAPS`` kernel taps (larger kernels reuse inputs enough
    to stage them: the row-tiled kernel), fewer than 2**31 outputs (it divides them in 32 bits)."""
    outputs = plan.batch * plan.out_channels * int(np.prod(plan.output_size))
    return (np.dtype(plan.dtype).kind == "f" and plan.in_per_group == 1 and plan.out_per_group == 1
            and int(np.prod(plan.kernel_size)) <= cuda_config.CUDA_DEPTHWISE_MAX_TAPS and outputs < 1 << 31)


def depthwise_launch_blocks(plan, threads):
    """Thread blocks of the depthwise kernel: one thread per run of ``cuda_config.CUDA_DEPTHWISE_OUTPUTS``
    outputs of a row."""
    rows = plan.batch * plan.out_channels * plan.output_size[0] * plan.output_size[1]
    return grid_blocks(rows * ceil_div(plan.output_size[2], cuda_config.CUDA_DEPTHWISE_OUTPUTS), threads)

