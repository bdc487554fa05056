"""How an implicit-GEMM launch is shaped, worked out per plan and free of any ``numba.cuda`` import: the
layer class's tile, the split of the reduction, the grid."""
from collections import namedtuple

import numpy as np

from .. import cuda_config
from ..shape_rules import ceil_div

_TILE_FIELDS = ("block_m", "block_n", "block_k", "thread_m", "thread_n")

# Grid limits of CUDA: y and z extents.
GRID_YZ = 65535


def staged_pitch(extent):
    """Elements of a staged shared-memory row of ``extent`` values: padded by 4 where ``extent`` is a
    multiple of the 32 shared-memory banks, so that the staging stores of one warp, a row apart, hit
    distinct banks (a multiple of 4, so that runs of 4 stay 16-byte aligned)."""
    return extent + 4 if extent % 32 == 0 else extent


class GemmTile(namedtuple("GemmTile", _TILE_FIELDS)):
    """A block's ``block_m`` positions x ``block_n`` output channels, ``block_k`` reduction steps per
    stage; each thread sums ``thread_m x thread_n`` outputs."""

    __slots__ = ()

    @property
    def threads(self):
        """Threads per block."""
        return (self.block_m // self.thread_m) * (self.block_n // self.thread_n)

    @property
    def weight_pitch(self):
        """Elements of a staged row of weights (see ``staged_pitch``)."""
        return staged_pitch(self.block_n)

    def shared_bytes(self, itemsize):
        """Static shared memory of a block: two stages of input columns and of weights."""
        return 2 * self.block_k * (self.block_m + self.weight_pitch) * itemsize


def checked_tile(fields):
    """``fields`` (a sequence of ``GemmTile`` fields) as a tile the kernel can run: ValueError naming
    the rule it breaks otherwise."""
    tile = GemmTile(*fields)
    threads = tile.threads
    rules = ((tile.block_m % tile.thread_m == 0 and tile.block_n % tile.thread_n == 0,
              "block_m and block_n must be multiples of thread_m and thread_n"),
             (threads % tile.block_m == 0 and tile.block_k % (threads // tile.block_m) == 0,
              "the threads must gather whole reduction rows of block_m positions"),
             (threads % tile.block_k == 0 and tile.block_n % (threads // tile.block_k) == 0,
              "the threads must stage whole columns of block_k weights"),
             (threads % tile.block_n == 0 and tile.block_k % (threads // tile.block_n) == 0,
              "the threads must stage whole rows of block_n transposed weights"),
             runs_rule(tile))
    return obeyed(tile, "CUDA GEMM tile", rules)


def runs_rule(tile):
    """The rule of every tile: a thread's sums come in runs of 4 (one wide shared load), or 1 or 2."""
    return (all(size % min(4, size) == 0 for size in (tile.thread_m, tile.thread_n)),
            "thread_m and thread_n must be 1, 2 or multiples of 4")


def obeyed(tile, kind, rules):
    """``tile`` where every (holds, rule) of ``rules`` holds, else ValueError naming the first broken
    rule."""
    for holds, rule in rules:
        if not holds:
            raise ValueError(f"{kind} {tuple(tile)} ({tile.threads} threads): {rule}")
    return tile


def output_positions(plan):
    """Rows of the product: output positions of the whole batch."""
    return plan.batch * int(np.prod(plan.output_size))


def fitted(tile, dtype):
    """``tile`` for ``dtype``: with fewer reduction steps per stage while its two stages exceed the
    static shared memory of a block (``cuda_config.CUDA_SHARED_BYTES``), as wide dtypes do."""
    itemsize = np.dtype(dtype).itemsize
    while (tile.shared_bytes(itemsize) > cuda_config.CUDA_SHARED_BYTES and tile.block_k % 2 == 0
           and tile.block_k // 2 % (tile.threads // tile.block_m) == 0
           and tile.block_k // 2 % (tile.threads // tile.block_n) == 0):
        tile = tile._replace(block_k=tile.block_k // 2)
    return tile


def min_blocks(dtype):
    """Blocks of the implicit GEMM that must fit on a multiprocessor (launch bounds):
    ``cuda_config.CUDA_GEMM_MIN_BLOCKS_PER_SM``, or 1 for 8-byte dtypes, whose sums take twice the registers
    (two blocks would cap them at 128 a thread, and they would spill)."""
    return 1 if np.dtype(dtype).itemsize > 4 else cuda_config.CUDA_GEMM_MIN_BLOCKS_PER_SM


def layer_class(plan):
    """The row of ``cuda_config.CUDA_GEMM_CLASSES`` that holds ``plan``: (tile fitted to its dtype, target
    blocks)."""
    positions = output_positions(plan)
    for channels, most_positions, tile, target in cuda_config.CUDA_GEMM_CLASSES:
        if ((channels is None or plan.out_per_group <= channels)
                and (most_positions is None or positions <= most_positions)):
            return fitted(checked_tile(tile), plan.dtype), target
    raise ValueError("cuda_config.CUDA_GEMM_CLASSES holds no row for every plan: end it with "
                     "(None, None, ...)")


def tile_for(plan):
    """The tile of ``plan``'s layer class."""
    return layer_class(plan)[0]


def reduction_length(plan):
    """Reduction steps of one output: input channels per group x kernel taps."""
    return plan.in_per_group * int(np.prod(plan.kernel_size))


Launch = namedtuple("Launch", "tile grid splits stages tap_major")
Launch.__doc__ = """An implicit-GEMM launch: the tile, the grid (position tiles, groups x channel tiles,
splits), the number of reduction splits, the stages of ``block_k`` steps in all, and the reduction
order (see ``tap_major``)."""


def tap_major(plan, block_k):
    """Whether the reduction runs tap by tap, ``block_k`` input channels of one tap per stage (one
    padding test per stage, weights staged from a transposed copy made by a second launch), rather than
    in the weight's own order (a padding test per step): for layers of at least
    ``cuda_config.CUDA_GEMM_TAP_MAJOR_MIN_MACS`` multiply-adds (smaller ones spend more on the launch than
    they save), where rounding the channels up to whole stages adds at most
    ``cuda_config.CUDA_GEMM_TAP_MAJOR_PADDING`` of them."""
    padded = ceil_div(plan.in_per_group, block_k) * block_k
    return (plan.macs >= cuda_config.CUDA_GEMM_TAP_MAJOR_MIN_MACS
            and padded <= plan.in_per_group * (1 + cuda_config.CUDA_GEMM_TAP_MAJOR_PADDING))


def launch_for(plan):
    """The launch of ``plan`` with its layer class's tile: the reduction is split when the tiles alone
    would make fewer blocks than the class's target, keeping at least
    ``cuda_config.CUDA_GEMM_MIN_SPLIT_STAGES`` stages per split."""
    tile, target = layer_class(plan)
    major = tap_major(plan, tile.block_k)
    stages = (int(np.prod(plan.kernel_size)) * ceil_div(plan.in_per_group, tile.block_k) if major
              else ceil_div(reduction_length(plan), tile.block_k))
    grid, splits = split_grid(plan, tile.block_m, tile.block_n, stages, target)
    return Launch(tile, grid, splits, stages, major)


def split_grid(plan, block_m, block_n, stages, target):
    """(grid, splits) of a product of ``plan`` in tiles of ``block_m`` positions x ``block_n`` output
    channels over ``stages`` reduction stages: the reduction is split when the tiles alone would make
    fewer blocks than ``target``, keeping at least ``cuda_config.CUDA_GEMM_MIN_SPLIT_STAGES`` stages per
    split. The grid is (position tiles, groups x channel tiles, splits)."""
    positions = output_positions(plan)
    tiles = ceil_div(positions, block_m), plan.groups * ceil_div(plan.out_per_group, block_n)
    splits = max(1, min(ceil_div(target, max(tiles[0] * tiles[1], 1)),
                        stages // cuda_config.CUDA_GEMM_MIN_SPLIT_STAGES, GRID_YZ))
    splits = ceil_div(stages, ceil_div(stages, splits))
    return tiles + (splits,), splits


def applies(plan):
    """Whether the implicit GEMM serves ``plan``: a real dtype, within its indexing limits
    (``within_flat_limits``: positions are divided in 32 bits, taps are 6-bit fields of the taps table),
    and a grid CUDA can launch."""
    if np.dtype(plan.dtype).kind != "f" or not within_flat_limits(plan):
        return False
    launch = launch_for(plan)
    return (launch.grid[1] <= GRID_YZ
            and launch.tile.shared_bytes(np.dtype(plan.dtype).itemsize) <= cuda_config.CUDA_SHARED_BYTES)


def within_flat_limits(plan):
    """Whether ``plan`` is within what the implicit-GEMM kernels index: at least
    ``cuda_config.CUDA_GEMM_MIN_OUT_CHANNELS`` output channels per group, fewer than 2**31 output
    positions, kernel extents below 63, a group's input and the weight within 32-bit offsets."""
    extents = plan.padded_size if plan.padding_mode != "zeros" else plan.input_size
    return (plan.out_per_group >= cuda_config.CUDA_GEMM_MIN_OUT_CHANNELS
            and output_positions(plan) < 1 << 31 and max(plan.kernel_size) < 63
            and plan.in_per_group * int(np.prod(extents)) < 1 << 32
            and int(np.prod(plan.weight_shape)) < 1 << 32)


def shared_bytes(plan):
    """Shared memory of one block (static: the tile is compiled in)."""
    return tile_for(plan).shared_bytes(np.dtype(plan.dtype).itemsize)
