"""The routes of a convolution's input gradient (and so of a transposed convolution), for both
backends: ``INPUT_GRAD_ALGORITHMS``, the first row that applies runs, each route written once over the
backend module's steps (``cpu/gradients.py``, ``cuda/gradients.py``).
"""
import itertools
import math
from dataclasses import replace

import numpy as np

from . import cuda_config, grad_crossovers, plan_cache
from .api import run_plan
from .cpu.preferences import forward_is_gemm_shaped
from .planner import plan_conv3d, plan_in_compute_dtype
from .precision import named_dtype, narrow, widen
from .stride_phases import one_tap_per_phase, phases, stacked


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
    the forward convolution is one or GEMM-shaped (small volumes, many channels:
    ``cpu.preferences.forward_is_gemm_shaped``), and strided with many output channels
    per group to sum over, or with a few where the columns have few rows, or not many and the taps do
    not overlap (``grad_crossovers.COL2IM_*``)."""
    if plan.backend != "cpu" or plan.is_complex:
        return False
    if forward_is_gemm_shaped(plan):
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


# The rows whose convolution makes the tap-scatter and phase-stack routes pay: bfloat16 pairs summed in
# float32 by AMX tiles or the AVX512-BF16 dot products.
_PAIR_PRODUCT_ROWS = ("bfloat16-amx", "bfloat16-rows", "bfloat16-dot")


def _pointwise_plan(plan, grad_shape, bias):
    """The plan of the pointwise convolution of an output gradient of ``grad_shape`` that gives each
    (input channel, tap) of ``plan``'s input gradient, with a bias where ``bias``."""
    weight_shape = (plan.in_channels * math.prod(plan.kernel_size), plan.out_per_group, 1, 1, 1)
    return plan_conv3d(grad_shape, weight_shape, bias=bias, groups=plan.groups, dtype=plan.dtype,
                       backend=plan.backend, op="input gradient")


def _tap_scatter_applies(plan, grad):
    """Whether the input gradient is one pointwise convolution and a scatter (``cpu/tap_scatter.py``):
    bfloat16 NumPy operands, zero pads, a stride whose phases each meet at most one kernel tap
    (``stride_phases.one_tap_per_phase``), and a pointwise convolution that AMX tiles take, or the
    bfloat16 dot products over at least ``grad_crossovers.TAP_SCATTER_MIN_POSITIONS`` positions of the
    output gradient."""
    return (plan.backend == "cpu" and plan.dtype == "bfloat16" and plan.padding_mode == "zeros"
            and plan.stride != (1, 1, 1) and one_tap_per_phase(plan.kernel_size, plan.stride, plan.dilation)
            and _tap_scatter_pays(plan, tuple(grad.shape)))


@plan_cache.memoized_decision
def _tap_scatter_pays(plan, grad_shape):
    """:func:`_tap_scatter_applies`'s choice of the pointwise convolution's kernel, per plan and shape."""
    algorithm = _pointwise_plan(plan, grad_shape, False).algorithm
    return algorithm in _PAIR_PRODUCT_ROWS and (
        algorithm == "bfloat16-amx"
        or plan.batch * math.prod(grad_shape[-3:]) >= grad_crossovers.TAP_SCATTER_MIN_POSITIONS)


def _by_tap_scatter(plan, grad, weight, conjugate, backend, bias):
    """The output gradient times the weight transposed to one output channel per (input channel, tap),
    by the forward planner's pointwise kernel, plus the bias per tap, each sum rounded once; then each
    placed where its tap reads, the bias (+0 for a -0 bias, as 0 + bias gives; zero without one) where
    no tap does."""
    columns = run_plan(_pointwise_plan(plan, tuple(grad.shape), bias is not None), grad,
                       backend.pointwise_weight(weight, plan.groups),
                       None if bias is None else np.repeat(bias, math.prod(plan.kernel_size)))
    return backend.scatter(plan, columns, _fill(plan, bias, columns.dtype))


def _stacked_phases(plan, grad_extents):
    """Per dimension, ``stride_phases.stacked`` of ``plan``'s input positions (zero pads) from an output
    gradient of ``grad_extents``, or None where some dimension's phases read none of it."""
    dims = tuple(stacked(front, n, k, s, extent) for front, n, k, s, extent in
                 zip(plan.pad_front, plan.input_size, plan.kernel_size, plan.stride, grad_extents))
    return None if None in dims else dims


def _stacked_reads(dims, grad_extents):
    """Per dimension, the slice of the output gradient the stacked correlation reads (what ``dims`` pad
    negatively cut off)."""
    return tuple(slice(max(0, -d.pads[0]), n - max(0, -d.pads[1])) for d, n in zip(dims, grad_extents))


def _stacked_plan(plan, grad_shape, dims, bias):
    """The plan of the correlation of an output gradient of ``grad_shape`` (cut to
    :func:`_stacked_reads`) that gives every stride phase at once (``cpu/phase_stack.py``), with a bias
    where ``bias``."""
    cropped = grad_shape[:2] + tuple(read.stop - read.start for read in _stacked_reads(dims, grad_shape[2:]))
    weight_shape = (plan.in_channels * math.prod(len(d.taps) for d in dims), plan.out_per_group) + tuple(
        d.extent for d in dims)
    return plan_conv3d(cropped, weight_shape, bias=bias, groups=plan.groups, dtype=plan.dtype,
                       pads=tuple((max(0, d.pads[0]), max(0, d.pads[1])) for d in dims), backend=plan.backend,
                       op="input gradient")


def _phase_stack_applies(plan, grad):
    """Whether the input gradient is one correlation of every stride phase and a scatter
    (``cpu/phase_stack.py``): bfloat16 NumPy operands, zero pads, unit dilation, a stride some of
    whose phases meet several kernel taps, at most ``grad_crossovers.PHASE_STACK_MAX_PRODUCTS`` times
    the convolution's products (the zero weights' included), and a correlation that AMX tiles take, or
    the bfloat16 dot products over at least ``grad_crossovers.PHASE_STACK_MIN_POSITIONS`` positions of
    the output gradient where the forward convolution is not a matrix product in float32 (whose
    gradient's matrix product and col2im run as fast: small volumes with many channels). The operands
    must be finite too (:func:`_reads_reduced`)."""
    return (plan.backend == "cpu" and plan.dtype == "bfloat16" and plan.padding_mode == "zeros"
            and plan.stride != (1, 1, 1) and plan.dilation == (1, 1, 1)
            and not one_tap_per_phase(plan.kernel_size, plan.stride, plan.dilation)
            and _phase_stack_pays(plan, tuple(grad.shape)))


@plan_cache.memoized_decision
def _phase_stack_pays(plan, grad_shape):
    """:func:`_phase_stack_applies`'s reading of the stacked phases and their correlation's kernel, per
    plan and shape."""
    dims = _stacked_phases(plan, grad_shape[-3:])
    if dims is None:
        return False
    products = math.prod(len(d.taps) * d.extent for d in dims)
    if products > grad_crossovers.PHASE_STACK_MAX_PRODUCTS * math.prod(plan.kernel_size):
        return False
    algorithm = _stacked_plan(plan, (plan.batch, plan.out_channels) + grad_shape[-3:], dims, False).algorithm
    if algorithm == "bfloat16-amx":
        return True
    return (algorithm in _PAIR_PRODUCT_ROWS and not forward_is_gemm_shaped(plan_in_compute_dtype(plan))
            and plan.batch * math.prod(grad_shape[-3:]) >= grad_crossovers.PHASE_STACK_MIN_POSITIONS)


def _by_phase_stack(plan, grad, weight, conjugate, backend, bias):
    """The output gradient's correlation with the stacked weight, one output channel per (input
    channel, phase), plus the bias per phase, each sum rounded once; then each phase placed, as
    tap-scatter places taps."""
    dims = _stacked_phases(plan, grad.shape[2:])
    cropped = grad[(slice(None), slice(None)) + _stacked_reads(dims, grad.shape[2:])]
    phase_count = math.prod(len(d.taps) for d in dims)
    columns = run_plan(_stacked_plan(plan, tuple(grad.shape), dims, bias is not None), cropped,
                       backend.stacked_weight(weight, plan.groups, tuple(d.taps for d in dims)),
                       None if bias is None else np.repeat(bias, phase_count))
    placement = backend.Placement((0, 0, 0), plan.input_size, tuple(len(d.taps) for d in dims), plan.stride,
                                  (1, 1, 1), plan.in_channels)
    return backend.scatter(placement, columns, _fill(plan, bias, columns.dtype))


def _fill(plan, bias, dtype):
    """Where no tap reads an input position: the bias, +0 for a -0 bias (as 0 + bias gives), zeros
    without one."""
    if bias is None:
        return np.zeros(plan.in_channels, dtype)
    return (bias.astype(np.float32) + np.float32(0)).astype(dtype)


def _reads_reduced(plan, grad, weight, backend):
    """Whether a bfloat16 or float16 input gradient runs on its operands as they are, on a route that
    rounds each sum as it computes it: tap-scatter, or phase-stack where the gradient and the weight
    are finite (a zero weight meets every element)."""
    return _tap_scatter_applies(plan, grad) or (_phase_stack_applies(plan, grad) and backend.finite_bits(grad)
                                                 and backend.finite_bits(weight))


def _by_gather(plan, grad, weight, conjugate, backend, bias):
    """Any stride: the gather kernel (``cpu/input_grad.py``, ``cuda/grad_kernels.py``), then the fold."""
    return backend.fold(plan, backend.gathered_input_grad(plan, grad, weight, conjugate), bias)


# (name, applies(plan, batched grad), input gradient(plan, batched grad, weight, conjugate, backend,
# bias)); the first row that applies runs. Float32 on 2 cores (AVX-512), 32^3, k3 'same': depthwise 64
# channels, cropped 4.9 ms, full correlation and fold 18 ms; dense 32 channels, 11 ms and 23 ms; the
# gather took 0.35 s on dense (AVX2).
INPUT_GRAD_ALGORITHMS = (
    ("tap-scatter", _tap_scatter_applies, _by_tap_scatter),
    ("phase-stack", _phase_stack_applies, _by_phase_stack),
    ("gemm-col2im", _col2im_applies, _by_col2im),
    ("cropped-correlation", _crops_zero_pads, _by_cropped_correlation),
    ("full-correlation", _covers_padded_input, _by_full_correlation),
    ("stride-phases", _stride_phases_apply, _by_stride_phases),
    ("upsampled-correlation", _upsamples, _by_upsampled_correlation),
    ("gather", lambda plan, grad: True, _by_gather),
)


def input_gradient(op, plan, grad, weight, conjugate, backend, bias=None):
    """Gradient of ``plan``'s input, given ``grad`` (of the caller's rank) for its output.

    Shared by :func:`numba_conv3d.grad.conv3d_input` (``conjugate``: a complex gradient correlates
    with the conjugated weight) and :func:`numba_conv3d.transposed.conv_transpose3d` (which adds
    ``bias``); ``backend`` is the module of :func:`numba_conv3d.grad.gradient_backend`. ``grad``'s
    spatial extents may be smaller than ``plan.output_size`` (a transposed convolution's
    ``output_padding >= stride``): the rest of the output then has no gradient. float16 and bfloat16
    operands are widened and the float32 result rounded once, but on the routes that round each sum
    as they compute it (``tap-scatter``, ``phase-stack``: :func:`_reads_reduced`), which take them as
    they are.

    Returns
    -------
    numpy.ndarray or CUDA array
        A new C-contiguous array of ``plan.input_shape``, where ``grad`` lives, of its kind.
    """
    if plan.dtype != plan.compute_dtype and not (plan.batch and _reads_reduced(plan, grad, weight, backend)):
        wide = input_gradient(op, plan_in_compute_dtype(plan), widen(grad), widen(weight), conjugate, backend,
                              widen(bias))
        return narrow(wide, named_dtype(plan.dtype), grad)
    weight = backend.operand(op, "weight", weight)
    bias = None if bias is None else backend.operand(op, "bias", bias)
    if plan.batch == 0:
        result = backend.zeros((0, plan.in_channels) + plan.input_size, plan.dtype)
    else:
        batched = backend.batched(backend.operand(op, "grad_output", grad), plan)
        compute = next(run for _, applies, run in INPUT_GRAD_ALGORITHMS if applies(plan, batched))
        result = compute(plan, batched, weight, conjugate, backend, bias)
    return backend.like(backend.caller_rank(result, plan), grad)
