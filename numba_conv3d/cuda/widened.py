"""float16 and bfloat16 plans on the float32 algorithms: the operands widened on the device (exactly),
the float32 result rounded once (to nearest even) into an output of the input's kind and dtype."""
import functools

import numpy as np
from numba import cuda

from .. import cuda_config
from . import arrays, tensor_ops
from .kernels import jit_kernel
from .operands import fast, flat
from .tiling import grid_blocks


@functools.lru_cache(maxsize=None)
def conversion_kernel(kind, widening, threads):
    """The kernel that converts flat ``source`` into flat ``target`` element by element: the stored
    bits of ``kind`` (float16, bfloat16) to float32 where ``widening``, else float32 to those bits."""
    convert = tensor_ops.conversions(kind)
    element = convert.widened if widening else convert.narrowed

    @jit_kernel(threads, 1)
    def kernel(source, target):
        for index in range(cuda.grid(1), source.size, cuda.gridsize(1)):
            target[index] = element(source[index])

    return kernel


def _convert(kind, widening, source, target):
    threads = cuda_config.CUDA_DIRECT_THREADS
    kernel = fast(conversion_kernel(kind, widening, threads))
    kernel((grid_blocks(source.size, threads), 1, 1), (threads, 1, 1), source, target)


def _widened(kind, name, array):
    source = flat("conv3d", name, array, bits=True)
    target = cuda.device_array(source.size, np.float32)
    _convert(kind, True, source, target)
    return target.reshape(tuple(array.shape))


def computed_in_float32(run, plan, input, weight, bias):
    """``run(plan.computed(), x, w, b)`` (a CUDA row's run) on the widened operands of reduced-precision
    ``plan``, its result rounded into an output like ``input``."""
    x, w = _widened(plan.dtype, "input", input), _widened(plan.dtype, "weight", weight)
    b = None if bias is None else _widened(plan.dtype, "bias", bias)
    computed = run(plan.computed(), x, w, b)
    result, out = arrays.empty_like_input(cuda, input, plan.output_shape, plan.dtype, bits=True)
    if out.size:
        _convert(plan.dtype, False, computed.reshape(computed.size), out)
    return result
