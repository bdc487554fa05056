"""How a tensor-core implicit-GEMM launch is shaped, free of any ``numba.cuda`` import: which product a
plan takes (float16, bfloat16, or TF32 for float32 where the caller allows it), the layer class's tile,
the split of the reduction, the geometry and taps tables."""
from collections import namedtuple

import numpy as np

from .. import cuda_config
from ..shape_rules import ceil_div
from . import geometry, gemm_plan
from .geometry import G_CHANNEL_CHUNKS, G_CHANNEL_TILES, G_STAGES, G_STAGES_PER_SPLIT

# The product each plan dtype takes on the tensor cores (float32 only where the plan allows TF32), with
# the PTX names of its shape and operand type.
MMA_KINDS = {"float16": ("m16n8k16", "f16"), "bfloat16": ("m16n8k16", "bf16"),
             "tfloat32": ("m16n8k8", "tf32")}
# Reduction steps a 32-bit unit of a fragment holds, by kind.
STEPS_PER_UNIT = {"float16": 2, "bfloat16": 2, "tfloat32": 1}
# One warp's product: rows x columns of its sums, units of its reduction.
MMA_ROWS, MMA_COLUMNS, MMA_UNITS = 16, 8, 8
# Pad of a staged shared-memory row (units): rows 4 banks apart, so that the fragment loads of a warp
# (8 rows x 4 units) hit 32 distinct banks.
ROW_PAD = 4


def product_kind(plan):
    """The tensor-core product of ``plan`` (a key of ``MMA_KINDS``), or None where it has none."""
    if plan.dtype == "float32":
        return "tfloat32" if plan.allow_tf32 else None
    return plan.dtype if plan.dtype in MMA_KINDS else None


class TensorCoreTile(namedtuple("TensorCoreTile", "warps_m warps_n frags_m frags_n units")):
    """A block of ``warps_m x warps_n`` warps, each summing ``frags_m x frags_n`` products of
    ``MMA_ROWS`` positions x ``MMA_COLUMNS`` output channels, over ``units`` 32-bit reduction units a
    stage."""

    __slots__ = ()

    @property
    def threads(self):
        """Threads per block."""
        return self.warps_m * self.warps_n * 32

    @property
    def block_m(self):
        """Output positions of the block's tile."""
        return self.warps_m * self.frags_m * MMA_ROWS

    @property
    def block_n(self):
        """Output channels of the block's tile."""
        return self.warps_n * self.frags_n * MMA_COLUMNS

    @property
    def pitch(self):
        """32-bit units of a staged shared-memory row."""
        return self.units + ROW_PAD

    def block_k(self, kind):
        """Reduction steps of a stage for product ``kind``."""
        return self.units * STEPS_PER_UNIT[kind]

    @property
    def shared_bytes(self):
        """Static shared memory of a block: two stages of input columns and of weights."""
        return 2 * (self.block_m + self.block_n) * self.pitch * 4


def checked_tile(fields):
    """``fields`` as a ``TensorCoreTile`` the kernel can run: ValueError naming the rule it breaks
    otherwise."""
    tile = TensorCoreTile(*fields)
    threads = tile.threads
    rules = ((tile.units % MMA_UNITS == 0, f"units must be a multiple of {MMA_UNITS}"),
             (threads % tile.block_m == 0 and tile.block_m * tile.units % threads == 0,
              "each thread must gather whole units of one output position"),
             (threads % tile.units == 0 and tile.block_n * tile.units % threads == 0,
              "each thread must stage whole units of weights at one reduction offset"),
             (threads % tile.block_n == 0 and tile.units % (threads // tile.block_n) == 0,
              "each thread must stage whole units of transposed weights of one output channel"))
    return gemm_plan.obeyed(tile, "CUDA tensor-core tile", rules)


def layer_class(plan):
    """The row of ``cuda_config.CUDA_TENSOR_CORE_CLASSES`` that holds ``plan``: (tile, target blocks)."""
    positions = gemm_plan.output_positions(plan)
    for channels, most_positions, tile, target in cuda_config.CUDA_TENSOR_CORE_CLASSES:
        if ((channels is None or plan.out_per_group <= channels)
                and (most_positions is None or positions <= most_positions)):
            return checked_tile(tile), target
    raise ValueError("cuda_config.CUDA_TENSOR_CORE_CLASSES holds no row for every plan: end it with "
                     "(None, None, ...)")


Launch = namedtuple("Launch", "kind tile grid splits stages tap_major")
Launch.__doc__ = """A tensor-core launch: the product kind, the tile, the grid (position tiles, groups x
channel tiles, splits), the number of reduction splits, the stages in all, and the reduction order
(tap by tap, or the weight's: ``gemm_plan.tap_major``)."""


def launch_for(plan):
    """The launch of ``plan`` with its layer class's tile: the reduction tap by tap where
    ``gemm_plan.tap_major`` says so, else in the weight's order, split as ``gemm_plan.split_grid``
    decides."""
    kind = product_kind(plan)
    tile, target = layer_class(plan)
    block_k = tile.block_k(kind)
    major = gemm_plan.tap_major(plan, block_k)
    stages = (int(np.prod(plan.kernel_size)) * ceil_div(plan.in_per_group, block_k) if major
              else ceil_div(gemm_plan.reduction_length(plan), block_k))
    grid, splits = gemm_plan.split_grid(plan, tile.block_m, tile.block_n, stages, target)
    return Launch(kind, tile, grid, splits, stages, major)


def applies(plan):
    """Whether the tensor cores serve ``plan``: float16, bfloat16, or float32 with TF32 allowed, within
    the implicit GEMM's indexing limits (``gemm_plan.within_flat_limits``), on a grid CUDA launches."""
    if product_kind(plan) is None or not gemm_plan.within_flat_limits(plan):
        return False
    launch = launch_for(plan)
    return launch.grid[1] <= gemm_plan.GRID_YZ and launch.tile.shared_bytes <= cuda_config.CUDA_SHARED_BYTES


def shared_bytes(plan):
    """Shared memory of one block (static)."""
    return layer_class(plan)[0].shared_bytes


def tensor_core_geometry(plan, launch):
    """The geometry array (``geometry.G_*``) of ``plan`` with the slots of ``launch``."""
    values = geometry.geometry(plan.computed()).copy()
    values[G_CHANNEL_TILES] = ceil_div(plan.out_per_group, launch.tile.block_n)
    values[G_STAGES] = launch.stages
    values[G_STAGES_PER_SPLIT] = ceil_div(launch.stages, launch.splits)
    values[G_CHANNEL_CHUNKS] = ceil_div(plan.in_per_group, launch.tile.block_k(launch.kind))
    return values


def taps(plan, launch):
    """The taps table of ``launch``: a packed reduction step per row, whole stages; tap by tap, one row
    per tap (the kernel adds the input channel)."""
    if launch.tap_major:
        return geometry.packed_taps(plan, 1, 0)
    return geometry.packed_taps(plan, plan.in_per_group,
                                launch.stages * launch.tile.block_k(launch.kind))
