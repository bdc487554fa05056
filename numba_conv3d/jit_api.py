"""``conv3d`` inside users' ``@njit`` code: a Numba ``overload`` of the public function.

The same arguments as from Python; types are checked when the caller compiles (``TypingError`` naming the
argument), values when it runs, by the same ``register_jitable`` rules the planner uses
(``shape_checks``, ``shape_rules``), so bad values raise the same ``ValueError`` messages. The
convolution itself runs the CPU backend's kernels: the same algorithm the planner would choose, so the
result is bitwise equal to the Python-level call, except where the planner takes the ``gemm`` (NumPy's
BLAS), Winograd or ``fft`` algorithm, which jitted code replaces by the register-blocked kernel
``cpu.real_kernel`` picks (each result within its algorithm's rounding bound).
"""
import numpy as np
from numba import njit, types
from numba.core.errors import TypingError
from numba.extending import overload, register_jitable

from . import shape_checks
from .api import conv3d
from .jit_kernels import call_cpu_kernels
from .shape_rules import conv_output_size, dilated_extent, padding_mode_code, same_pads

_OP = "conv3d"
_DTYPES = (types.float32, types.float64, types.complex64, types.complex128)


# Typing sees a Numba type for each argument passed, and the Python default for each one left out.

def _is_int(value):
    if isinstance(value, (bool, types.Boolean)):
        return False
    return isinstance(value, (int, types.Integer))


def _is_triple(value):
    return isinstance(value, types.BaseTuple) and len(value) == 3 and all(map(_is_int, value))


def _is_string(value):
    return isinstance(value, (str, types.UnicodeType, types.StringLiteral))


def _is_none(value):
    return value is None or isinstance(value, (types.NoneType, types.Omitted))


def _refuse(name, value, expected):
    raise TypingError(f"{_OP}: {name} must be {expected}, but got {value}")


def _check_types(input, weight, bias, stride, padding, dilation, groups, padding_mode):
    for name, array, ndims in (("input", input, (4, 5)), ("weight", weight, (5,))):
        if not isinstance(array, types.Array):
            _refuse(name, array, "a NumPy array")
        if array.dtype not in _DTYPES:
            _refuse(f"{name} dtype", array.dtype, "float32, float64, complex64 or complex128")
        if array.ndim not in ndims:
            _refuse(f"{name}", f"{array.ndim} dimensions", f"{' or '.join(map(str, ndims))}-dimensional")
    if weight.dtype != input.dtype:
        _refuse("weight dtype", weight.dtype, f"the input dtype {input.dtype}")
    if not _is_none(bias) and not (isinstance(bias, types.Array) and bias.dtype == input.dtype):
        _refuse("bias", bias, f"None or an array of the input dtype {input.dtype}")
    for name, value in (("stride", stride), ("dilation", dilation)):
        if not (_is_int(value) or _is_triple(value)):
            _refuse(name, value, "an int or a tuple of 3 ints")
    if not (_is_int(padding) or _is_triple(padding) or _is_string(padding)):
        _refuse("padding", padding, "an int, a tuple of 3 ints, 'valid' or 'same'")
    if not _is_int(groups):
        _refuse("groups", groups, "an int")
    if not _is_string(padding_mode):
        _refuse("padding_mode", padding_mode, "a string")


def as_triple(value):
    """An int or a 3-tuple of ints -> a 3-tuple of int64 (jitted code only)."""


@overload(as_triple)
def _as_triple(value):
    if _is_int(value):
        return lambda value: (np.int64(value), np.int64(value), np.int64(value))
    return lambda value: (np.int64(value[0]), np.int64(value[1]), np.int64(value[2]))


def resolve_pads(padding, kernel, stride, dilation):
    """``padding`` -> (front pads, back pads), each a 3-tuple, as the planner resolves it."""


@overload(resolve_pads)
def _resolve_pads(padding, kernel, stride, dilation):
    if not _is_string(padding):
        def explicit(padding, kernel, stride, dilation):
            pads = as_triple(padding)
            shape_checks.check_minimum(_OP, "padding", pads, 0)
            return pads, pads

        return explicit

    def named(padding, kernel, stride, dilation):
        if padding == "valid":
            return (0, 0, 0), (0, 0, 0)
        if padding != "same":
            raise ValueError(_OP + ": invalid padding string '" + padding
                             + "', should be one of ('valid', 'same')")
        shape_checks.check_same_stride(_OP, stride)
        d = same_pads(kernel[0], dilation[0])
        h = same_pads(kernel[1], dilation[1])
        w = same_pads(kernel[2], dilation[2])
        return (d[0], h[0], w[0]), (d[1], h[1], w[1])

    return named


@register_jitable
def mode_code(padding_mode):
    """``padding_mode`` string -> its ``PAD_*`` code; ValueError for an unknown mode."""
    code = padding_mode_code(padding_mode)
    if code >= 0:
        return code
    raise ValueError(_OP + ": padding_mode must be one of ['zeros', 'reflect', 'replicate', "
                     + "'circular'], but got padding_mode='" + padding_mode + "'")


def bias_operand(bias, weight):
    """(bias array, its shape, has_bias): an empty array, shape (0,) and False for None."""


@overload(bias_operand)
def _bias_operand(bias, weight):
    if _is_none(bias):
        return lambda bias, weight: (np.zeros(0, weight.dtype), (0,), False)
    return lambda bias, weight: (np.ascontiguousarray(bias), (bias.shape[0],), True)


def with_batch_axis(input):
    """The 5-D view of batched or unbatched ``input``."""


@overload(with_batch_axis)
def _with_batch_axis(input):
    if input.ndim == 5:
        return lambda input: input
    return lambda input: input[np.newaxis]


@njit(cache=True)
def plan_numbers(input_shape, weight_shape, bias_shape, has_bias, stride, padding, dilation, groups,
                 padding_mode):
    """Check the arguments by the planner's rules and lower them to the kernels' numbers: strides,
    dilations, front pads, padded extents, padding-mode code, output extents.

    Compiled once per argument types and cached on disk, apart from the user's function: the string
    building of the checks' messages is slow to compile.
    """
    strides, dilations = as_triple(stride), as_triple(dilation)
    shape_checks.check_minimum(_OP, "stride", strides, 1)
    shape_checks.check_minimum(_OP, "dilation", dilations, 1)
    shape_checks.check_positive(_OP, "groups", groups)
    shape_checks.check_not_empty(_OP, "input", input_shape, len(input_shape) == 5)
    shape_checks.check_not_empty(_OP, "weight", weight_shape, False)
    shape_checks.check_groups(_OP, input_shape, weight_shape, groups)
    if has_bias:
        shape_checks.check_bias_shape(_OP, weight_shape, bias_shape)
    kernel = (weight_shape[2], weight_shape[3], weight_shape[4])
    front, back = resolve_pads(padding, kernel, strides, dilations)
    mode = mode_code(padding_mode)
    n = len(input_shape)
    size = (input_shape[n - 3], input_shape[n - 2], input_shape[n - 1])
    shape_checks.check_mode_limits(_OP, mode, front, back, size)
    padded = (size[0] + front[0] + back[0], size[1] + front[1] + back[1],
              size[2] + front[2] + back[2])
    spans = (dilated_extent(kernel[0], dilations[0]), dilated_extent(kernel[1], dilations[1]),
             dilated_extent(kernel[2], dilations[2]))
    shape_checks.check_kernel_fits(_OP, padded, spans, kernel, dilations)
    out_size = (conv_output_size(size[0], front[0], back[0], kernel[0], strides[0], dilations[0]),
                conv_output_size(size[1], front[1], back[1], kernel[1], strides[1], dilations[1]),
                conv_output_size(size[2], front[2], back[2], kernel[2], strides[2], dilations[2]))
    return strides, dilations, front, padded, mode, out_size


@register_jitable
def convolve(input, weight, bias, stride, padding, dilation, groups, padding_mode):
    """The batched (5-D) result of ``conv3d`` in jitted code: checks, then the CPU kernel."""
    b, bias_shape, has_bias = bias_operand(bias, weight)
    strides, dilations, front, padded, mode, out_size = plan_numbers(
        input.shape, weight.shape, bias_shape, has_bias, stride, padding, dilation, groups,
        padding_mode)
    # As the Python call does, the kernels get C-contiguous writable arrays (a copy only where the input
    # is not in C order): they then compile once per dtype, shared with the Python call through the
    # cache, rather than once per layout and read-only flag of the user's arrays.
    x = np.ascontiguousarray(with_batch_axis(input))
    out = np.empty((x.shape[0], weight.shape[0], out_size[0], out_size[1], out_size[2]), input.dtype)
    if x.shape[0] > 0:
        call_cpu_kernels(x, np.ascontiguousarray(weight), b, has_bias, out, strides, dilations, front,
                         padded, mode, groups)
    return out


@overload(conv3d)
def _conv3d_overload(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1,
                     padding_mode="zeros"):
    _check_types(input, weight, bias, stride, padding, dilation, groups, padding_mode)
    if input.ndim == 5:
        def batched(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1,
                    padding_mode="zeros"):
            return convolve(input, weight, bias, stride, padding, dilation, groups, padding_mode)

        return batched

    def unbatched(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1,
                  padding_mode="zeros"):
        return convolve(input, weight, bias, stride, padding, dilation, groups, padding_mode)[0]

    return unbatched
