"""The public functional API: plan, dispatch, run."""
from .dask import dask_conv3d
from .dispatch import backend_for, is_dask_array
from .planner import plan_for_arrays


def conv3d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, padding_mode="zeros",
           algorithm="auto", allow_tf32=False):
    """3-D convolution (cross-correlation), with exactly the semantics of ``torch.nn.functional.conv3d``.

    Equivalent to ``torch.nn.functional.conv3d(input, weight, bias, stride, padding, dilation,
    groups)``, plus ``padding_mode`` as ``torch.nn.Conv3d`` applies it (the input is padded with that
    mode, then convolved without padding).

    Parameters
    ----------
    input : numpy.ndarray or CUDA array or dask.array.Array
        (N, C_in, D, H, W), or unbatched (C_in, D, H, W); any memory layout; N may be 0. A CUDA array
        (anything with ``__cuda_array_interface__``: Numba device arrays, CuPy arrays, torch CUDA
        tensors) runs on the GPU, without host copies. A Dask array gives a lazy Dask array: see
        :func:`numba_conv3d.dask_conv3d`, which this calls with its default output chunks.
    weight : numpy.ndarray or CUDA array
        (C_out, C_in / groups, KD, KH, KW), same dtype as ``input``. With a CUDA input it may be a host
        array (copied to the device for this call).
    bias : numpy.ndarray or CUDA array, optional
        (C_out,), same dtype as ``input``; on the host or the device like ``weight``.
    stride : int or tuple of 3 ints, optional
        Step of the kernel over (D, H, W). Default 1.
    padding : int or tuple of 3 ints or {'valid', 'same'}, optional
        Pads added to both sides of each spatial dimension; 'valid' is no padding, 'same' keeps the
        input's extent (stride 1 only; an odd total pad puts the extra element at the back). Default 0.
    dilation : int or tuple of 3 ints, optional
        Spacing between kernel taps. Default 1.
    groups : int, optional
        Number of channel groups; divides C_in and C_out. ``groups == C_in`` is depthwise. Default 1.
    padding_mode : {'zeros', 'reflect', 'replicate', 'circular'}, optional
        How pads are filled, as in ``torch.nn.Conv3d``. Default 'zeros'.
    algorithm : str, optional
        'auto' (default): the algorithm the planner picks from measured crossovers (``numba-conv3d
        plan`` says which and why). Or one of the backend's algorithms by name, forced: on the CPU
        'fft', 'depthwise', 'winograd-points', 'winograd', 'winograd-strided', 'tap-gemm',
        'winograd-depth', 'plane-gemm', 'pointwise', 'gemm', 'phase-flat', 'channel-vectorized', 'blocked',
        'row-blocked', 'direct' (a ValueError names them, and says so where the forced one does not serve
        the arguments).
        Not in torch, whose results every algorithm reproduces within its stated rounding
        (``docs/ARCHITECTURE.md``).
    allow_tf32 : bool, optional
        Whether a float32 convolution on the GPU may round its operands to TF32 (10 fraction bits) and
        run on the tensor cores, as ``torch.backends.cudnn.allow_tf32`` lets cuDNN (torch's default
        is True; here False: float32 stays exact unless asked). Sums stay float32. Ignored on the CPU.

    Returns
    -------
    numpy.ndarray or CUDA array or dask.array.Array
        A new C-contiguous array (N, C_out, OD, OH, OW) (unbatched: without N) of the input's dtype,
        on the input's device: a NumPy array, or for CUDA input a Numba device array (a torch tensor or
        CuPy array, zero-copy, when the input is one), computed asynchronously on the default stream
        with ``O = floor((I + pad_front + pad_back - dilation * (K - 1) - 1) / stride) + 1``.
        The inputs are never modified.

    Raises
    ------
    ValueError
        Bad values or shapes (message names the argument and the numbers), before any computation.
    TypeError
        Non-array operands, unsupported or mismatched dtypes, non-integer arguments, a CUDA weight or
        bias with a host input, a CUDA input without numba-cuda installed.
    RuntimeError
        A CUDA input when Numba finds no usable GPU.

    Examples
    --------
    >>> import numpy as np
    >>> from numba_conv3d import conv3d
    >>> x = np.ones((1, 2, 4, 4, 4), np.float32)
    >>> w = np.ones((3, 2, 3, 3, 3), np.float32)
    >>> conv3d(x, w, padding=1).shape
    (1, 3, 4, 4, 4)
    """
    if is_dask_array(input):
        return dask_conv3d(input, weight, bias, stride, padding, dilation, groups, padding_mode,
                           algorithm=algorithm, allow_tf32=allow_tf32)
    backend = backend_for(input, weight, bias)
    plan = plan_for_arrays(input, weight, bias, stride=stride, padding=padding, dilation=dilation,
                           groups=groups, padding_mode=padding_mode, backend=backend.NAME,
                           algorithm=algorithm, allow_tf32=allow_tf32)
    return backend.execute(plan, input, weight, bias)


def run_plan(plan, input, weight, bias=None):
    """Compute an already validated ``plan`` on operands of its shapes and dtype.

    ``plan`` must come from :func:`numba_conv3d.plan_conv3d` (or ``plan_for_arrays``) for exactly
    these operands, with the backend where ``input`` lives; only that backend is checked again.
    Returns what :func:`conv3d` returns.

    Raises
    ------
    ValueError
        When the plan was made for another backend than the one ``input`` lives on.
    """
    backend = backend_for(input, weight, bias)
    if plan.backend != backend.NAME:
        raise ValueError(f"run_plan: the plan is for backend {plan.backend!r}, but input is a "
                         f"{backend.NAME} array")
    return backend.execute(plan, input, weight, bias)
