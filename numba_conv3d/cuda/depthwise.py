"""Running a depthwise plan (one input and one output channel per group) through the L1 cache."""
from .. import cuda_config
from .depthwise_kernels import depthwise_kernel
from .operands import device_geometry, fast, flat_operands
from .tiling import depthwise_launch_blocks


def execute(plan, input, weight, bias):
    """The result of ``plan`` on device ``input``, of the input's kind (see ``conv3d``)."""
    result, out, x, w, b = flat_operands(plan, input, weight, bias)
    if plan.batch == 0:
        return result
    threads = cuda_config.CUDA_DIRECT_THREADS
    kernel = fast(depthwise_kernel(plan.dtype, threads, cuda_config.CUDA_DEPTHWISE_OUTPUTS))
    kernel((depthwise_launch_blocks(plan, threads), 1, 1), (threads, 1, 1), x, w, b, out,
           device_geometry(plan))
    return result
