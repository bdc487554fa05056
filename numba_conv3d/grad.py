"""Gradients of 3-D convolution on the CPU and the GPU, with the semantics of ``torch.nn.grad`` and
torch's autograd.

``conv3d_input`` and ``conv3d_weight`` take every argument of :func:`numba_conv3d.conv3d`, padding
modes and 'same'/'valid' included: the gradient flows back through reflect, replicate and circular
padding as torch's autograd sends it through ``torch.nn.Conv3d`` (each pad element's gradient is added
onto the element it copied). Complex gradients follow torch's convention (the conjugate Wirtinger
derivative): ``conv3d_input`` correlates with the conjugated weight, ``conv3d_weight`` with the
conjugated input. Every element is summed by one thread in one fixed order: results are bitwise equal
for any thread count, and from run to run on the GPU (on the CPU, a gradient computed as a matrix
product sums in NumPy's BLAS, deterministically for a given BLAS).

Where the operands live picks the backend (NumPy arrays: ``cpu/gradients.py``; CUDA arrays:
``cuda/gradients.py``, the same functions for device arrays); the steps and the choice of route are
written once, here.
"""
import importlib
import itertools
import math
from dataclasses import replace

import numpy as np

from . import cuda_config, grad_crossovers
from .api import run_plan
from .cuda.arrays import cuda_module
from .dispatch import backend_of
from .grad_planner import plan_input_grad, plan_weight_grad
from .planner import check_array, plan_conv3d
from .precision import computed_in_float32
from .stride_phases import one_tap_per_phase, phases


def gradient_backend(op, lead_name, lead, **others):
    """The module that computes gradients where ``lead`` lives: ``cpu.gradients`` for NumPy arrays,
    ``cuda.gradients`` (imported only then) for CUDA arrays; the ``others`` may be host arrays with a
    CUDA ``lead`` (copied for the call), never CUDA arrays with a host one."""
    backend = backend_of(op, lead_name, lead, **others)
    if backend.NAME == "cuda":
        cuda_module(op)  # a clear error before anything imports numba.cuda
    return importlib.import_module(f"{backend.__name__}.gradients")


def _full_correlation_pads(plan):
    """Per dimension, the pads ``dilation * (K - 1)`` of the full correlation of the output gradient:
    at unit stride its result is the gradient of the whole padded input."""
    return tuple(d * (k - 1) for d, k in zip(plan.dilation, plan.kernel_size))


def _covers_padded_input(plan, grad):
    """Whether the unit-stride full correlation of ``grad`` has exactly the padded input's extents."""
    return plan.stride == (1, 1, 1) and all(
        o + full == p for o, full, p in zip(grad.shape[2:], _full_correlation_pads(plan), plan.padded_size))


def _cropped_pads(plan):
    """The (front, back) pads of the correlation that gives only the unpadded input's part of the full
    correlation: the full pads less the forward pads."""
    return tuple((full - front, full - back) for full, (front, back) in zip(_full_correlation_pads(plan),
                                                                            plan.pads))


def _crops_zero_pads(plan, grad):
    """Whether the input's gradient is a cropped correlation: zero pads (whose gradient is dropped), no
    wider than the kernel's span, at unit stride."""
    return (plan.padding_mode == "zeros" and _covers_padded_input(plan, grad)
            and min(min(pair) for pair in _cropped_pads(plan)) >= 0)


def _correlation(plan, grad, weight, conjugate, backend, bias, pads):
    """The forward convolution (by the backend's fast forward kernels) of ``grad``, padded by ``pads``,
    with the flipped, channel-swapped weight, plus ``bias``; that weight is not copied where the
    backend's kernel for the correlation reads it flipped (``correlates_flipped``)."""
    flipped_shape = (plan.in_channels, plan.out_per_group) + plan.kernel_size
    correlation = _correlation_plan(plan, grad, flipped_shape, backend, bias, pads, plan.dilation)
    if backend.correlates_flipped(correlation):
        return backend.correlate_flipped(correlation, grad, weight, bias)
    return run_plan(correlation, grad, backend.flipped_transpose(weight, plan.groups, conjugate), bias)


def _correlation_plan(plan, grad, flipped_shape, backend, bias, pads, dilation):
    """The plan of the forward convolution of ``grad``, padded by ``pads``, with a flipped weight of
    ``flipped_shape`` at ``dilation``, plus ``bias``."""
    return plan_conv3d(grad.shape, flipped_shape, bias=bias is not None, pads=pads, dilation=dilation,
                       groups=plan.groups, dtype=plan.dtype, backend=backend.NAME, op="input gradient")


def _correlate(plan, grad, flipped, backend, bias, pads, dilation):
    """The forward convolution of ``grad``, padded by ``pads``, with ``flipped`` (a weight already
    flipped and channel-swapped) at ``dilation``, plus ``bias``."""
    correlation = _correlation_plan(plan, grad, flipped.shape, backend, bias, pads, dilation)
    return run_plan(correlation, grad, flipped, bias)


def _by_cropped_correlation(plan, grad, weight, conjugate, backend, bias):
    """Zero pads: the input's part of the full correlation, computed alone (no padded gradient, no
    fold)."""
    return _correlation(plan, grad, weight, conjugate, backend, bias, _cropped_pads(plan))


def _by_full_correlation(plan, grad, weight, conjugate, backend, bias):
    """Unit stride: the full correlation, then each pad's gradient folded onto the element it copied."""
    full = tuple((p, p) for p in _full_correlation_pads(plan))
    return backend.fold(plan, _correlation(plan, grad, weight, conjugate, backend, None, full), bias)


def _upsamples(plan, grad):
    """Whether a strided input gradient goes through the unit-stride routes on the output gradient with
    zeros inserted between its elements: ``prod(stride)`` times the multiply-adds, on kernels many times
    faster than the gather (up to ``grad_crossovers.GRAD_UPSAMPLE_MAX_STRIDES``)."""
    return plan.stride != (1, 1, 1) and math.prod(plan.stride) <= grad_crossovers.GRAD_UPSAMPLE_MAX_STRIDES


def _by_upsampled_correlation(plan, grad, weight, conjugate, backend, bias):
    """The input gradient of the unit-stride convolution (same pads, kernel, dilation) whose output
    gradient is ``grad`` spread ``stride`` apart, zeros between: its full correlation covers the padded
    input exactly."""
    unit = replace(plan, stride=(1, 1, 1))
    upsampled = backend.upsampled(grad, plan.stride, unit.output_size)
    compute = next(run for name, applies, run in INPUT_GRAD_ALGORITHMS
                   if name in ("cropped-correlation", "full-correlation") and applies(unit, upsampled))
    return compute(unit, upsampled, weight, conjugate, backend, bias)


def _stride_phases_apply(plan, grad):
    """Whether a strided input gradient runs as stride-phase correlations: always on the CPU; on the GPU
    from ``cuda_config.CUDA_STRIDE_PHASES_MIN_MACS`` multiply-adds (below, the upsampled correlation's
    one launch costs less than the phases' several)."""
    return plan.stride != (1, 1, 1) and (plan.backend == "cpu"
                                         or plan.macs >= cuda_config.CUDA_STRIDE_PHASES_MIN_MACS)


def _by_stride_phases(plan, grad, weight, conjugate, backend, bias):
    """Any stride: ``prod(stride)`` unit-stride correlations of ``grad`` with sub-kernels, one per
    stride phase (``stride_phases.py``), interleaved. With zero pads only the input's positions are
    computed; other modes compute the whole padded input's gradient, then fold it."""
    zero_pads = plan.padding_mode == "zeros"
    starts = plan.pad_front if zero_pads else (0, 0, 0)
    lengths = plan.input_size if zero_pads else plan.padded_size
    per_dim = [phases(*numbers) for numbers in zip(starts, lengths, plan.kernel_size, plan.stride,
                                                    plan.dilation, grad.shape[2:])]
    result = backend.empty((grad.shape[0], plan.in_channels) + tuple(lengths), plan.dtype)
    phase_bias = bias if zero_pads else None
    for combination in itertools.product(*per_dim):
        offsets = tuple(p.offset for p in combination)
        if not all(p.taps for p in combination):
            backend.write_phase(result, offsets, plan.stride, None, phase_bias)
            continue
        sub_kernel = backend.flipped_transpose(weight, plan.groups, conjugate, [p.taps for p in combination])
        cropped = grad[(slice(None), slice(None)) + tuple(
            slice(max(0, -p.pads[0]), n - max(0, -p.pads[1])) for p, n in zip(combination, grad.shape[2:]))]
        pads = tuple((max(0, p.pads[0]), max(0, p.pads[1])) for p in combination)
        backend.write_phase(result, offsets, plan.stride,
                            _correlate(plan, cropped, sub_kernel, backend, phase_bias, pads,
                                       tuple(p.dilation for p in combination)), None)
    return result if zero_pads else backend.fold(plan, result, bias)


def _col2im_applies(plan, grad):
    """Whether the input gradient is a matrix product and col2im (NumPy operands, real dtypes): where
    the forward convolution is one (small volumes, many channels), and strided with many output channels
    per group to sum over, or with a few where the columns have few rows, or not many and the taps do
    not overlap (``grad_crossovers.COL2IM_*``)."""
    if plan.backend != "cpu" or plan.is_complex:
        return False
    if plan.algorithm == "gemm":
        return True
    if plan.stride == (1, 1, 1) or plan.out_per_group < grad_crossovers.COL2IM_FEW_OUT_CHANNELS:
        return False
    rows = plan.in_per_group * math.prod(plan.kernel_size)
    return (plan.out_per_group >= grad_crossovers.COL2IM_MIN_OUT_CHANNELS
            or rows <= grad_crossovers.COL2IM_MAX_COLUMN_ROWS
            or (rows <= grad_crossovers.COL2IM_ONE_TAP_MAX_COLUMN_ROWS
                and one_tap_per_phase(plan.kernel_size, plan.stride, plan.dilation)))


def _by_col2im(plan, grad, weight, conjugate, backend, bias):
    """The weight matrix transposed times the output gradient, each column added back where its taps
    read: the padded input's gradient, cropped (zero pads) or folded."""
    padded = backend.col2im_input_grad(plan, grad, weight, conjugate)
    if plan.padding_mode != "zeros":
        return backend.fold(plan, padded, bias)
    result = np.ascontiguousarray(padded[(slice(None), slice(None)) + tuple(
        slice(front, front + n) for front, n in zip(plan.pad_front, plan.input_size))])
    if bias is not None:
        result += bias.reshape((-1, 1, 1, 1))
    return result


def _by_gather(plan, grad, weight, conjugate, backend, bias):
    """Any stride: the gather kernel (``cpu/input_grad.py``, ``cuda/grad_kernels.py``), then the fold."""
    return backend.fold(plan, backend.gathered_input_grad(plan, grad, weight, conjugate), bias)


# (name, applies(plan, batched grad), input gradient(plan, batched grad, weight, conjugate, backend,
# bias)); the first row that applies runs. Float32 on 2 cores (AVX-512), 32^3, k3 'same': depthwise 64
# channels, cropped 4.9 ms, full correlation and fold 18 ms; dense 32 channels, 11 ms and 23 ms; the
# gather took 0.35 s on dense (AVX2).
INPUT_GRAD_ALGORITHMS = (
    ("gemm-col2im", _col2im_applies, _by_col2im),
    ("cropped-correlation", _crops_zero_pads, _by_cropped_correlation),
    ("full-correlation", _covers_padded_input, _by_full_correlation),
    ("stride-phases", _stride_phases_apply, _by_stride_phases),
    ("upsampled-correlation", _upsamples, _by_upsampled_correlation),
    ("gather", lambda plan, grad: True, _by_gather),
)


def input_gradient(op, plan, grad, weight, conjugate, backend, bias=None):
    """Gradient of ``plan``'s input, given ``grad`` (of the caller's rank) for its output.

    Shared by :func:`conv3d_input` (``conjugate``: a complex gradient correlates with the conjugated
    weight) and :func:`numba_conv3d.transposed.conv_transpose3d` (which adds ``bias``); ``backend`` is
    the module of :func:`gradient_backend`. ``grad``'s spatial extents may be smaller than
    ``plan.output_size`` (a transposed convolution's ``output_padding >= stride``): the rest of the
    output then has no gradient.

    Returns
    -------
    numpy.ndarray or CUDA array
        A new C-contiguous array of ``plan.input_shape``, where ``grad`` lives, of its kind.
    """
    weight = backend.operand(op, "weight", weight)
    bias = None if bias is None else backend.operand(op, "bias", bias)
    if plan.batch == 0:
        result = backend.zeros((0, plan.in_channels) + plan.input_size, plan.dtype)
    else:
        batched = backend.batched(backend.operand(op, "grad_output", grad), plan)
        compute = next(run for _, applies, run in INPUT_GRAD_ALGORITHMS if applies(plan, batched))
        result = compute(plan, batched, weight, conjugate, backend, bias)
    return backend.like(backend.caller_rank(result, plan), grad)


def _weight_gradient(op, plan, input, grad, backend):
    if plan.batch == 0:
        result = backend.zeros(plan.weight_shape, plan.dtype)
    else:
        result = backend.weight_gradient(plan, backend.batched(backend.operand(op, "input", input), plan),
                                         backend.batched(backend.operand(op, "grad_output", grad), plan))
    return backend.like(result, input)


def _bias_gradient(op, grad, backend):
    array = backend.operand(op, "grad_output", grad)
    return backend.like(backend.bias_gradient(array if grad.ndim == 5 else backend.with_batch_axis(array)),
                        grad)


@computed_in_float32
def conv3d_input(input_shape, weight, grad_output, stride=1, padding=0, dilation=1, groups=1,
                 padding_mode="zeros"):
    """Gradient of :func:`numba_conv3d.conv3d` with respect to its input.

    Equivalent to ``torch.nn.grad.conv3d_input(input_shape, weight, grad_output, stride, padding,
    dilation, groups)``, extended to ``padding_mode`` (the gradient ``torch.autograd.grad`` returns
    through ``torch.nn.Conv3d(..., padding_mode=...)``), to 'same'/'valid' padding and to complex
    dtypes (torch's conjugate convention).

    Parameters
    ----------
    input_shape : tuple of int
        Shape of the forward input: (N, C_in, D, H, W) or unbatched (C_in, D, H, W).
    weight : numpy.ndarray or CUDA array
        (C_out, C_in / groups, KD, KH, KW); float32, float64, complex64, complex128, or on the CPU
        float16 or bfloat16 (summed in float32, rounded once, as torch does). A host array with
        a CUDA ``grad_output`` is copied to the device for the call.
    grad_output : numpy.ndarray or CUDA array
        Gradient of the forward output: exactly the output shape of the convolution, ``weight``'s dtype;
        any memory layout. A CUDA array computes on the GPU.
    stride, padding, dilation, groups, padding_mode
        As in :func:`numba_conv3d.conv3d`.

    Returns
    -------
    numpy.ndarray or CUDA array
        A new C-contiguous array of ``input_shape`` and the operands' dtype, where ``grad_output`` lives
        (of its kind: a torch tensor or CuPy array for one).

    Raises
    ------
    ValueError
        Bad values or shapes (as :func:`numba_conv3d.plan_conv3d`), or a ``grad_output`` whose shape is
        not the forward output's, before any computation.
    TypeError
        Non-array operands, unsupported or mismatched dtypes, non-integer arguments, a CUDA weight
        with a host ``grad_output``.
    """
    op = "conv3d_input"
    backend = gradient_backend(op, "grad_output", grad_output, weight=weight)
    plan = plan_input_grad(op, input_shape, weight, grad_output, stride, padding, dilation, groups,
                           padding_mode, backend.NAME)
    return input_gradient(op, plan, grad_output, weight, True, backend)


@computed_in_float32
def conv3d_weight(input, weight_shape, grad_output, stride=1, padding=0, dilation=1, groups=1,
                  padding_mode="zeros"):
    """Gradient of :func:`numba_conv3d.conv3d` with respect to its weight.

    Equivalent to ``torch.nn.grad.conv3d_weight(input, weight_shape, grad_output, stride, padding,
    dilation, groups)``, extended to ``padding_mode``, 'same'/'valid' padding and complex dtypes, as
    ``torch.autograd.grad`` differentiates ``torch.nn.Conv3d``.

    Parameters
    ----------
    input : numpy.ndarray or CUDA array
        The forward input: (N, C_in, D, H, W) or (C_in, D, H, W); any memory layout. A CUDA array
        computes on the GPU.
    weight_shape : tuple of int
        (C_out, C_in / groups, KD, KH, KW).
    grad_output : numpy.ndarray or CUDA array
        Gradient of the forward output: its exact shape, ``input``'s dtype (a host array with a CUDA
        input is copied to the device).
    stride, padding, dilation, groups, padding_mode
        As in :func:`numba_conv3d.conv3d`.

    Returns
    -------
    numpy.ndarray or CUDA array
        A new C-contiguous array of ``weight_shape`` and ``input``'s dtype, where ``input`` lives.

    Raises
    ------
    ValueError
        Bad values or shapes, or a ``grad_output`` of the wrong shape, before any computation.
    TypeError
        Non-array operands, unsupported or mismatched dtypes, non-integer arguments, a CUDA
        ``grad_output`` with a host input.
    """
    op = "conv3d_weight"
    backend = gradient_backend(op, "input", input, grad_output=grad_output)
    plan = plan_weight_grad(op, input, weight_shape, grad_output, stride, padding, dilation, groups,
                            padding_mode, backend.NAME)
    return _weight_gradient(op, plan, input, grad_output, backend)


@computed_in_float32
def conv3d_bias(grad_output):
    """Gradient of :func:`numba_conv3d.conv3d` with respect to its bias: ``grad_output`` summed over the
    batch and the three spatial dimensions (what ``torch.autograd.grad`` returns for ``Conv3d.bias``).

    Parameters
    ----------
    grad_output : numpy.ndarray or CUDA array
        (N, C_out, OD, OH, OW) or unbatched (C_out, OD, OH, OW).

    Returns
    -------
    numpy.ndarray or CUDA array
        (C_out,), ``grad_output``'s dtype, where it lives; summed in one fixed order whatever the memory
        layout (by NumPy on the host; on the GPU a block per channel, each thread a fixed slice, then a
        fixed tree).

    Raises
    ------
    ValueError
        ``grad_output`` without 4 or 5 dimensions.
    TypeError
        A non-array or unsupported-dtype ``grad_output``.
    """
    op = "conv3d_bias"
    backend = gradient_backend(op, "grad_output", grad_output)
    check_array(op, "grad_output", grad_output, backend.NAME)
    if grad_output.ndim not in (4, 5):
        raise ValueError(f"{op}: expected grad_output to have 4 or 5 dimensions, but got shape "
                         f"{tuple(grad_output.shape)}")
    return _bias_gradient(op, grad_output, backend)


@computed_in_float32
def conv3d_backward(input, weight, grad_output, stride=1, padding=0, dilation=1, groups=1,
                    padding_mode="zeros", bias=True):
    """All the gradients of one :func:`numba_conv3d.conv3d` call, validated once.

    What ``torch.autograd.grad(output, (input, weight, bias), grad_output)`` returns for
    ``output = torch.nn.Conv3d(...)(input)``.

    Parameters
    ----------
    input, weight, grad_output : numpy.ndarray or CUDA array
        The forward input and weight, and the gradient of the forward output (its shape), one dtype. A
        CUDA input computes on the GPU (a host weight or ``grad_output`` is then copied there); a
        host input takes host operands only.
    stride, padding, dilation, groups, padding_mode
        As in :func:`numba_conv3d.conv3d`.
    bias : bool, optional
        Whether the convolution had a bias (whose gradient is then returned).

    Returns
    -------
    grad_input, grad_weight, grad_bias : numpy.ndarray or CUDA array
        Of the shapes of ``input``, ``weight`` and (C_out,), where ``input`` lives; ``grad_bias`` is None
        without a bias.
    """
    op = "conv3d_backward"
    backend = gradient_backend(op, "input", input, weight=weight, grad_output=grad_output)
    check_array(op, "weight", weight, backend.NAME, dtype=check_array(op, "input", input, backend.NAME))
    plan = plan_input_grad(op, tuple(input.shape), weight, grad_output, stride, padding, dilation, groups,
                           padding_mode, backend.NAME)
    return (input_gradient(op, plan, grad_output, weight, True, backend),
            _weight_gradient(op, plan, input, grad_output, backend),
            _bias_gradient(op, grad_output, backend) if bias else None)
