"""Device arrays: recognised without importing ``numba.cuda``; operands moved onto the GPU once."""
import functools

import numpy as np

from ..precision import named_dtype


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


def to_device(cuda, op, name, array, bits=False):
    """``array`` as a Numba device array: device arrays are viewed without a copy, host arrays copied;
    where ``bits``, as unsigned integers of its item size (``bits_interface``)."""
    if isinstance(array, np.ndarray):
        host = np.ascontiguousarray(array)
        return cuda.to_device(host.view(_bits_dtype(host.dtype)) if bits else host)
    if getattr(array, "__cuda_ndarray__", False):
        return array.view(_bits_dtype(array.dtype)) if bits else array
    try:
        if bits:
            return cuda.from_cuda_array_interface(bits_interface(array.__cuda_array_interface__),
                                                  owner=array)
        return cuda.as_cuda_array(array)
    except RuntimeError as err:
        raise _requires_grad(op, name) from err


def _bits_dtype(dtype):
    return np.dtype(f"u{np.dtype(dtype).itemsize}")


def bits_interface(interface):
    """``interface`` (a CUDA array interface) read as unsigned integers of its item size: the bits of
    float16 and bfloat16 (which torch exports as '<V2', a type Numba has no arrays of)."""
    return dict(interface, typestr=_bits_dtype(interface["typestr"]).str)


def _requires_grad(op, name):
    """The TypeError for a torch tensor that requires grad (torch refuses its array interface)."""
    return TypeError(f"{op}: {name} is a CUDA tensor that requires grad; pass {name}.detach() "
                     f"(numba_conv3d computes no autograd graph)")


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


# Streams a CUDA array interface may name that our launches (on the legacy default stream) are already
# ordered after: none given, the legacy default stream (1), the per-thread default stream (2).
_ORDERED_STREAMS = (None, 1, 2)

# Flat device views of operands seen recently, by (pointer, extent, dtype): a view holds no reference
# to its memory, and is used only while the caller passes an array over exactly that memory.
_FLAT_VIEWS = {}
_FLAT_VIEWS_SIZE = 64


def flat_view(cuda, op, name, array, bits=False):
    """A 1-D Numba device view of ``array`` where it is a C-contiguous device array (any kind), else
    None (host arrays, strided views); where ``bits``, of its bits (see ``to_device``). Made without
    synchronizing where the array's stream is a default stream (then the launch that follows is
    ordered after its producer anyway); views are cached by memory."""
    if getattr(array, "__cuda_ndarray__", False):
        if not array.is_c_contiguous():
            return None
        flat = array.reshape(array.size)
        return flat.view(_bits_dtype(flat.dtype)) if bits else flat
    try:
        interface = getattr(array, "__cuda_array_interface__", None)
    except RuntimeError as err:
        raise _requires_grad(op, name) from err
    if interface is None:
        return None
    if bits:
        interface = bits_interface(interface)
    shape, strides, typestr = interface["shape"], interface.get("strides"), interface["typestr"]
    itemsize = np.dtype(typestr).itemsize
    if strides is not None and strides != _c_strides(shape, itemsize):
        return None
    if interface.get("stream") not in _ORDERED_STREAMS:
        cuda.external_stream(interface["stream"]).synchronize()
    size = int(np.prod(shape, dtype=np.int64))
    key = (interface["data"][0], size, typestr)
    view = _FLAT_VIEWS.get(key)
    if view is None:
        if len(_FLAT_VIEWS) >= _FLAT_VIEWS_SIZE:
            _FLAT_VIEWS.clear()
        view = cuda.from_cuda_array_interface(
            {"shape": (size,), "strides": None, "typestr": typestr, "data": interface["data"],
             "version": interface.get("version", 2)}, owner=None, sync=False)
        _FLAT_VIEWS[key] = view
    return view


def _c_strides(shape, itemsize):
    strides, step = [], itemsize
    for extent in reversed(shape):
        strides.append(step)
        step *= extent
    return tuple(reversed(strides))


def empty_like_input(cuda, input, shape, dtype, bits=False):
    """A new C-contiguous device array of ``shape`` allocated by the input's library where it has a
    memory pool (torch, CuPy), else by Numba: (the array to return, its flat Numba view, of its bits
    where ``bits``)."""
    library = type(input).__module__.partition(".")[0]
    if library == "torch":
        import torch

        result = torch.empty(shape, dtype=getattr(torch, named_dtype(dtype).name), device=input.device)
    elif library == "cupy":
        import cupy

        result = cupy.empty(shape, dtype)
    else:
        result = cuda.device_array(shape, named_dtype(dtype))
    return result, flat_view(cuda, "conv3d", "output", result, bits)
