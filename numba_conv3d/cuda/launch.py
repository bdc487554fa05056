"""Running a plan on the GPU: operands onto the device, the output allocated, the kernel launched."""
from numba import cuda

from .. import cuda_config
from . import arrays, kernels, tiling


def execute(plan, input, weight, bias, run):
    """Compute ``plan`` on device ``input``; ``run(plan, x, w, b, out)`` is the algorithm's launcher.

    Returns the output as a Numba device array, or as the input's kind (torch tensor, CuPy array).
    """
    x = arrays.to_device(cuda, "conv3d", "input", input)
    w = arrays.to_device(cuda, "conv3d", "weight", weight)
    # Without bias the kernel never reads b: an uninitialised element, no host-to-device copy.
    b = cuda.device_array(1, plan.dtype) if bias is None else arrays.to_device(cuda, "conv3d", "bias",
                                                                                bias)
    out = cuda.device_array((plan.batch, plan.out_channels) + plan.output_size, plan.dtype)
    if plan.batch:
        run(plan, x if plan.batched else arrays.with_batch_axis(x), w, b, out)
    return arrays.like_input(out if plan.batched else out[0], input)


def _arguments(plan):
    return (plan.groups, plan.stride, plan.dilation, plan.pad_front, plan.padded_size, plan.mode_code,
            plan.has_bias)


def run_tiled(plan, x, w, b, out, tile):
    """Launch the tiled kernel of ``tile`` on batched device operands."""
    kernel = kernels.tiled_kernel(plan.dtype, tile, cuda_config.CUDA_MIN_BLOCKS_PER_SM)
    launch = kernel[tiling.tile_launch_blocks(plan, tile), tile.block_shape, 0, plan.workspace_bytes]
    launch(x, w, b, out, *_arguments(plan))


def run_direct(plan, x, w, b, out):
    """Launch the direct (fallback) kernel on batched device operands."""
    threads = cuda_config.CUDA_DIRECT_THREADS
    kernel = kernels.direct_kernel(plan.dtype, threads)
    kernel[tiling.direct_launch_blocks(plan), threads](x, w, b, out, *_arguments(plan))
