"""The CUDA side of the gradients (``numba_conv3d.grad``): the functions of ``cpu/gradients.py`` for CUDA
operands, launching the kernels of ``grad_kernels.py``.

Operands are read in place in any layout (host weights and biases are copied to the device for the
call); results are new C-contiguous device arrays, of the leading operand's kind (torch, CuPy: zero-copy
views), queued on the default stream like the forward convolution.
"""
import functools

import numpy as np
from numba import cuda

from .. import cuda_config
from ..shape_rules import ceil_div, padded_source_index
from . import arrays, grad_kernels, weight_gemm
from .operands import no_bias
from .tiling import grid_blocks

NAME = "cuda"


def _elementwise(kernel_for, out, *arguments):
    """Launch the one-thread-per-element kernel ``kernel_for(threads)`` over ``out`` (its last argument)."""
    threads = cuda_config.CUDA_DIRECT_THREADS
    kernel_for(threads)[grid_blocks(out.size, threads), threads](*arguments, out)
    return out


def _reduce_threads():
    threads = cuda_config.CUDA_REDUCE_THREADS
    if threads < 1 or threads & (threads - 1):
        raise ValueError(f"cuda_config.CUDA_REDUCE_THREADS must be a power of two, but is {threads}")
    return threads


def operand(op, name, array):
    """``array`` as a Numba device array (host arrays copied)."""
    return arrays.to_device(cuda, op, name, array)


with_batch_axis = arrays.with_batch_axis


def batched(array, plan):
    """``array`` (a device array of the caller's rank) with a batch axis, a view."""
    return array if plan.batched else with_batch_axis(array)


def caller_rank(array, plan):
    """The batched result ``array`` in the caller's rank."""
    return array if plan.batched else array[0]


def like(array, lead):
    """``array`` as the kind of array ``lead`` is (torch and CuPy: zero-copy views)."""
    return arrays.like_input(array, lead)


def zeros(shape, dtype):
    """A new device array of zeros."""
    return cuda.to_device(np.zeros(shape, dtype))


def empty(shape, dtype):
    """A new uninitialised device array."""
    return cuda.device_array(shape, dtype)


@functools.lru_cache(maxsize=256)
def _flipped_taps(taps):
    """``taps`` (per dimension, ascending) reversed, as device arrays (copied once per taps)."""
    return tuple(cuda.to_device(np.asarray(kept[::-1], np.int64)) for kept in taps)


def correlates_flipped(plan):
    """Whether a correlation with the flipped weight runs from the unflipped one (see
    ``cpu/gradients.py``): never on the GPU, whose kernels read the flipped copy the flip kernel makes."""
    return False


def flipped_transpose(weight, groups, conjugate, taps=None):
    """The weight of the full correlation that is the input gradient, or with ``taps`` the sub-kernel
    of one stride phase (see ``cpu/gradients.py``)."""
    if taps is None:
        taps = [range(k) for k in weight.shape[2:]]
    taps = tuple(tuple(kept) for kept in taps)
    out_channels, in_per_group = weight.shape[:2]
    out = cuda.device_array((in_per_group * groups, out_channels // groups) + tuple(map(len, taps)),
                            weight.dtype)
    return _elementwise(lambda threads: grad_kernels.flip_kernel(weight.dtype.name, threads, conjugate),
                        out, weight, *_flipped_taps(taps))


def write_phase(result, offsets, stride, values, bias):
    """Set the positions ``offsets + q * stride`` (per spatial axis) of the batched device ``result``
    to ``values``, or where ``values`` is None to ``bias`` per channel (zeros without one)."""
    counts = tuple(ceil_div(extent - offset, step)
                   for extent, offset, step in zip(result.shape[2:], offsets, stride))
    total = result.shape[0] * result.shape[1] * int(np.prod(counts))
    source = 0 if values is not None else (1 if bias is not None else 2)
    values = values if values is not None else no_values(result.dtype)
    bias = bias if bias is not None else no_bias(result.dtype)
    threads = cuda_config.CUDA_DIRECT_THREADS
    grad_kernels.phase_write_kernel(result.dtype.name, threads)[grid_blocks(total, threads), threads](
        values, bias, source, tuple(offsets), tuple(stride), counts, result)


@functools.lru_cache(maxsize=None)
def no_values(dtype):
    """A one-element 5-D device array that stands for missing phase values (never read)."""
    return cuda.device_array((1, 1, 1, 1, 1), dtype)


def upsampled(grad, stride, extents):
    """``grad`` (batched) spread ``stride`` apart along D, H, W in zeros of spatial ``extents``."""
    out = cuda.device_array(tuple(grad.shape[:2]) + tuple(extents), grad.dtype)
    return _elementwise(lambda threads: grad_kernels.upsample_kernel(grad.dtype.name, threads), out, grad,
                        tuple(stride))


def gathered_input_grad(plan, grad, weight, conjugate):
    """The padded input's gradient by the gather kernel (any stride)."""
    out = cuda.device_array((grad.shape[0], plan.in_channels) + plan.padded_size, plan.dtype)
    return _elementwise(lambda threads: grad_kernels.gather_kernel(plan.dtype, threads, conjugate), out,
                        grad, weight, plan.groups, plan.stride, plan.dilation)


def inverse_index_maps(plan):
    """Per axis, the padded positions that copy each input index, ascending, as ``(starts, positions)``
    (3 rows each, CSR-style): input index i of axis a is copied by ``positions[a, starts[a, i]:starts[a,
    i + 1]]``. Built from the forward pads' index maps (``padded_source_index``)."""
    starts = np.zeros((3, max(plan.input_size) + 1), np.int64)
    positions = np.zeros((3, max(plan.padded_size)), np.int64)
    for axis, (padded, front, size) in enumerate(zip(plan.padded_size, plan.pad_front, plan.input_size)):
        sources = np.array([padded_source_index(p, front, size, plan.mode_code) for p in range(padded)])
        copies = np.flatnonzero(sources >= 0)
        order = np.argsort(sources[copies], kind="stable")
        positions[axis, :copies.size] = copies[order]
        starts[axis, 1:size + 1] = np.cumsum(np.bincount(sources[copies], minlength=size))
    return starts, positions


def fold(plan, padded, bias):
    """The input's gradient from its padded copy's, plus ``bias`` per channel when given."""
    starts, positions = inverse_index_maps(plan)
    out = cuda.device_array((padded.shape[0], plan.in_channels) + plan.input_size, plan.dtype)
    bias_values = cuda.device_array(1, plan.dtype) if bias is None else bias  # unread without a bias
    return _elementwise(lambda threads: grad_kernels.fold_kernel(plan.dtype, threads), out, padded,
                        cuda.to_device(starts), cuda.to_device(positions), bias_values, bias is not None)


def weight_gradient(plan, input, grad):
    """The weight's gradient, ``plan.weight_shape``, from the batched input and output gradient: by the
    first route of ``WEIGHT_GRAD_ROUTES`` that serves ``plan``."""
    return next(run for applies, run in WEIGHT_GRAD_ROUTES if applies(plan))(plan, input, grad)


def reduced_weight_gradient(plan, input, grad):
    """The weight's gradient by a block reduction per weight element (any dtype and groups)."""
    threads = _reduce_threads()
    out = cuda.device_array(plan.weight_shape, plan.dtype)
    kernel = grad_kernels.weight_grad_kernel(plan.dtype, threads)
    kernel[grid_blocks(out.size, 1), threads](input, grad, out, plan.groups, plan.stride, plan.dilation,
                                          plan.pad_front, plan.mode_code)
    return out


# (applies(plan), weight gradient(plan, batched input, batched grad)): the implicit GEMM where it serves
# (real dtypes, groups of at least cuda_config.CUDA_GEMM_MIN_OUT_CHANNELS output channels), else the
# reduction per element.
WEIGHT_GRAD_ROUTES = ((weight_gemm.applies, weight_gemm.execute),
                      (lambda plan: True, reduced_weight_gradient))


def bias_gradient(grad):
    """``grad`` (batched) summed over batch and space: the positions of each channel split until the
    blocks reach ``cuda_config.CUDA_REDUCE_BLOCKS`` (keeping ``cuda_config.CUDA_REDUCE_MIN_SPLIT`` positions a
    split), each split summed by a block, then the splits added in order."""
    threads = _reduce_threads()
    channels, positions = grad.shape[1], grad.size // max(grad.shape[1], 1)
    splits = max(1, min(ceil_div(cuda_config.CUDA_REDUCE_BLOCKS, max(channels, 1)),
                        positions // cuda_config.CUDA_REDUCE_MIN_SPLIT, 65535))
    partials = cuda.device_array((splits, channels), grad.dtype)
    grad_kernels.bias_grad_kernel(grad.dtype.name, threads)[(grid_blocks(channels, 1), splits), threads](
        grad, partials)
    out = cuda.device_array(channels, grad.dtype)
    return _elementwise(lambda threads: grad_kernels.split_rows_kernel(grad.dtype.name, threads), out,
                        partials)
