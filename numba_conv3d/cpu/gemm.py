"""Convolution as a matrix product (im2col + GEMM) on the CPU, for real dtypes.

For small output volumes with many channels (the deep layers of 3-D networks: 4x4x4, 2x7x7, 4x14x14
outputs with 128-512 channels), the register-blocked kernels keep few outputs per weight they load and
stream every weight from memory again for each block of outputs. Here the padded input's taps for a
chunk of output planes are gathered into columns (one row per input channel and tap, one column per
output position: ``im2col``) and one matrix product per group, by NumPy's BLAS, computes every output
channel at once: near the machine's GEMM peak once the product is large enough.

Padding modes are the slab's index maps. Chunks of output planes keep the columns within
``GEMM_COLUMN_BYTES``. Each output element is one BLAS dot product over (input channel, kd, kh, kw), its
order set by the BLAS and the product's pieces, which depend on its shape alone, not on the thread count
(``blas.matmul``: pieces of rows or columns, each by one thread, never splitting a sum; no BLAS
thread left spinning); the bias is added after it. The weight gradient is the same
product the other way round: the output gradient times the columns, transposed.
"""
import math
import numpy as np
from numba import njit, prange

from ..config import GEMM_COLUMN_BYTES
from ..crossovers import GEMM_MIN_REDUCTION
from ..grad_crossovers import GEMM_WEIGHT_GRAD_MIN_OUT_CHANNELS, GEMM_WEIGHT_GRAD_POSITIONS_PER_CHANNEL
from .blas import matmul
from .slab import index_map


@njit(parallel=True, cache=True)
def _im2col(x, n, c0, kernel, stride, dilation, map_d, map_h, map_w, od0, columns):
    """Fill ``columns`` (C_in/g * KD * KH * KW, planes * OH * OW) with the padded input of sample ``n``
    from channel ``c0``, for the output planes from ``od0``; ``map_*`` are index maps (-1: zero)."""
    taps = kernel[0] * kernel[1] * kernel[2]
    out_width = (map_w.shape[0] - (kernel[2] - 1) * dilation[2] - 1) // stride[2] + 1
    out_height = (map_h.shape[0] - (kernel[1] - 1) * dilation[1] - 1) // stride[1] + 1
    planes = columns.shape[1] // (out_height * out_width)
    zero = x.dtype.type(0)
    for row in prange(columns.shape[0]):
        c, t = row // taps, row % taps
        kd, kh, kw = t // (kernel[1] * kernel[2]), t // kernel[2] % kernel[1], t % kernel[2]
        target = columns[row]
        for z in range(planes):
            sd = map_d[(od0 + z) * stride[0] + kd * dilation[0]]
            for oh in range(out_height):
                sh = map_h[oh * stride[1] + kh * dilation[1]]
                base = (z * out_height + oh) * out_width
                if sd < 0 or sh < 0:
                    for ow in range(out_width):
                        target[base + ow] = zero
                    continue
                source = x[n, c0 + c, sd, sh]
                for ow in range(out_width):
                    sw = map_w[ow * stride[2] + kw * dilation[2]]
                    target[base + ow] = source[sw] if sw >= 0 else zero


def _maps(x_shape, padded, pad_front, mode):
    return tuple(index_map(padded[d], pad_front[d], x_shape[2 + d], mode) for d in range(3))


def plane_chunk(in_per_group, kernel, out_size, itemsize):
    """Output planes whose columns fit in ``GEMM_COLUMN_BYTES`` (at least one)."""
    plane_bytes = in_per_group * math.prod(kernel) * out_size[1] * out_size[2] * itemsize
    return max(1, min(out_size[0], GEMM_COLUMN_BYTES // plane_bytes))


def _input_is_columns(input_size, kernel, out_size, stride):
    """Whether the input itself is the columns: a 1x1x1 kernel at unit stride with nothing padded."""
    return tuple(kernel) == (1, 1, 1) and tuple(stride) == (1, 1, 1) and tuple(out_size) == tuple(input_size)


def reads_input_as_columns(plan):
    """Whether ``plan``'s input is its own columns (no im2col)."""
    return _input_is_columns(plan.input_size, plan.kernel_size, plan.output_size, plan.stride)


def _chunks(x, kernel, out_size, stride, dilation, pad_front, padded, mode, groups):
    """For each sample, group and chunk of output planes: (n, g, first plane, planes, columns). A 1x1x1
    convolution at unit stride with nothing padded reads its input as the columns, all planes at
    once."""
    in_per_group = x.shape[1] // groups
    if _input_is_columns(x.shape[2:], kernel, out_size, stride):
        for n in range(x.shape[0]):
            for g in range(groups):
                channels = x[n, g * in_per_group:(g + 1) * in_per_group]
                yield n, g, 0, out_size[0], channels.reshape(in_per_group, -1)
        return
    planes = plane_chunk(in_per_group, kernel, out_size, x.itemsize)
    plane = out_size[1] * out_size[2]
    buffer = np.empty(in_per_group * math.prod(kernel) * planes * plane, x.dtype)
    maps = _maps(x.shape, padded, pad_front, mode)
    for n in range(x.shape[0]):
        for g in range(groups):
            for od0 in range(0, out_size[0], planes):
                count = min(planes, out_size[0] - od0)
                columns = buffer[:in_per_group * math.prod(kernel) * count * plane].reshape(
                    in_per_group * math.prod(kernel), count * plane)
                _im2col(x, n, g * in_per_group, kernel, stride, dilation, *maps, od0, columns)
                yield n, g, od0, count, columns


def compute(x, weight, bias, has_bias, out, stride, dilation, pad_front, padded, mode, groups):
    """Fill the batched ``out`` from the batched ``x`` by im2col and GEMM (real dtypes).

    The arguments are the plan's numbers, as :func:`numba_conv3d.cpu.direct.compute` takes them.
    """
    out_per_group = out.shape[1] // groups
    matrix = np.ascontiguousarray(weight).reshape(weight.shape[0], -1)
    for n, g, od0, count, columns in _chunks(x, weight.shape[2:], out.shape[2:], stride, dilation,
                                              pad_front, padded, mode, groups):
        channels = slice(g * out_per_group, (g + 1) * out_per_group)
        target = out[n, channels, od0:od0 + count].reshape(out_per_group, -1)
        matmul(matrix[channels], columns, target)
        if has_bias:
            target += bias[channels, np.newaxis]


def weight_grad(x, grad, weight_shape, stride, dilation, pad_front, padded, mode, groups):
    """The weight's gradient (``weight_shape``) from the batched input ``x`` and output gradient ``grad``
    (C-contiguous): per group, the sum over samples and plane chunks, in that order, of the output
    gradient's rows times the columns, transposed."""
    out_per_group = weight_shape[0] // groups
    result = np.zeros((weight_shape[0], math.prod(weight_shape[1:])), x.dtype)
    for n, g, od0, count, columns in _chunks(x, weight_shape[2:], grad.shape[2:], stride, dilation,
                                              pad_front, padded, mode, groups):
        channels = slice(g * out_per_group, (g + 1) * out_per_group)
        result[channels] += matmul(grad[n, channels, od0:od0 + count].reshape(out_per_group, -1),
                                   columns.T)
    return result.reshape(weight_shape)


@njit(parallel=True, cache=True)
def _col2im(columns, target, n, c0, kernel, stride, dilation, od0, out_height, out_width):
    """Add ``columns`` (C_in/g * KD * KH * KW, planes * OH * OW: each tap's share of the gradient of the
    input it read, per output position from plane ``od0``) onto the padded input gradient ``target[n,
    c0 + c]``: each channel by one thread, taps and positions in order."""
    taps = kernel[0] * kernel[1] * kernel[2]
    planes = columns.shape[1] // (out_height * out_width)
    for c in prange(columns.shape[0] // taps):
        volume = target[n, c0 + c]
        for t in range(taps):
            kd, kh, kw = t // (kernel[1] * kernel[2]), t // kernel[2] % kernel[1], t % kernel[2]
            source = columns[c * taps + t]
            for z in range(planes):
                plane = volume[(od0 + z) * stride[0] + kd * dilation[0]]
                for oh in range(out_height):
                    row = plane[oh * stride[1] + kh * dilation[1]]
                    base = (z * out_height + oh) * out_width
                    for ow in range(out_width):
                        row[ow * stride[2] + kw * dilation[2]] += source[base + ow]


def padded_input_grad(grad, weight, padded_size, stride, dilation, groups):
    """The gradient of a convolution with respect to its padded input (zeros where no output reads), as
    per group the weight matrix transposed times the output gradient (one column per output position,
    in chunks of output planes), each column added back where its taps read (col2im).

    Parameters are those of :func:`numba_conv3d.cpu.input_grad.padded_input_grad` (``weight`` already
    conjugated for a complex gradient)."""
    out_channels, in_per_group = weight.shape[:2]
    kernel, out_size = weight.shape[2:], grad.shape[2:]
    out_per_group = out_channels // groups
    result = np.zeros((grad.shape[0], in_per_group * groups) + tuple(padded_size), grad.dtype)
    matrix = np.ascontiguousarray(weight).reshape(out_channels, -1)
    planes = plane_chunk(in_per_group, kernel, out_size, grad.itemsize)
    plane = out_size[1] * out_size[2]
    for n in range(grad.shape[0]):
        for g in range(groups):
            channels = slice(g * out_per_group, (g + 1) * out_per_group)
            for od0 in range(0, out_size[0], planes):
                count = min(planes, out_size[0] - od0)
                columns = matmul(matrix[channels].T,
                                 grad[n, channels, od0:od0 + count].reshape(out_per_group, count * plane))
                _col2im(columns, result, n, g * in_per_group, kernel, stride, dilation, od0, out_size[1],
                        out_size[2])
    return result


def computes_weight_grad(plan):
    """Whether the weight gradient of ``plan`` (a real-dtype forward plan) is this matrix product:
    where the forward convolution is one, or GEMM-shaped (``preferences.forward_is_gemm_shaped``), or
    with many output channels per group for the output's size (``grad_crossovers.GEMM_WEIGHT_GRAD_*``)."""
    from .preferences import forward_is_gemm_shaped  # imported here: preferences imports this module

    channels = plan.out_per_group
    few_positions = math.prod(plan.output_size) <= GEMM_WEIGHT_GRAD_POSITIONS_PER_CHANNEL * channels
    return not plan.is_complex and (forward_is_gemm_shaped(plan) or (
        plan.in_per_group * math.prod(plan.kernel_size) >= GEMM_MIN_REDUCTION
        and (channels >= 2 * GEMM_WEIGHT_GRAD_MIN_OUT_CHANNELS
             or (channels >= GEMM_WEIGHT_GRAD_MIN_OUT_CHANNELS and few_positions))))


def workspace_bytes(plan):
    """Bytes of the columns of one chunk of output planes (one buffer per call, whatever the thread
    count: counted once per worker, an overestimate); none where the input is the columns."""
    itemsize = np.dtype(plan.dtype).itemsize
    if reads_input_as_columns(plan):
        return 0
    size = plan.output_size
    planes = plane_chunk(plan.in_per_group, plan.kernel_size, size, itemsize)
    return plan.in_per_group * math.prod(plan.kernel_size) * planes * size[1] * size[2] * itemsize

