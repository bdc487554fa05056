"""The CPU kernels as C functions that jitted ``conv3d`` calls by name.

A jitted function that calls another one links in the callee's LLVM IR, then optimizes and compiles it
again as part of itself, even when the callee was loaded from Numba's cache: a user's function calling
``conv3d`` took 20-30 s to compile, nearly all of it our kernels. Instead, the kernels of each dtype are
compiled once into a jitted entry (``_c_entry``, cached on disk like the other kernels) behind a C
function (``numba.cfunc``) whose address LLVM learns by name (``llvmlite.binding.add_symbol``), the way
Numba's parallel loops reach the threading layer. A user's function only declares that name and calls
it; when it is itself loaded from a cache, a reload hook (Numba's ``_reload_init``) gives LLVM the name
again before its code is linked. The C function itself is not cached: it only calls the entry apart
(``cpu.unlinked.call_apart``), and compiles in a fraction of a second. A cached C function would lose
the reload hooks of the kernels it links (Numba saves a C function's hooks before linking its callees),
and the kernels call their tasks by name too.

The C function takes the data pointers of the input, weight, bias and output (C-contiguous) and an
int64 array of the numbers (``NUMBERS``); it returns 0, or 1 when the kernels raised (a workspace that
could not be allocated), and the caller raises then. Its names carry ``ABI``: a change to what it takes
needs a new one, so that users' functions cached against an old layout cannot call the new one.
"""
import functools

import llvmlite.binding
import numba
import numpy as np
from llvmlite import ir
from numba import cfunc, njit, types
from numba.core import cgutils
from numba.extending import intrinsic, overload, register_jitable

from .cpu import BLOCKED, CHANNEL_VECTORIZED, blocked, channel_vectorized, direct, real_kernel, row_blocked
from .cpu.unlinked import call_apart

ABI = 1
# The int64 numbers the C function takes, in order: input shape (5), weight shape (5), output shape
# (5), stride (3), dilation (3), front pads (3), padded extents (3), padding-mode code, groups, and
# whether there is a bias.
NUMBERS = 30

_DTYPES = {"float32": types.float32, "float64": types.float64, "complex64": types.complex64,
           "complex128": types.complex128}

# The C functions compiled or loaded in this process, by dtype name (they must stay alive).
_COMPILED = {}


def symbol(dtype_name):
    """The name LLVM knows the C function of ``dtype_name`` by."""
    return f"numba_conv3d_cpu_conv3d_v{ABI}_{dtype_name}"


def run_cpu_kernel(x, weight, bias, has_bias, out, stride, dilation, pad_front, padded, mode, groups):
    """The CPU algorithm the planner's table would choose for rows as given (the planner may also
    merge rows, see ``ConvPlan.rows_merged``), on already checked C-contiguous operands."""


@overload(run_cpu_kernel)
def _run_cpu_kernel(x, weight, bias, has_bias, out, stride, dilation, pad_front, padded, mode, groups):
    if isinstance(x.dtype, types.Complex):
        return direct.compute

    def real(x, weight, bias, has_bias, out, stride, dilation, pad_front, padded, mode, groups):
        reduction = weight.shape[1] * weight.shape[2] * weight.shape[3] * weight.shape[4]
        kernel = real_kernel(out.shape[3], out.shape[4], weight.shape[0] // groups, reduction, x.itemsize,
                             weight.shape[4], stride[2])
        if kernel == CHANNEL_VECTORIZED:
            channel_vectorized.compute(x, weight, bias, has_bias, out, stride, dilation, pad_front,
                                       padded, mode, groups)
        elif kernel == BLOCKED:
            blocked.compute(x, weight, bias, has_bias, out, stride, dilation, pad_front, padded, mode,
                            groups)
        else:
            row_blocked.compute(x, weight, bias, has_bias, out, stride, dilation, pad_front, padded,
                                mode, groups)

    return real


@njit(cache=True)
def _c_entry(x_data, weight_data, bias_data, out_data, numbers_data):
    """The body of the C function: arrays from the pointers and numbers, then the kernels."""
    n = numba.carray(numbers_data, NUMBERS)
    x = numba.carray(x_data, (n[0], n[1], n[2], n[3], n[4]))
    weight = numba.carray(weight_data, (n[5], n[6], n[7], n[8], n[9]))
    bias = numba.carray(bias_data, n[5] if n[29] else 0)
    out = numba.carray(out_data, (n[10], n[11], n[12], n[13], n[14]))
    try:
        run_cpu_kernel(x, weight, bias, n[29] != 0, out, (n[15], n[16], n[17]), (n[18], n[19], n[20]),
                       (n[21], n[22], n[23]), (n[24], n[25], n[26]), n[27], n[28])
    except Exception:
        return 1
    return 0


def _call_entry(x_data, weight_data, bias_data, out_data, numbers_data):
    """The C function: :func:`_c_entry`, called apart."""
    return call_apart(_c_entry, x_data, weight_data, bias_data, out_data, numbers_data)


def ensure_compiled(dtype_name):
    """Compile the C function of ``dtype_name`` (its entry compiled or loaded from the cache, whose
    reload hooks give LLVM the names the kernels call by: their tasks', the threading layer's) and give
    LLVM its name, once per process."""
    if dtype_name in _COMPILED:
        return
    pointer = types.CPointer(_DTYPES[dtype_name])
    function = cfunc(types.int32(pointer, pointer, pointer, pointer, types.CPointer(types.int64)))(
        _call_entry)
    llvmlite.binding.add_symbol(symbol(dtype_name), function.address)
    _COMPILED[dtype_name] = function


@intrinsic
def _call_c_function(typingctx, x, weight, bias, out, numbers):
    """Call the C function of the operands' dtype (see the module's docstring); its status."""
    dtype_name = str(x.dtype)
    ensure_compiled(dtype_name)

    def codegen(context, builder, signature, args):
        # A user's function loaded from the cache must find the name again before its code is linked.
        context.active_code_library._reload_init.add(functools.partial(ensure_compiled, dtype_name))
        pointers = [context.make_array(t)(context, builder, a).data
                    for t, a in zip(signature.args, args)]
        function = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(ir.IntType(32), [p.type for p in pointers]),
            symbol(dtype_name))
        return builder.call(function, pointers)

    return types.int32(x, weight, bias, out, numbers), codegen


@register_jitable
def call_cpu_kernels(x, weight, bias, has_bias, out, stride, dilation, pad_front, padded, mode,
                     groups):
    """Fill ``out`` as :func:`run_cpu_kernel` would, through the C function of the dtype (compiled
    apart from the caller); C-contiguous operands."""
    numbers = np.empty(NUMBERS, np.int64)
    at = 0
    for values in (x.shape, weight.shape, out.shape):
        for value in values:
            numbers[at] = value
            at += 1
    for values in (stride, dilation, pad_front, padded):
        for value in values:
            numbers[at] = value
            at += 1
    numbers[27] = mode
    numbers[28] = groups
    numbers[29] = has_bias
    if _call_c_function(x, weight, bias, out, numbers) != 0:
        raise MemoryError("conv3d: the CPU kernels could not allocate their workspace")
