"""The CPU side of the gradients (``numba_conv3d.grad``): NumPy operands, the kernels of ``input_grad.py``,
``pad_fold.py`` and ``weight_grad.py``, each call inside ``safe_to_run``.

``numba_conv3d/cuda/gradients.py`` offers the same functions for CUDA operands; ``grad.py`` picks one
module by where the operands live and runs the same steps on it.
"""
import numpy as np

from ..parallelism import safe_to_run
from . import (channel_weight_grad, execute_flipped, gemm, phase_stack, reads_flipped, tap_gemm, tap_scatter,
               winograd_weight_grad)
from .tap_scatter import Placement  # noqa: F401  (what the phase-stack route places)
from .flipped import flipped_transpose  # noqa: F401  (the backends' shared interface)
from .input_grad import padded_input_grad
from .pad_fold import fold_padding
from .weight_grad import weight_grad

NAME = "cpu"


def _conj(array, conjugate=True):
    return np.conj(array) if conjugate and np.iscomplexobj(array) else array


def operand(op, name, array):
    """``array`` as the kernels read it (NumPy arrays are read in place, in any layout)."""
    return array


def with_batch_axis(array):
    """A view of 4-D ``array`` with a leading batch axis of 1."""
    return array[np.newaxis]


def batched(array, plan):
    """``array`` (of the caller's rank) with a batch axis."""
    return array if plan.batched else with_batch_axis(array)


def caller_rank(array, plan):
    """The batched result ``array`` in the caller's rank."""
    return array if plan.batched else array[0]


def like(array, lead):
    """``array`` as the kind of array ``lead`` is (NumPy: as it is)."""
    return array


def zeros(shape, dtype):
    """A new array of zeros."""
    return np.zeros(shape, dtype)


def empty(shape, dtype):
    """A new uninitialised array."""
    return np.empty(shape, dtype)


def write_phase(result, offsets, stride, values, bias):
    """Set the positions ``offsets + q * stride`` (per spatial axis) of the batched ``result`` to
    ``values``, or where ``values`` is None to ``bias`` per channel (zeros without one)."""
    target = result[(slice(None), slice(None)) + tuple(slice(o, None, s) for o, s in zip(offsets, stride))]
    if values is not None:
        target[...] = values
    else:
        target[...] = 0 if bias is None else bias.reshape((-1, 1, 1, 1))


def correlates_flipped(plan):
    """Whether ``plan``, a correlation with the flipped, channel-swapped weight, runs from the unflipped
    weight (:func:`correlate_flipped`): where its row reads the weight so (``Algorithm.run_flipped``: the
    tap-by-tap products, the Winograd rows' weight transforms), in its own dtype."""
    return plan.dtype == plan.compute_dtype and reads_flipped(plan)


def correlate_flipped(plan, grad, weight, bias):
    """``plan`` run on ``grad`` and ``flipped_transpose(weight, plan.groups, False)`` without that copy."""
    return execute_flipped(plan, grad, weight, bias)


def upsampled(grad, stride, extents):
    """``grad`` (batched) spread ``stride`` apart along D, H, W in zeros of spatial ``extents``."""
    out = np.zeros(grad.shape[:2] + tuple(extents), grad.dtype)
    out[:, :, :grad.shape[2] * stride[0]:stride[0], :grad.shape[3] * stride[1]:stride[1],
        :grad.shape[4] * stride[2]:stride[2]] = grad
    return out


def pointwise_weight(weight, groups):
    """The tap-scatter route's pointwise weight (``tap_scatter.pointwise_weight``)."""
    with safe_to_run():
        return tap_scatter.pointwise_weight(weight, groups)


def scatter(plan, columns, fill):
    """Each tap's (or phase's) sums placed where it reads (``tap_scatter.scatter``)."""
    with safe_to_run():
        return tap_scatter.scatter(plan, columns, fill)


def finite_bits(array):
    """Whether every element of a bfloat16 array is finite (``phase_stack.finite_bits``)."""
    with safe_to_run():
        return phase_stack.finite_bits(array)


def stacked_weight(weight, groups, taps):
    """The phase-stack route's weight (``phase_stack.stacked_weight``)."""
    with safe_to_run():
        return phase_stack.stacked_weight(weight, groups, taps)


def gathered_input_grad(plan, grad, weight, conjugate):
    """The padded input's gradient by the gather kernel (any stride)."""
    with safe_to_run():
        return padded_input_grad(np.ascontiguousarray(grad), np.ascontiguousarray(_conj(weight, conjugate)),
                                 plan.padded_size, plan.stride, plan.dilation, plan.groups)


def col2im_input_grad(plan, grad, weight, conjugate):
    """The padded input's gradient as a matrix product and col2im (``gemm.padded_input_grad``)."""
    with safe_to_run():
        return gemm.padded_input_grad(np.ascontiguousarray(grad), _conj(weight, conjugate), plan.padded_size,
                                      plan.stride, plan.dilation, plan.groups)


def fold(plan, padded, bias):
    """The input's gradient from its padded copy's, plus ``bias`` per channel when given."""
    with safe_to_run():
        result = fold_padding(padded, plan.pad_front, plan.input_size, plan.mode_code)
    if bias is not None:
        result += bias.reshape((-1, 1, 1, 1))
    return result


def weight_gradient(plan, input, grad):
    """The weight's gradient, ``plan.weight_shape``, from the batched input and output gradient: by
    Winograd where ``winograd_weight_grad.preferred`` (unless a weight comes out NaN or infinite), else
    by the kernel vectorized over output channels where ``channel_weight_grad.preferred``, else one
    product per tap where ``tap_gemm.prefers_weight_grad``, as a matrix product where
    ``gemm.computes_weight_grad``, else by the kernel vectorized over positions."""
    arguments = (plan.weight_shape, plan.stride, plan.dilation, plan.pad_front, plan.padded_size,
                 plan.mode_code, plan.groups)
    with safe_to_run():
        if winograd_weight_grad.preferred(plan):
            result = winograd_weight_grad.weight_grad(np.ascontiguousarray(input), np.ascontiguousarray(grad),
                                                      *arguments)
            if result is not None:
                return result
        if channel_weight_grad.preferred(plan):
            return channel_weight_grad.weight_grad(np.ascontiguousarray(input), np.ascontiguousarray(grad),
                                                   *arguments)
        if tap_gemm.prefers_weight_grad(plan):
            return tap_gemm.weight_grad(np.ascontiguousarray(input), np.ascontiguousarray(grad), *arguments)
        if gemm.computes_weight_grad(plan):
            return gemm.weight_grad(np.ascontiguousarray(input), np.ascontiguousarray(grad), *arguments)
        return weight_grad(_conj(input), np.ascontiguousarray(grad), *arguments)


def bias_gradient(grad):
    """``grad`` (batched) summed over batch and space."""
    # NumPy's summation order follows the memory layout: a C-contiguous copy fixes it
    return np.ascontiguousarray(grad).sum(axis=(0, 2, 3, 4))
