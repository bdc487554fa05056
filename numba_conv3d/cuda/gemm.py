"""Running a plan by the implicit GEMM: flat operands, the product, and the ordered sum of the splits."""
import functools

from numba import cuda

from .. import cuda_config
from . import arrays, gemm_kernels, gemm_plan, geometry
from .operands import device_geometry, fast, flat_operands
from .tiling import grid_blocks


@functools.lru_cache(maxsize=256)
def _prepared(plan):
    """The kernel's launcher, the launch and the device taps table of ``plan``."""
    launch = gemm_plan.launch_for(plan)
    kernel = gemm_kernels.implicit_gemm_kernel(plan.dtype, launch.tile, gemm_plan.min_blocks(plan.dtype),
                                               launch.tap_major)
    return fast(kernel), launch, cuda.to_device(geometry.taps(plan))


def transposed_weight(input, w, shape):
    """The tap-by-tap order's copy of the flat weight ``w`` (see ``transposed_weight_kernel``; of its
    dtype, allocated like ``input``), as (its owner, its flat view); ``shape`` is the device geometry."""
    owner, transposed = arrays.empty_like_input(cuda, input, (w.size,), w.dtype.name)
    threads = cuda_config.CUDA_DIRECT_THREADS
    kernel = fast(gemm_kernels.transposed_weight_kernel(w.dtype.name, threads))
    kernel((grid_blocks(w.size, threads), 1, 1), (threads, 1, 1), w, transposed, shape)
    return owner, transposed


def execute(plan, input, weight, bias):
    """The result of ``plan`` on device ``input``, of the input's kind (see ``conv3d``).

    The temporaries (transposed weight, partial sums) are held until every kernel that reads them is
    queued: a pool (torch's, CuPy's) may hand a freed block to the next allocation at once, and only
    work already queued on the stream is ordered before its reuse."""
    kernel, launch, taps = _prepared(plan)
    result, out, x, w, b = flat_operands(plan, input, weight, bias)
    if plan.batch == 0:
        return result
    shape = device_geometry(plan)
    temporaries = []
    if launch.tap_major:
        owner, w = transposed_weight(input, w, shape)
        temporaries.append(owner)
    target = out
    if launch.splits > 1:
        owner, target = arrays.empty_like_input(cuda, input, (launch.splits * out.size,), plan.dtype)
        temporaries.append(owner)
    kernel(launch.grid, (launch.tile.threads, 1, 1), x, w, b, target, taps, shape)
    if launch.splits > 1:
        threads = cuda_config.CUDA_DIRECT_THREADS
        adder = fast(gemm_kernels.split_sum_kernel(plan.dtype, threads))
        adder((grid_blocks(out.size, threads), 1, 1), (threads, 1, 1), target, b, out, shape)
    return result
