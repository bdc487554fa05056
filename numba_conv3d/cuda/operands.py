"""Operands of the flat-view kernels (implicit GEMM, depthwise): flat C-order device views of the
caller's arrays, made without copies where they already are C-contiguous device arrays; padded or
contiguous copies where the kernels need them; plan constants on the device once per plan."""
import functools

import numpy as np
from numba import cuda

from .. import cuda_config
from . import arrays, geometry
from .kernels import FastLaunch, pad_kernel
from .tiling import grid_blocks

# One launcher per compiled kernel (dispatchers are cached per variant, so are these).
fast = functools.lru_cache(maxsize=None)(FastLaunch)


@functools.lru_cache(maxsize=256)
def device_geometry(plan):
    """``geometry.geometry(plan)`` on the device (copied once per plan and process)."""
    return cuda.to_device(geometry.geometry(plan))


@functools.lru_cache(maxsize=None)
def no_bias(dtype):
    """A one-element device array that stands for a missing bias (the kernels never read it)."""
    return cuda.device_array(1, dtype)


def _padded_copy(volume, front, extents, mode):
    """A C-contiguous copy of the 5-D device ``volume``, padded by ``front`` to ``extents`` in ``mode``
    (a ``shape_rules.PAD_*`` code)."""
    out = cuda.device_array(tuple(volume.shape[:2]) + tuple(extents), volume.dtype)
    threads = cuda_config.CUDA_DIRECT_THREADS
    kernel = pad_kernel(volume.dtype.name, threads)
    kernel[grid_blocks(out.size, threads), threads](volume, out, front, mode)
    return out


def flat(op, name, array, plan=None, bits=False):
    """``array`` as a flat C-order device view (of its bits where ``bits``, see ``arrays.to_device``):
    directly where it is a C-contiguous device array, else through a copy (host arrays, strided device
    arrays, and the input padded in ``plan``'s non-zero padding mode, when ``plan`` is given)."""
    padded = plan is not None and geometry.reads_padded_copy(plan)
    view = None if padded else arrays.flat_view(cuda, op, name, array, bits)
    if view is not None:
        return view
    device = arrays.to_device(cuda, op, name, array, bits)
    if device.ndim == 1 and not device.is_c_contiguous():
        device = cuda.to_device(np.ascontiguousarray(device.copy_to_host()))
    elif padded or not device.is_c_contiguous():
        volume = device if device.ndim == 5 else arrays.with_batch_axis(device)
        front, extents, mode = ((plan.pad_front, plan.padded_size, plan.mode_code) if padded
                                else ((0, 0, 0), volume.shape[2:], 0))
        device = _padded_copy(volume, front, extents, mode)
    return device.reshape(device.size)


def flat_operands(plan, input, weight, bias, bits=False):
    """(result to return, flat output, flat input, flat weight, flat bias) of a call, as their bits
    where ``bits``: the output is allocated by the input's library (see ``arrays.empty_like_input``); a
    missing bias is ``no_bias``."""
    result, out = arrays.empty_like_input(cuda, input, plan.output_shape, plan.dtype, bits)
    x = flat("conv3d", "input", input, plan, bits)
    w = flat("conv3d", "weight", weight, bits=bits)
    b = (no_bias(out.dtype.name) if bias is None else flat("conv3d", "bias", bias, bits=bits))
    return result, out, x, w, b
