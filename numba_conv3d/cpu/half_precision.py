"""float16 and bfloat16 arrays to float32 and back, in parallel jitted loops (NumPy's casts run on one
thread, and ml_dtypes' and NumPy's float16 ones at a few hundred MB/s); small bfloat16 arrays by
ml_dtypes' casts, which give the same bits and start sooner.

Widening is exact. Narrowing rounds to nearest, ties to even, beyond the largest finite value to Inf,
as torch rounds: float16 through LLVM's ``fptrunc`` (F16C's ``vcvtps2ph`` on x86), bfloat16 by integer
arithmetic on the float32 bits (``simd_bfloat16.stored_element``, as the bfloat16 kernels store their sums). A
NaN stays a quiet NaN of the same sign (bfloat16: the one
``ml_dtypes`` gives; float16: LLVM's, whose payload can differ from NumPy's for a signaling NaN).
"""
import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.extending import intrinsic

from .simd_bfloat16 import stored_element


@intrinsic
def _half_value(typingctx, bits):
    """The float32 value of float16 ``bits`` (uint16)."""
    if bits != types.uint16:
        return None

    def codegen(context, builder, signature, args):
        return builder.fpext(builder.bitcast(args[0], ir.HalfType()), ir.FloatType())

    return types.float32(bits), codegen


@intrinsic
def _half_bits(typingctx, value):
    """The float16 bits (uint16) of float32 ``value`` rounded to nearest, ties to even."""
    if value != types.float32:
        return None

    def codegen(context, builder, signature, args):
        return builder.bitcast(builder.fptrunc(args[0], ir.HalfType()), ir.IntType(16))

    return types.uint16(value), codegen


@njit(parallel=True, cache=True)
def _widen_float16(bits, out):
    for i in prange(bits.size):
        out[i] = _half_value(bits[i])


@njit(parallel=True, cache=True)
def _narrow_float16(values, out):
    for i in prange(values.size):
        out[i] = _half_bits(values[i])


@njit(parallel=True, cache=True)
def _widen_bfloat16(bits, out):
    for i in prange(bits.size):
        out[i] = np.uint32(bits[i]) << 16


@njit(parallel=True, cache=True)
def _narrow_bfloat16(values, out):
    for i in prange(values.size):
        out[i] = stored_element(out, values[i])


# bfloat16 arrays of at most this many elements are converted by ml_dtypes' casts, which give the same
# bits, NaNs included (tested): below it a parallel loop's start costs more (2026-12-07, Zen 4, 2
# threads: 54 to 432 elements 0.4-0.7 us against 4.2-5.6 us; 4096 elements 2.3-4.1 us against 4.2-5.4
# us). float16 keeps the loops at every size: NumPy's cast may keep a signaling NaN that LLVM's quiets.
_CAST_MAX_ELEMENTS = 2048


def _cast(array, dtype):
    """Whether ``array`` (of or for the reduced ``dtype``) is converted by a cast."""
    return array.size <= _CAST_MAX_ELEMENTS and np.dtype(dtype).name == "bfloat16"


def widen(array):
    """A C-contiguous float32 copy of a float16 or bfloat16 NumPy ``array`` (exact)."""
    if _cast(array, array.dtype):
        return np.ascontiguousarray(array, np.float32).reshape(array.shape)
    bits = np.ascontiguousarray(array).view(np.uint16)
    out = np.empty(array.shape, np.float32)
    if array.dtype.name == "float16":
        _widen_float16(bits.reshape(-1), out.reshape(-1))
    else:
        _widen_bfloat16(bits.reshape(-1), out.reshape(-1).view(np.uint32))
    return out


def narrow(array, dtype):
    """A C-contiguous ``dtype`` (float16 or bfloat16) copy of float32 ``array``, rounded to nearest,
    ties to even."""
    values = np.ascontiguousarray(array, np.float32)
    if _cast(values, dtype):
        with np.errstate(all="ignore"):  # past the largest finite value is Inf, as intended
            return values.astype(dtype).reshape(np.shape(array))
    out = np.empty(array.shape, dtype)
    bits = out.reshape(-1).view(np.uint16)
    if out.dtype.name == "float16":
        _narrow_float16(values.reshape(-1), bits)
    else:
        _narrow_bfloat16(values.reshape(-1), bits)
    return out
