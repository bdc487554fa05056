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
``cuda/gradients.py``, the same functions for device arrays); the steps are written once, here, and
the input gradient's choice of route in ``input_grad_routes.py``.
"""
import importlib

from .cuda.arrays import cuda_module
from .dispatch import backend_of
from .grad_planner import plan_input_grad, plan_weight_grad
from .input_grad_routes import input_gradient
from .planner import check_array, plan_in_compute_dtype
from .precision import computed_in_float32, named_dtype, narrow, one_reduced_dtype, widen


def gradient_backend(op, lead_name, lead, **others):
    """The module that computes gradients where ``lead`` lives: ``cpu.gradients`` for NumPy arrays,
    ``cuda.gradients`` (imported only then) for CUDA arrays; the ``others`` may be host arrays with a
    CUDA ``lead`` (copied for the call), never CUDA arrays with a host one."""
    backend = backend_of(op, lead_name, lead, **others)
    if backend.NAME == "cuda":
        cuda_module(op)  # a clear error before anything imports numba.cuda
    return importlib.import_module(f"{backend.__name__}.gradients")


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


@one_reduced_dtype
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


@one_reduced_dtype
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
            *_parameter_gradients(op, plan, input, grad_output, backend, bias))


def _parameter_gradients(op, plan, input, grad, backend, bias):
    """The weight's gradient and (where ``bias``) the bias's, or None; float16 and bfloat16 operands are
    widened and each result rounded once (the input gradient, by ``input_gradient``, takes them as
    they are where a route pays)."""
    if plan.dtype != plan.compute_dtype:
        wide = _parameter_gradients(op, plan_in_compute_dtype(plan), widen(input), widen(grad), backend, bias)
        return narrow(wide, named_dtype(plan.dtype), input)
    return (_weight_gradient(op, plan, input, grad, backend),
            _bias_gradient(op, grad, backend) if bias else None)
