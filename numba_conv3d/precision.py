"""Reduced-precision operands: float16 and bfloat16 stored, float32 computed, one rounding.

torch's CPU convolution and cuDNN take float16 and bfloat16 operands, sum their products in float32,
add the bias in float32 and round each result once to the operands' dtype (to nearest, ties to even).
This module gives every front the same: operands are widened to float32 (exactly: each half-precision
value is a float32 value), the float32 engine computes, and the result is rounded once; or, on the CPU
routes that read bfloat16 as stored (its dot products, Winograd's bits, the transposed scatter), each
float32 sum is rounded once as it is stored. bfloat16 is ``ml_dtypes.bfloat16``, the NumPy dtype JAX
and others use.
"""
import functools
import inspect

import numpy as np

COMPUTE_DTYPE = "float32"
REDUCED_DTYPES = ("float16", "bfloat16")


def bfloat16():
    """NumPy's bfloat16 dtype (``ml_dtypes.bfloat16``), imported on first use."""
    import ml_dtypes

    return np.dtype(ml_dtypes.bfloat16)


def named_dtype(spec):
    """``np.dtype(spec)``, with 'bfloat16' known before anything imported ml_dtypes."""
    if isinstance(spec, str) and spec == "bfloat16":
        return bfloat16()
    return np.dtype(spec)


def compute_dtype(name):
    """The dtype name the kernels compute in for operands of dtype ``name``."""
    return COMPUTE_DTYPE if name in REDUCED_DTYPES else name


def dtype_spec(dtype):
    """``dtype`` as NumPy takes it: a torch dtype becomes its name without the prefix."""
    return str(dtype).removeprefix("torch.") if type(dtype).__module__ == "torch" else dtype


def dtype_name(array):
    """The NumPy name of ``array``'s dtype (torch's dtypes without their prefix), or None."""
    spec = dtype_spec(getattr(array, "dtype", None))
    return spec if isinstance(spec, str) else getattr(spec, "name", None)


def _is_operand(value):
    from .cuda.arrays import is_device_array

    return isinstance(value, np.ndarray) or is_device_array(value)


def is_reduced(array):
    """Whether ``array`` is a NumPy or CUDA array of a reduced-precision dtype."""
    return _is_operand(array) and dtype_name(array) in REDUCED_DTYPES


def widen(array):
    """A C-contiguous float32 copy of a reduced-precision ``array`` (exact; a CUDA array's copy is a
    Numba device array); anything else unchanged."""
    if isinstance(array, np.ndarray):  # first: the CUDA check costs more than a tiny call's widening
        if array.dtype.name not in REDUCED_DTYPES:
            return array
        from .cpu.half_precision import widen as widened

        return widened(array)
    if not is_reduced(array):
        return array
    from .cuda.widened import widened_array

    return widened_array(array)


def narrow(result, dtype, like=None):
    """``result`` (a float32 NumPy or Numba device array, a tuple of them or None) rounded to ``dtype``, to
    nearest, ties to even; beyond the dtype's largest finite value, to Inf (as torch rounds). A device
    result becomes an array of ``like``'s kind (a torch tensor, a CuPy or Numba array)."""
    if isinstance(result, tuple):
        return tuple(narrow(part, dtype, like) for part in result)
    if result is None:
        return None
    if isinstance(result, np.ndarray):
        from .cpu.half_precision import narrow as narrowed

        return narrowed(result, dtype)
    from .cuda.widened import narrowed_like

    return narrowed_like(result, dtype, like)


def computed_in_float32(function):
    """Wrap a public function of NumPy or CUDA operands so that reduced-precision operands are widened
    to float32, the function computes in float32, and its array results are rounded once to the
    operands' dtype. The operands must then share that one dtype, as torch requires (a ``TypeError``
    names the first that does not); calls without reduced-precision operands pass straight through."""
    return _reduced_operands(function, widened=True)


def one_reduced_dtype(function):
    """Wrap a public function that takes reduced-precision operands as they are (it widens what it
    computes in float32 itself): they must share one dtype, as in :func:`computed_in_float32`."""
    return _reduced_operands(function, widened=False)


def _reduced_operands(function, widened):
    """:func:`computed_in_float32` (``widened``) or :func:`one_reduced_dtype` of ``function``."""
    signature = inspect.signature(function)

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        if not any(is_reduced(value) for value in (*args, *kwargs.values())):
            return function(*args, **kwargs)
        bound = signature.bind(*args, **kwargs)
        arrays = {name: value for name, value in bound.arguments.items() if _is_operand(value)}
        first = next(name for name, value in arrays.items() if is_reduced(value))
        dtype = dtype_name(arrays[first])
        for name, value in arrays.items():
            if dtype_name(value) != dtype:
                raise TypeError(f"{function.__name__}: {name} dtype {dtype_name(value)} does not match "
                                f"{first} dtype {dtype} (like torch, the operands must share one dtype)")
        if not widened:
            return function(*bound.args, **bound.kwargs)
        for name, value in arrays.items():
            bound.arguments[name] = widen(value)
        return narrow(function(*bound.args, **bound.kwargs), named_dtype(dtype), arrays[first])

    return wrapper
