"""Running a plan by the implicit GEMM: a padded (or contiguous) copy of the input where the kernel
needs one, the product, and the ordered sum of the splits."""
import functools

from numba import cuda

from .. import config
from . import gemm_kernels, gemm_plan
from .tiling import grid_blocks


@functools.lru_cache(maxsize=256)
def _prepared(plan):
    """The kernel, launch and device geometry and taps arrays of ``plan`` (copied to the device once
    per plan and process)."""
    launch = gemm_plan.launch_for(plan)
    kernel = gemm_kernels.implicit_gemm_kernel(plan.dtype, launch.tile, config.CUDA_GEMM_MIN_BLOCKS_PER_SM)
    return (kernel, launch, cuda.to_device(gemm_plan.geometry(plan)),
            cuda.to_device(gemm_plan.taps(plan)))


def _flat(array):
    return array.reshape(array.size)


def _padded_copy(array, front, extents, mode):
    """A C-contiguous copy of the 5-D device ``array``, padded by ``front`` to ``extents`` in ``mode``
    (a ``shape_rules.PAD_*`` code) where those are given."""
    out = cuda.device_array(tuple(array.shape[:2]) + tuple(extents), array.dtype)
    threads = config.CUDA_DIRECT_THREADS
    kernel = gemm_kernels.pad_kernel(array.dtype.name, threads)
    kernel[grid_blocks(out.size, threads), threads](array, out, front, mode)
    return out


def _c_contiguous(array):
    return array if array.is_c_contiguous() else _padded_copy(array, (0, 0, 0), array.shape[2:], 0)


def _kernel_input(plan, x):
    """``x`` as the kernel reads it: its padded copy for a non-zero padding mode, else C-contiguous."""
    if gemm_plan.reads_padded_copy(plan):
        return _padded_copy(x, plan.pad_front, plan.padded_size, plan.mode_code)
    return _c_contiguous(x)


def run(plan, x, w, b, out):
    """Fill the batched C-contiguous device ``out`` with ``plan`` on device ``x``, ``w`` and ``b``."""
    kernel, launch, geometry, taps = _prepared(plan)
    x, w = _kernel_input(plan, x), _c_contiguous(w)
    target = out if launch.splits == 1 else cuda.device_array(launch.splits * out.size, plan.dtype)
    kernel[launch.grid, launch.tile.threads](_flat(x), _flat(w), b, _flat(target), taps, geometry)
    if launch.splits > 1:
        threads = config.CUDA_DIRECT_THREADS
        adder = gemm_kernels.split_sum_kernel(plan.dtype, threads)
        adder[grid_blocks(out.size, threads), threads](target, b, _flat(out), geometry)
