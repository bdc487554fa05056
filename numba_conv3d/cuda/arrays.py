"""Device arrays: recognised without importing ``numba.cuda``; operands moved onto the GPU once."""
import functools

import numpy as np


def is_device_array(obj):
    """Whether ``obj`` lives on a CUDA device.

    True for objects exposing ``__cuda_array_interface__`` (Numba device arrays, CuPy arrays, torch
    CUDA tensors) and for Numba's device arrays under the simulator (which expose ``__cuda_ndarray__``
    instead).
    """
    if getattr(obj, "__cuda_ndarray__", False):
        return True
    try:
        return hasattr(obj, "__cuda_array_interface__")
    except RuntimeError:
        # torch raises RuntimeError (not AttributeError) for CUDA tensors that require grad.
        return True


@functools.cache
def _cuda_status():
    """(``numba.cuda`` or None, whether it sees a GPU): asked once per process, since
    ``cuda.is_available()`` costs more than a whole small convolution."""
    try:
        from numba import cuda
    except ImportError:
        return None, False
    return cuda, cuda.is_available()


def cuda_module(op):
    """``numba.cuda``, once it is known to be installed and to see a GPU (or the simulator)."""
    cuda, available = _cuda_status()
    if cuda is None:
        raise TypeError(f"{op}: input is a CUDA array, but numba-cuda is not installed; "
                        f"pip install 'numba_conv3d[cuda]'")
    if not available:
        raise RuntimeError(f"{op}: input is a CUDA array, but Numba finds no usable CUDA GPU "
                           f"(driver or toolkit missing: see `numba -s` and `numba-conv3d info`)")
    return cuda


def to_device(cuda, op, name, array):
    """``array`` as a Numba device array: device arrays are viewed without a copy, host arrays copied."""
    if isinstance(array, np.ndarray):
        return cuda.to_device(np.ascontiguousarray(array))
    if getattr(array, "__cuda_ndarray__", False):
        return array
    try:
        return cuda.as_cuda_array(array)
    except RuntimeError as err:
        raise TypeError(f"{op}: {name} is a CUDA tensor that requires grad; pass {name}.detach() "
                        f"(numba_conv3d computes no autograd graph)") from err


def with_batch_axis(array):
    """A view of the 4-D device ``array`` with a leading batch axis of 1."""
    if not hasattr(array, "gpu_data"):
        return array[np.newaxis]  # the simulator's arrays wrap NumPy arrays
    strides = (array.strides[0] * array.shape[0],) + array.strides
    return type(array)((1,) + array.shape, strides, array.dtype, gpu_data=array.gpu_data)


def like_input(result, input):
    """``result`` as the input's array kind where that is a zero-copy view (torch, CuPy), else as is."""
    library = type(input).__module__.partition(".")[0]
    if library == "torch":
        import torch

        return torch.as_tensor(result, device=input.device)
    if library == "cupy":
        import cupy

        return cupy.asarray(result)
    return result
