"""Gradient of a 3-D convolution with respect to its weight, on the CPU.

``grad_weight[o, i, kd, kh, kw]`` is the dot product, over (n, od, oh, ow), of ``grad_output[n, o]``
with the window of the padded input channel ``i`` of o's group that the tap read. The input is padded
once, with W split into ``stride_w`` phases (``slab.py``), so that every tap's window row is a
contiguous run. A task owns (output channel, input channel of its group, kd); it keeps one running
sum per (kh, kw, ow), adds whole output rows into them (a vectorized loop, no reduction inside it),
and sums each tap's row of partial sums in ascending ow at the end. Every weight element is thus
summed by one thread in one fixed order, bitwise equal for any thread count.
"""
import numpy as np
from numba import carray, njit, prange

from .pointers import element_pointer
from .slab import gather_slab, index_maps, phase_columns


@njit(parallel=True, cache=True)
def _pad_phases_kernel(x, padded, pad_front, mode, out):
    """``out[n * C + c, 0]`` = the padded channel (n, c) of ``x``, W split into phases."""
    channels = x.shape[1]
    maps = index_maps(x, padded, pad_front, mode)
    for task in prange(out.shape[0]):
        gather_slab(x, task // channels, task % channels, 0, 0, maps[0], maps[1], maps[2], out[task])


@njit(cache=True)
def _tap_sums(grad, padded_x, o, c, kz, stride, dilation, sums):
    """``sums[kh, kw, ow]`` = sum over (n, od, oh) of grad * padded input, for tap (kz, kh, kw).

    Rows are viewed through raw pointers (``pointers.py``): an array view per row would increment and
    decrement the shared arrays' reference counts, atomically, far more often than the short rows
    take to sum.
    """
    batch, out_channels, out_depth, out_height, out_width = grad.shape
    channels = padded_x.shape[0] // batch
    padded_d, padded_h, phases, columns = padded_x.shape[2:]
    kh_, kw_ = sums.shape[:2]
    sums[:] = 0
    for n in range(batch):
        for od in range(out_depth):
            pd = od * stride[0] + kz * dilation[0]
            plane = ((n * channels + c) * padded_d + pd) * padded_h
            for oh in range(out_height):
                row_g = carray(element_pointer(grad, (((n * out_channels + o) * out_depth + od) * out_height
                                                      + oh) * out_width), out_width)
                for ky in range(kh_):
                    row_x = (plane + oh * stride[1] + ky * dilation[1]) * phases * columns
                    for kx in range(kw_):
                        col = kx * dilation[2]
                        source = carray(element_pointer(padded_x, row_x + (col % phases) * columns
                                                        + col // phases), out_width)
                        target = carray(element_pointer(sums, (ky * kw_ + kx) * out_width), out_width)
                        for ow in range(out_width):
                            target[ow] += row_g[ow] * source[ow]


@njit(parallel=True, cache=True)
def _weight_grad_kernel(grad, padded_x, out, stride, dilation, groups):
    """Fill ``out`` (C_out, C_in / groups, KD, KH, KW) with the gradient of the weight."""
    out_channels, in_per_group, kd_, kh_, kw_ = out.shape
    out_per_group = out_channels // groups
    for task in prange(out_channels * in_per_group * kd_):
        o, rest = task // (in_per_group * kd_), task % (in_per_group * kd_)
        i, kz = rest // kd_, rest % kd_
        sums = np.empty((kh_, kw_, grad.shape[4]), out.dtype)
        _tap_sums(grad, padded_x, o, (o // out_per_group) * in_per_group + i, kz, stride, dilation, sums)
        for ky in range(kh_):
            for kx in range(kw_):
                total = sums[ky, kx, 0]
                for ow in range(1, sums.shape[2]):
                    total += sums[ky, kx, ow]
                out[o, i, kz, ky, kx] = total


def weight_grad(x, grad, weight_shape, stride, dilation, pad_front, padded, mode, groups):
    """Gradient of a convolution with respect to its weight.

    Parameters
    ----------
    x : numpy.ndarray
        (N, C_in, D, H, W), N > 0, any memory layout: the forward input (conjugated for complex).
    grad : numpy.ndarray
        C-contiguous (N, C_out, OD, OH, OW): the gradient of the output.
    weight_shape : tuple of 5 ints
        (C_out, C_in / groups, KD, KH, KW).
    stride, dilation, pad_front, padded : tuple of 3 ints
        The plan's stride, dilation, front pads and padded extents.
    mode : int
        Padding mode code (``shape_rules.PAD_*``).
    groups : int

    Returns
    -------
    numpy.ndarray
        ``weight_shape``, of ``grad``'s dtype.
    """
    batch, channels = x.shape[:2]
    phases = stride[2]
    padded_x = np.empty((batch * channels, 1, padded[0], padded[1], phases,
                         phase_columns(padded[2], phases)), x.dtype)
    _pad_phases_kernel(x, tuple(padded), tuple(pad_front), mode, padded_x)
    out = np.empty(tuple(weight_shape), grad.dtype)
    _weight_grad_kernel(grad, padded_x, out, tuple(stride), tuple(dilation), groups)
    return out
