"""torch's rules for the backward operations (conv3d_input, conv3d_weight, conv_transpose3d), on top of
the forward planner.

Each operation is lowered to the :class:`~numba_conv3d.plan.ConvPlan` of the forward convolution it
differentiates (or, for ``conv_transpose3d``, whose input gradient it is), made by
:func:`numba_conv3d.plan_conv3d`: the forward rules exist once. This module adds only what the backward
operations bring: the operands' types, the gradient's shape, and the transposed output extent with its
``output_padding`` rule. Messages name the operation, the argument and the numbers.
"""

from . import shape_checks
from .plan_cache import memoized_on_operands
from .planner import check_array, normalize_positive_int, normalize_triple, plan_conv3d
from .shape_rules import dilated_extent


def _check_grad_shape(op, plan, grad_output):
    if tuple(grad_output.shape) != plan.output_shape:
        raise ValueError(f"{op}: grad_output must have shape {plan.output_shape}, the output shape of "
                         f"this convolution of an input of shape {plan.input_shape} by a weight of "
                         f"shape {plan.weight_shape}, but got grad_output of shape "
                         f"{tuple(grad_output.shape)}")


@memoized_on_operands
def plan_input_grad(op, input_shape, weight, grad_output, stride, padding, dilation, groups, padding_mode,
                    backend="cpu"):
    """Validate ``conv3d_input``'s arguments; return the forward convolution's plan (``backend``: where
    the operands may live, see :func:`numba_conv3d.planner.check_array`).

    Returns
    -------
    ConvPlan
        The plan of the convolution of an input of ``input_shape`` by ``weight``; ``grad_output`` has
        its output shape and dtype.
    """
    dtype = check_array(op, "weight", weight, backend)
    check_array(op, "grad_output", grad_output, backend, dtype=dtype, dtype_of="weight")
    plan = plan_conv3d(input_shape, tuple(weight.shape), bias=False, stride=stride, padding=padding,
                       dilation=dilation, groups=groups, padding_mode=padding_mode, dtype=dtype,
                       backend=backend, op=op)
    _check_grad_shape(op, plan, grad_output)
    return plan


@memoized_on_operands
def plan_weight_grad(op, input, weight_shape, grad_output, stride, padding, dilation, groups,
                     padding_mode, backend="cpu"):
    """Validate ``conv3d_weight``'s arguments; return the forward convolution's plan (``backend`` as in
    :func:`plan_input_grad`).

    Returns
    -------
    ConvPlan
        The plan of the convolution of ``input`` by a weight of ``weight_shape``; ``grad_output`` has
        its output shape and dtype.
    """
    dtype = check_array(op, "input", input, backend)
    check_array(op, "grad_output", grad_output, backend, dtype=dtype)
    plan = plan_conv3d(tuple(input.shape), weight_shape, bias=False, stride=stride, padding=padding,
                       dilation=dilation, groups=groups, padding_mode=padding_mode, dtype=dtype,
                       backend=backend, op=op)
    _check_grad_shape(op, plan, grad_output)
    return plan


def transposed_min_size(size, stride, padding, kernel, dilation):
    """Output extent of a transposed convolution without output padding, along one dimension:
    ``(size - 1) * stride - 2 * padding + dilation * (kernel - 1) + 1`` (torch's formula)."""
    return (size - 1) * stride - 2 * padding + dilated_extent(kernel, dilation)


def output_padding_for(op, input_shape, output_size, stride, padding, kernel_size, dilation):
    """The ``output_padding`` that gives a transposed convolution the requested ``output_size``, as
    ``torch.nn.ConvTranspose3d.forward(input, output_size)`` computes it.

    Parameters
    ----------
    input_shape : tuple of int
        (N, C, D, H, W) or (C, D, H, W).
    output_size : sequence of int
        3 spatial extents, or the whole output shape (5 or 4 elements, batched or not).
    stride, padding, kernel_size, dilation : tuple of 3 ints
        Normalized.

    Returns
    -------
    tuple of 3 ints
        Each in ``[0, stride)``.

    Raises
    ------
    ValueError
        A wrong number of elements, or an extent outside ``[min, min + stride - 1]``.
    """
    leading = len(input_shape) - 3
    size = tuple(output_size)
    if len(size) == leading + 3:
        size = size[leading:]
    if len(size) != 3:
        raise ValueError(f"{op}: for {len(input_shape)}-D input, output_size must have 3 or "
                         f"{leading + 3} elements, but got {len(tuple(output_size))}: {tuple(output_size)}")
    size = normalize_triple(op, "output_size", size, 1)
    smallest = tuple(transposed_min_size(n, s, p, k, d) for n, s, p, k, d
                     in zip(input_shape[leading:], stride, padding, kernel_size, dilation))
    largest = tuple(m + s - 1 for m, s in zip(smallest, stride))
    if any(not lo <= n <= hi for n, lo, hi in zip(size, smallest, largest)):
        raise ValueError(f"{op}: requested an output size of {size}, but valid sizes range from "
                         f"{smallest} to {largest} (for an input of {tuple(input_shape[leading:])})")
    return tuple(n - lo for n, lo in zip(size, smallest))


@memoized_on_operands
def plan_conv_transpose3d(op, input, weight, bias, stride, padding, output_padding, groups, dilation,
                          backend="cpu"):
    """Validate ``conv_transpose3d``'s arguments (``torch.nn.functional.conv_transpose3d``'s rules;
    ``backend`` as in :func:`plan_input_grad`).

    A transposed convolution of ``input`` is the input gradient of the convolution by ``weight`` of an
    input of the transposed output's shape; this returns that convolution's plan.

    Returns
    -------
    ConvPlan
        ``plan.input_shape`` is the shape of the result; ``plan.output_size`` is at least the input's
        extents (larger where ``output_padding >= stride``, allowed with ``dilation > stride``).
    """
    dtype = check_array(op, "input", input, backend)
    check_array(op, "weight", weight, backend, dtype=dtype)
    if bias is not None:
        check_array(op, "bias", bias, backend, dtype=dtype)
    # tuples: the CUDA simulator's shapes take no negative index
    input_shape, weight_shape = tuple(input.shape), tuple(weight.shape)
    if input.ndim not in (4, 5) or weight.ndim != 5:
        raise ValueError(f"{op}: expected input of 4 or 5 dimensions and weight of 5, but got input of "
                         f"shape {input_shape} and weight of shape {weight_shape}")
    shape_checks.check_not_empty(op, "input", input_shape, input.ndim == 5)
    stride = normalize_triple(op, "stride", stride, 1)
    padding = normalize_triple(op, "padding", padding, 0)
    output_padding = normalize_triple(op, "output_padding", output_padding, 0)
    dilation = normalize_triple(op, "dilation", dilation, 1)
    groups = normalize_positive_int(op, "groups", groups)
    channels = input_shape[-4]
    if weight_shape[0] != channels:
        raise ValueError(f"{op}: weight of shape {weight_shape} expects input with {weight_shape[0]} "
                         f"channels (weight.shape[0]), but got input of shape {input_shape} with "
                         f"{channels} channels")
    if channels % groups:
        raise ValueError(f"{op}: groups={groups} must divide the input channels, but got {channels}")
    for dim in range(3):
        if output_padding[dim] >= max(stride[dim], dilation[dim]):
            raise ValueError(f"{op}: output_padding must be smaller than either stride or dilation, "
                             f"but got output_padding={output_padding}, stride={stride}, "
                             f"dilation={dilation}")
    size = tuple(transposed_min_size(n, s, p, k, d) + extra for n, s, p, k, d, extra
                 in zip(input_shape[-3:], stride, padding, weight_shape[2:], dilation, output_padding))
    if min(size) < 1:
        raise ValueError(f"{op}: for input extents {input_shape[-3:]}, the output extents {size} "
                         f"(stride {stride}, padding {padding}, kernel {weight_shape[2:]}, dilation "
                         f"{dilation}, output_padding {output_padding}) are too small")
    output_shape = input_shape[:-4] + (weight_shape[1] * groups,) + size
    bias_shape = None if bias is None else tuple(bias.shape)
    if bias_shape is not None and bias_shape != (output_shape[-4],):
        raise ValueError(f"{op}: expected bias of shape {(output_shape[-4],)} (weight.shape[1] * "
                         f"groups), but got bias of shape {bias_shape}")
    return plan_conv3d(output_shape, tuple(weight_shape), bias=False, stride=stride, padding=padding,
                       dilation=dilation, groups=groups, dtype=dtype, backend=backend, op=op)
