"""Running a plan's weight gradient by the implicit GEMM (``weight_gemm_kernels``): flat operands, the
product split over positions, and the ordered sum of the splits."""
import functools

from numba import cuda

from .. import cuda_config
from . import gemm_kernels, gemm_plan, weight_gemm_kernels, weight_gemm_plan
from .operands import fast, flat, no_bias
from .tiling import grid_blocks

applies = weight_gemm_plan.applies


@functools.lru_cache(maxsize=256)
def _prepared(plan):
    """The kernel's launcher, the launch, and the device geometry and taps of ``plan``."""
    launch = weight_gemm_plan.launch_for(plan)
    kernel = weight_gemm_kernels.weight_gemm_kernel(plan.dtype, launch.tile, gemm_plan.min_blocks(plan.dtype))
    return (fast(kernel), launch, cuda.to_device(weight_gemm_plan.weight_geometry(plan)),
            cuda.to_device(weight_gemm_plan.column_taps(plan)))


def execute(plan, input, grad):
    """The weight's gradient (a new C-contiguous device array of ``plan.weight_shape``) from the
    batched device ``input`` and output gradient ``grad``."""
    kernel, launch, shape, taps = _prepared(plan)
    out = cuda.device_array(plan.weight_shape, plan.dtype)
    x = flat("conv3d_weight", "input", input, plan)
    g = flat("conv3d_weight", "grad_output", grad)
    flat_out = out.reshape(out.size)
    target = flat_out if launch.splits == 1 else cuda.device_array(launch.splits * out.size, plan.dtype)
    kernel(launch.grid, (launch.tile.threads, 1, 1), x, g, target, taps, shape)
    if launch.splits > 1:
        threads = cuda_config.CUDA_DIRECT_THREADS
        adder = fast(gemm_kernels.split_sum_kernel(plan.dtype, threads))
        adder((grid_blocks(out.size, threads), 1, 1), (threads, 1, 1), target, no_bias(plan.dtype),
              flat_out, shape)
    return out
