"""Gradient of a 3-D convolution with respect to its padded input, on the CPU (a gather kernel).

``conv3d_input`` and ``conv_transpose3d`` share this kernel. Padded input element ``p`` received
``weight[k] * x[p]`` in every output ``o`` with ``p = o * stride + k * dilation``; so its gradient is the
sum, over the taps ``k`` for which ``p - k * dilation`` is a multiple of the stride, of ``weight[k]`` times
``grad_output[(p - k * dilation) / stride]``. Each task owns one plane of one channel of the padded
gradient and gathers every term it needs, so there are no atomics and no split sums: every element is
summed by one thread in one fixed order (output channel, kd, kh, kw), whatever the thread count.

Along W the plane is kept split into ``stride_w`` phases (padded column ``j * stride_w + phase`` at
``[phase, j]``, as in ``slab.py``): one tap then adds a contiguous output row onto a contiguous run of
one phase, a loop the compiler vectorizes.
"""
import numpy as np
from numba import njit, prange

from ..shape_rules import output_reading
from .slab import phase_columns


@njit(cache=True)
def _gather_plane(grad, weight, n, c, pd, stride, dilation, groups, acc):
    """``acc[ph, phase, j]`` = gradient of padded input (n, c, pd, ph, j * stride_w + phase)."""
    out_per_group = grad.shape[1] // groups
    in_per_group, kd_, kh_, kw_ = weight.shape[1:]
    out_depth, out_height, out_width = grad.shape[2:]
    phases = acc.shape[1]
    g, i = c // in_per_group, c % in_per_group
    acc[:] = 0
    for o in range(g * out_per_group, (g + 1) * out_per_group):
        for kz in range(kd_):
            od = output_reading(pd, kz, stride[0], dilation[0], out_depth)
            if od < 0:
                continue
            for ky in range(kh_):
                for oh in range(out_height):
                    ph = oh * stride[1] + ky * dilation[1]
                    source = grad[n, o, od, oh]
                    for kx in range(kw_):
                        col = kx * dilation[2]
                        tap = weight[o, i, kz, ky, kx]
                        target = acc[ph, col % phases, col // phases:col // phases + out_width]
                        for ow in range(out_width):
                            target[ow] += tap * source[ow]


@njit(parallel=True, cache=True)
def _input_grad_kernel(grad, weight, out, stride, dilation, groups):
    """Fill ``out`` (N, C_in, PD, PH, PW) with the gradient of the padded input."""
    batch, channels, padded_d, padded_h, padded_w = out.shape
    phases = stride[2]
    columns = phase_columns(padded_w, phases)
    for task in prange(batch * channels * padded_d):
        n, rest = task // (channels * padded_d), task % (channels * padded_d)
        c, pd = rest // padded_d, rest % padded_d
        acc = np.empty((padded_h, phases, columns), out.dtype)
        _gather_plane(grad, weight, n, c, pd, stride, dilation, groups, acc)
        plane = out[n, c, pd]
        for ph in range(padded_h):
            for pw in range(padded_w):
                plane[ph, pw] = acc[ph, pw % phases, pw // phases]


def padded_input_grad(grad, weight, padded_size, stride, dilation, groups):
    """Gradient of a convolution with respect to its padded input (zeros where no output reads).

    Parameters
    ----------
    grad : numpy.ndarray
        C-contiguous (N, C_out, OD, OH, OW), N > 0: the gradient of the output (for
        ``conv_transpose3d``, its input). Every output row must fit in the padded extent:
        ``(O - 1) * stride + dilation * (K - 1) < P`` per dimension.
    weight : numpy.ndarray
        C-contiguous (C_out, C_in / groups, KD, KH, KW), already conjugated for a complex gradient.
    padded_size, stride, dilation : tuple of 3 ints
        Padded input extents (PD, PH, PW), stride and dilation of the convolution.
    groups : int

    Returns
    -------
    numpy.ndarray
        (N, C_in, PD, PH, PW) of ``grad``'s dtype.
    """
    channels = weight.shape[1] * groups
    out = np.empty((grad.shape[0], channels) + tuple(padded_size), grad.dtype)
    _input_grad_kernel(grad, weight, out, tuple(stride), tuple(dilation), groups)
    return out
