"""Running a plan on the tensor cores: the operands as stored (16-bit ones as their bits), the product,
and the ordered sum of the splits."""
import functools

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


def execute(plan, input, weight, bias):
    """The result of ``plan`` on device ``input``, of the input's kind and dtype (see ``conv3d``); the
    temporaries (transposed weight, split workspace) are held until the kernels that read them are
    queued (see ``gemm.execute``)."""
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
