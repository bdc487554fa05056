"""float16 and bfloat16 plans on the float32 algorithms: the operands widened on the device (exactly),
the float32 result rounded once (to nearest even) into an output of the input's kind and dtype."""
import functools

import numpy as np
from numba import cuda

from .. import cuda_config
from ..precision import dtype_name, named_dtype
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


def widened_array(array, name="operand"):
    """A C-contiguous float32 Numba device array of the values of float16 or bfloat16 ``array`` (a CUDA
    or host array; exact), of its shape."""
    source = flat("conv3d", name, array, bits=True)
    target = cuda.device_array(source.size, np.float32)
    if source.size:
        _convert(dtype_name(array), True, source, target)
    return target.reshape(tuple(array.shape))


def narrowed_like(result, dtype, like):
    """Float32 device array ``result`` rounded to ``dtype`` (float16 or bfloat16; nearest even), as a
    new array of ``like``'s kind (see ``arrays.empty_like_input``)."""
    rounded, out = arrays.empty_like_input(cuda, like, tuple(result.shape), dtype, bits=True)
    if out.size:
        _convert(named_dtype(dtype).name, False, flat("conv3d", "result", result), out)
    return rounded


def computed_in_float32(run, plan, input, weight, bias):
    """``run(plan.computed(), x, w, b)`` (a CUDA row's run) on the widened operands of reduced-precision
    ``plan``, its result rounded into an output like ``input``."""
    x, w = widened_array(input, "input"), widened_array(weight, "weight")
    b = None if bias is None else widened_array(bias, "bias")
    return narrowed_like(run(plan.computed(), x, w, b), plan.dtype, input)
