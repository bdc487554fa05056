"""CUDA backend: the algorithm table the planner chooses from, and the entry that runs a plan.

A CUDA row's ``run(plan, input, weight, bias)`` returns the result itself: each algorithm moves its
operands and allocates its output as its kernels need them (flat views, padded copies).

Importing this package imports neither ``numba.cuda`` nor any kernel: the planner can plan for the GPU
on any machine, and kernels load (and compile, or come from the cache) on the first run.
"""
from ..algorithm import Algorithm
from . import arrays, gemm_plan, tensor_core_plan, tiling

NAME = "cuda"


def _launcher(name, *tile):
    def run(plan, input, weight, bias):
        from . import launch

        def fill(plan, x, w, b, out):
            getattr(launch, name)(plan, x, w, b, out, *(make(plan.dtype) for make in tile))

        return launch.execute(plan, input, weight, bias, fill)

    return run


def _tiled_row(name, reason, make_tile, applies):
    return Algorithm(name, reason, lambda plan: applies(plan) and tiling.fits(plan, make_tile),
                     lambda plan: tiling.shared_bytes(plan, make_tile),
                     _launcher("run_tiled", make_tile))


def _executor(module):
    def run(plan, input, weight, bias):
        import importlib

        return importlib.import_module(f"{__name__}.{module}").execute(plan, input, weight, bias)

    return run


ALGORITHMS = (
    Algorithm("cuda-tensor-core", "the implicit GEMM with each warp's products on the tensor cores "
              "(mma.sync): float16 and bfloat16 operands as stored, float32 ones rounded to TF32 where "
              "allow_tf32; sums in float32, rounded once", tensor_core_plan.applies,
              tensor_core_plan.shared_bytes, _executor("tensor_core"), operands="stored"),
    Algorithm("cuda-implicit-gemm", "a matrix product of output positions x output channels over "
              "input channels x taps, gathered tile by tile into shared memory (the reduction split "
              "where the tiles alone would not fill the GPU)", gemm_plan.applies, gemm_plan.shared_bytes,
              _executor("gemm")),
    Algorithm("cuda-depthwise", "one input channel per output channel (depthwise, small kernels): each "
              "thread sums a run of outputs of one row, reading inputs through the L1 cache (no reuse "
              "across channels to stage them for)", tiling.depthwise_applies, lambda plan: 0,
              _executor("depthwise")),
    _tiled_row("cuda-channel-tiled", "shared-memory tiles of input plus halo; each thread sums "
               "rows x channels of outputs in registers (at least half a block of output channels per "
               "group)", tiling.channel_tile,
               lambda plan: plan.out_per_group * 2 >= tiling.channel_tile(plan.dtype).block_channels),
    _tiled_row("cuda-row-tiled", "shared-memory tiles of input plus halo; each thread sums several "
               "output rows of one channel in registers (few output channels per group: one-channel, "
               "depthwise)", tiling.row_tile, lambda plan: True),
    Algorithm("cuda-direct", "one thread per output reading global memory through the padding index "
              "maps; serves kernels whose tiles exceed the shared memory of a block",
              lambda plan: True, lambda plan: 0, _launcher("run_direct")),
)

_BY_NAME = {algorithm.name: algorithm for algorithm in ALGORITHMS}


def run_row(algorithm, plan, input, weight, bias):
    """Run ``plan`` by table row ``algorithm``: a float16 or bfloat16 plan on a row that computes in
    float32 runs on operands widened on the device (``widened``)."""
    if algorithm.operands == "stored" or plan.computed() is plan:
        return algorithm.run(plan, input, weight, bias)
    from .widened import computed_in_float32

    return computed_in_float32(algorithm.run, plan, input, weight, bias)


def execute(plan, input, weight, bias):
    """Run ``plan`` on a CUDA ``input``; see :func:`numba_conv3d.conv3d` for what it returns."""
    arrays.cuda_module("conv3d")  # a clear error before anything imports numba.cuda
    return run_row(_BY_NAME[plan.algorithm], plan, input, weight, bias)
