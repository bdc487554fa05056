"""Gradients of 3-D convolution on the CPU, with the semantics of ``torch.nn.grad`` and torch's autograd.

``conv3d_input`` and ``conv3d_weight`` take every argument of :func:`numba_conv3d.conv3d`, padding
modes and 'same'/'valid' included: the gradient flows back through reflect, replicate and circular
padding as torch's autograd sends it through ``torch.nn.Conv3d`` (each pad element's gradient is added
onto the element it copied). Complex gradients follow torch's convention (the conjugate Wirtinger
derivative): ``conv3d_input`` correlates with the conjugated weight, ``conv3d_weight`` with the
conjugated input. Every element is summed by one thread in one fixed order: results are bitwise equal
for any thread count.
"""
import numpy as np

from .api import conv3d
from .cpu.input_grad import padded_input_grad
from .cpu.pad_fold import fold_padding
from .cpu.weight_grad import weight_grad
from .grad_planner import plan_input_grad, plan_weight_grad
from .planner import check_array
from .parallelism import safe_to_run


def _batched(array, plan):
    return array if plan.batched else array[np.newaxis]


def _caller_rank(array, plan):
    return array if plan.batched else array[0]


def _conj(array):
    return np.conj(array) if np.iscomplexobj(array) else array


def _flipped_transpose(weight, groups):
    """(C_out, C_in / g, K...) -> (C_in, C_out / g, K...), each group's channels swapped and every
    kernel flipped in D, H and W: the weight of the full correlation that is the input gradient."""
    out_channels, in_per_group = weight.shape[:2]
    per_group = weight.reshape((groups, out_channels // groups, in_per_group) + weight.shape[2:])
    swapped = per_group.transpose(0, 2, 1, 3, 4, 5).reshape((in_per_group * groups, out_channels // groups)
                                                            + weight.shape[2:])
    return np.ascontiguousarray(swapped[:, :, ::-1, ::-1, ::-1])


def _covers_padded_input(plan, grad):
    """Whether the unit-stride full correlation of ``grad`` has exactly the padded input's extents."""
    return plan.stride == (1, 1, 1) and all(
        o + d * (k - 1) == p for o, d, k, p in zip(grad.shape[2:], plan.dilation, plan.kernel_size,
                                                   plan.padded_size))


def _by_forward_correlation(plan, grad, weight):
    """At unit stride the padded input's gradient is a forward convolution (by the fast forward kernels)
    of ``grad`` padded by ``dilation * (K - 1)``, with the flipped, channel-swapped weight."""
    pads = tuple(d * (k - 1) for d, k in zip(plan.dilation, plan.kernel_size))
    return conv3d(grad, _flipped_transpose(weight, plan.groups), padding=pads, dilation=plan.dilation,
                  groups=plan.groups)


def _by_gather(plan, grad, weight):
    """Any stride: the gather kernel (``cpu/input_grad.py``)."""
    with safe_to_run():
        return padded_input_grad(grad, np.ascontiguousarray(weight), plan.padded_size, plan.stride,
                                 plan.dilation, plan.groups)


# (name, applies(plan, batched grad), padded input gradient(plan, batched grad, weight)); the first row
# that applies runs. Dense float32 k3 at 32^3 on 2 cores: forward correlation 0.064 s, gather 0.35 s.
INPUT_GRAD_ALGORITHMS = (
    ("forward-correlation", _covers_padded_input, _by_forward_correlation),
    ("gather", lambda plan, grad: True, _by_gather),
)


def input_gradient(plan, grad, weight):
    """Gradient of ``plan``'s input, given ``grad`` (of the caller's rank) for its output.

    Shared by :func:`conv3d_input` and :func:`numba_conv3d.transposed.conv_transpose3d`; no conjugation
    here (the caller passes the conjugated weight for a complex gradient). ``grad``'s spatial extents
    may be smaller than ``plan.output_size`` (a transposed convolution's ``output_padding >= stride``):
    the rest of the output then has no gradient.

    Returns
    -------
    numpy.ndarray
        A new C-contiguous array of ``plan.input_shape``.
    """
    if plan.batch == 0:
        return np.zeros(plan.input_shape, plan.dtype)
    grad = np.ascontiguousarray(_batched(grad, plan))
    compute = next(run for _, applies, run in INPUT_GRAD_ALGORITHMS if applies(plan, grad))
    padded = compute(plan, grad, weight)  # each row enters safe_to_run itself (its lock is not reentrant)
    with safe_to_run():
        result = fold_padding(padded, plan.pad_front, plan.input_size, plan.mode_code)
    return _caller_rank(result, plan)


def _weight_gradient(plan, input, grad):
    if plan.batch == 0:
        return np.zeros(plan.weight_shape, plan.dtype)
    with safe_to_run():
        return weight_grad(_conj(_batched(input, plan)), np.ascontiguousarray(_batched(grad, plan)),
                           plan.weight_shape, plan.stride, plan.dilation, plan.pad_front, plan.padded_size,
                           plan.mode_code, plan.groups)


def _bias_gradient(grad):
    # NumPy's summation order follows the memory layout: a C-contiguous copy fixes it
    return np.ascontiguousarray(grad).sum(axis=(0, 2, 3, 4) if grad.ndim == 5 else (1, 2, 3))


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
    weight : numpy.ndarray
        (C_out, C_in / groups, KD, KH, KW); float32, float64, complex64 or complex128.
    grad_output : numpy.ndarray
        Gradient of the forward output: exactly the output shape of the convolution, ``weight``'s dtype;
        any memory layout.
    stride, padding, dilation, groups, padding_mode
        As in :func:`numba_conv3d.conv3d`.

    Returns
    -------
    numpy.ndarray
        A new C-contiguous array of ``input_shape`` and the operands' dtype.

    Raises
    ------
    ValueError
        Bad values or shapes (as :func:`numba_conv3d.plan_conv3d`), or a ``grad_output`` whose shape is
        not the forward output's, before any computation.
    TypeError
        Non-NumPy operands, unsupported or mismatched dtypes, non-integer arguments.
    """
    plan = plan_input_grad("conv3d_input", input_shape, weight, grad_output, stride, padding, dilation,
                           groups, padding_mode)
    return input_gradient(plan, grad_output, _conj(weight))


def conv3d_weight(input, weight_shape, grad_output, stride=1, padding=0, dilation=1, groups=1,
                  padding_mode="zeros"):
    """Gradient of :func:`numba_conv3d.conv3d` with respect to its weight.

    Equivalent to ``torch.nn.grad.conv3d_weight(input, weight_shape, grad_output, stride, padding,
    dilation, groups)``, extended to ``padding_mode``, 'same'/'valid' padding and complex dtypes, as
    ``torch.autograd.grad`` differentiates ``torch.nn.Conv3d``.

    Parameters
    ----------
    input : numpy.ndarray
        The forward input: (N, C_in, D, H, W) or (C_in, D, H, W); any memory layout.
    weight_shape : tuple of int
        (C_out, C_in / groups, KD, KH, KW).
    grad_output : numpy.ndarray
        Gradient of the forward output: its exact shape, ``input``'s dtype.
    stride, padding, dilation, groups, padding_mode
        As in :func:`numba_conv3d.conv3d`.

    Returns
    -------
    numpy.ndarray
        A new C-contiguous array of ``weight_shape`` and ``input``'s dtype.

    Raises
    ------
    ValueError
        Bad values or shapes, or a ``grad_output`` of the wrong shape, before any computation.
    TypeError
        Non-NumPy operands, unsupported or mismatched dtypes, non-integer arguments.
    """
    plan = plan_weight_grad("conv3d_weight", input, weight_shape, grad_output, stride, padding, dilation,
                            groups, padding_mode)
    return _weight_gradient(plan, input, grad_output)


def conv3d_bias(grad_output):
    """Gradient of :func:`numba_conv3d.conv3d` with respect to its bias: ``grad_output`` summed over the
    batch and the three spatial dimensions (what ``torch.autograd.grad`` returns for ``Conv3d.bias``).

    Parameters
    ----------
    grad_output : numpy.ndarray
        (N, C_out, OD, OH, OW) or unbatched (C_out, OD, OH, OW).

    Returns
    -------
    numpy.ndarray
        (C_out,), ``grad_output``'s dtype; summed by NumPy in one fixed order, whatever the memory
        layout (one thread).

    Raises
    ------
    ValueError
        ``grad_output`` without 4 or 5 dimensions.
    TypeError
        A non-NumPy or unsupported-dtype ``grad_output``.
    """
    check_array("conv3d_bias", "grad_output", grad_output)
    if grad_output.ndim not in (4, 5):
        raise ValueError(f"conv3d_bias: expected grad_output to have 4 or 5 dimensions, but got shape "
                         f"{grad_output.shape}")
    return _bias_gradient(grad_output)


def conv3d_backward(input, weight, grad_output, stride=1, padding=0, dilation=1, groups=1,
                    padding_mode="zeros", bias=True):
    """All the gradients of one :func:`numba_conv3d.conv3d` call, validated once.

    What ``torch.autograd.grad(output, (input, weight, bias), grad_output)`` returns for
    ``output = torch.nn.Conv3d(...)(input)``.

    Parameters
    ----------
    input, weight, grad_output : numpy.ndarray
        The forward input and weight, and the gradient of the forward output (its shape), one dtype.
    stride, padding, dilation, groups, padding_mode
        As in :func:`numba_conv3d.conv3d`.
    bias : bool, optional
        Whether the convolution had a bias (whose gradient is then returned).

    Returns
    -------
    grad_input, grad_weight, grad_bias : numpy.ndarray
        Of the shapes of ``input``, ``weight`` and (C_out,); ``grad_bias`` is None without a bias.
    """
    check_array("conv3d_backward", "weight", weight, dtype=check_array("conv3d_backward", "input", input))
    plan = plan_input_grad("conv3d_backward", tuple(input.shape), weight, grad_output, stride, padding,
                           dilation, groups, padding_mode)
    return (input_gradient(plan, grad_output, _conj(weight)), _weight_gradient(plan, input, grad_output),
            _bias_gradient(grad_output) if bias else None)
