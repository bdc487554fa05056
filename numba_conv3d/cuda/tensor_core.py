"""Running a plan on the tensor cores: the operands as stored (16-bit ones as their bits), the product,
and the ordered sum of the splits."""
import functools
from dataclasses import replace

import numba
from numba import cuda

from .. import cuda_config
from . import arrays, gemm_kernels, tensor_core_kernels, tensor_core_plan
from .gemm import transposed_weight
from .operands import fast, flat_operands
from .tiling import grid_blocks


@functools.lru_cache(maxsize=256)
def _prepared(plan):
    """The kernel's launcher, the launch, and the device taps and geometry tables of ``plan``."""
    launch = tensor_core_plan.launch_for(plan)
    kernel = tensor_core_kernels.tensor_core_kernel(
        launch.kind, launch.tile, cuda_config.CUDA_TENSOR_CORE_MIN_BLOCKS_PER_SM, launch.splits > 1,
        launch.tap_major)
    return (fast(kernel), launch, cuda.to_device(tensor_core_plan.taps(plan, launch)),
            cuda.to_device(tensor_core_plan.tensor_core_geometry(plan, launch)))


@functools.cache
def has_tensor_cores():
    """Whether the current GPU runs ``mma.sync`` on float16, bfloat16 and TF32 (compute capability 8.0
    and up; the simulator models it)."""
    return bool(numba.config.ENABLE_CUDASIM) or cuda.get_current_device().compute_capability >= (8, 0)


def _in_float32(plan, input, weight, bias):
    """``plan`` by the first float32 row of the table that serves it (for a GPU without tensor cores):
    on widened operands for float16 and bfloat16; TF32 is only allowed, so exact float32 serves it."""
    from . import ALGORITHMS, run_row

    computed = plan.computed()
    row = next(a for a in ALGORITHMS if a.operands == "computed" and a.applies(computed)
               and a.prefers(computed))
    return run_row(row, replace(plan, algorithm=row.name), input, weight, bias)


def execute(plan, input, weight, bias):
    """The result of ``plan`` on device ``input``, of the input's kind and dtype (see ``conv3d``); the
    temporaries (transposed weight, split workspace) are held until the kernels that read them are
    queued (see ``gemm.execute``). A GPU without tensor cores computes in float32 (``_in_float32``)."""
    if not has_tensor_cores():
        return _in_float32(plan, input, weight, bias)
    kernel, launch, taps, shape = _prepared(plan)
    result, out, x, w, b = flat_operands(plan, input, weight, bias, bits=launch.kind != "tfloat32")
    if plan.batch == 0:
        return result
    if launch.tap_major:
        transposed, w = transposed_weight(input, w, shape)
    target = out
    if launch.splits > 1:
        workspace, target = arrays.empty_like_input(cuda, input, (launch.splits * out.size,), "float32")
    kernel(launch.grid, (launch.tile.threads, 1, 1), x, w, b, target, taps, shape)
    if launch.splits > 1:
        threads = cuda_config.CUDA_DIRECT_THREADS
        adder = fast(gemm_kernels.split_sum_kernel("float32", threads, launch.kind))
        adder((grid_blocks(out.size, threads), 1, 1), (threads, 1, 1), target, b, out, shape)
    return result
