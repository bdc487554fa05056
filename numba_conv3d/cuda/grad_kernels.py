"""The ``@cuda.jit`` kernels of the gradients and of the transposed convolution.

The siblings of the CPU's ``input_grad.py``, ``pad_fold.py`` and ``weight_grad.py``: a gather kernel
for the padded input's gradient (one thread per element), the output gradient spread by the stride
(zeros between) for the upsampled route, a fold of the padded gradient back onto the
input along inverse index maps (every padding mode), the flipped and channel-swapped weight of the
unit-stride route (or one stride phase's sub-kernel), the write of one stride phase's correlation into
the result, and block reductions for the weight and bias gradients (one thread block per
weight element, or per channel and split of the positions for the bias, each thread summing a fixed
slice of the positions, then a fixed tree; the bias's splits then added in order). No atomics: every
result is bitwise equal from run to run. Plan numbers are runtime arguments; the dtype, the threads per
block and whether to conjugate are compiled in.
"""
import functools

import numpy as np
from numba import cuda, from_dtype

from ..shape_rules import output_reading, padded_source_index
from .kernels import jit_kernel
from .tiling import unravel


@cuda.jit(device=True)
def _same(value):
    return value


@cuda.jit(device=True)
def _conjugate(value):
    return value.conjugate()


def _reader(dtype, conjugate):
    """The device function applied to the operand that the gradient conjugates: identity for real
    dtypes or when ``conjugate`` is False."""
    return _conjugate if conjugate and np.dtype(dtype).kind == "c" else _same


@cuda.jit(device=True)
def _block_sum(partial, value, thread, threads):
    """Sum of ``value`` over the block's ``threads`` threads (a power of two) by a fixed tree in
    ``partial`` (shared, ``threads`` elements); every thread gets the total."""
    partial[thread] = value
    cuda.syncthreads()
    step = threads // 2
    while step > 0:
        if thread < step:
            partial[thread] += partial[thread + step]
        cuda.syncthreads()
        step //= 2
    total = partial[0]
    cuda.syncthreads()  # partial is written again by the next element's sum
    return total


@functools.lru_cache(maxsize=None)
def gather_kernel(dtype, threads, conjugate):
    """``out[n, c, pd, ph, pw]`` (the padded input's gradient) = sum over the output channels of c's
    group and the taps (kd, kh, kw) whose output reads it of ``weight * grad_output``, one thread per
    element, in the order (output channel, kd, kh, kw); the weight conjugated if ``conjugate``."""
    value = from_dtype(np.dtype(dtype))
    read_weight = _reader(dtype, conjugate)

    @jit_kernel(threads, 1)
    def kernel(grad, w, groups, stride, dilation, out):
        batch, channels, padded_d, padded_h, padded_w = out.shape
        _, out_channels, out_depth, out_height, out_width = grad.shape
        _, in_per_group, kernel_d, kernel_h, kernel_w = w.shape
        out_per_group = out_channels // groups
        total = batch * channels * padded_d * padded_h * padded_w
        sums = cuda.local.array(1, value)
        for index in range(cuda.grid(1), total, cuda.gridsize(1)):
            pw, ph, pd, c, n = unravel(index, padded_w, padded_h, padded_d, channels)
            group = c // in_per_group
            i = c - group * in_per_group
            sums[0] = 0
            for o in range(group * out_per_group, (group + 1) * out_per_group):
                for kd in range(kernel_d):
                    od = output_reading(pd, kd, stride[0], dilation[0], out_depth)
                    if od < 0:
                        continue
                    for kh in range(kernel_h):
                        oh = output_reading(ph, kh, stride[1], dilation[1], out_height)
                        if oh < 0:
                            continue
                        for kw in range(kernel_w):
                            ow = output_reading(pw, kw, stride[2], dilation[2], out_width)
                            if ow >= 0:
                                sums[0] += read_weight(w[o, i, kd, kh, kw]) * grad[n, o, od, oh, ow]
            out[n, c, pd, ph, pw] = sums[0]

    return kernel


@functools.lru_cache(maxsize=None)
def upsample_kernel(dtype, threads):
    """``out[n, c, a, b, e]`` = ``grad[n, c, a / s0, b / s1, e / s2]`` where ``stride`` divides every
    coordinate and the quotient is inside ``grad``, else zero; one thread per element."""

    @jit_kernel(threads, 1)
    def kernel(grad, stride, out):
        batch, channels, depth, height, width = out.shape
        total = batch * channels * depth * height * width
        for index in range(cuda.grid(1), total, cuda.gridsize(1)):
            e, b, a, c, n = unravel(index, width, height, depth, channels)
            od, oh, ow = a // stride[0], b // stride[1], e // stride[2]
            if (a == od * stride[0] and b == oh * stride[1] and e == ow * stride[2] and od < grad.shape[2]
                    and oh < grad.shape[3] and ow < grad.shape[4]):
                out[n, c, a, b, e] = grad[n, c, od, oh, ow]
            else:
                out[n, c, a, b, e] = 0

    return kernel


@functools.lru_cache(maxsize=None)
def fold_kernel(dtype, threads):
    """``out[n, c, d, h, w]`` = sum over the padded positions that copied (d, h, w) (``starts`` and
    ``positions``: per axis, the padded positions reading each input index, ascending, CSR-style) of
    the padded gradient, plus ``bias[c]`` when ``has_bias``; one thread per element."""
    value = from_dtype(np.dtype(dtype))

    @jit_kernel(threads, 1)
    def kernel(padded, starts, positions, bias, has_bias, out):
        batch, channels, depth, height, width = out.shape
        total = batch * channels * depth * height * width
        sums = cuda.local.array(1, value)
        for index in range(cuda.grid(1), total, cuda.gridsize(1)):
            w, h, d, c, n = unravel(index, width, height, depth, channels)
            sums[0] = 0
            for jd in range(starts[0, d], starts[0, d + 1]):
                pd = positions[0, jd]
                for jh in range(starts[1, h], starts[1, h + 1]):
                    ph = positions[1, jh]
                    for jw in range(starts[2, w], starts[2, w + 1]):
                        sums[0] += padded[n, c, pd, ph, positions[2, jw]]
            out[n, c, d, h, w] = sums[0] + bias[c] if has_bias else sums[0]

    return kernel


@functools.lru_cache(maxsize=None)
def flip_kernel(dtype, threads, conjugate):
    """``out[c, j, a, b, e]`` = ``w[g * O_g + j, c - g * I_g, taps_d[a], taps_h[b], taps_w[e]]`` (g =
    c's group), conjugated if ``conjugate``: with the taps reversed, the weight whose forward
    correlation is the input gradient, or one stride phase's sub-kernel."""
    read_weight = _reader(dtype, conjugate)

    @jit_kernel(threads, 1)
    def kernel(w, taps_d, taps_h, taps_w, out):
        channels, out_per_group, kernel_d, kernel_h, kernel_w = out.shape
        in_per_group = w.shape[1]
        total = channels * out_per_group * kernel_d * kernel_h * kernel_w
        for index in range(cuda.grid(1), total, cuda.gridsize(1)):
            kw, kh, kd, j, c = unravel(index, kernel_w, kernel_h, kernel_d, out_per_group)
            group = c // in_per_group
            out[c, j, kd, kh, kw] = read_weight(w[group * out_per_group + j, c - group * in_per_group,
                                                  taps_d[kd], taps_h[kh], taps_w[kw]])

    return kernel


@functools.lru_cache(maxsize=None)
def phase_write_kernel(dtype, threads):
    """``out[n, c, o0 + a * s0, o1 + b * s1, o2 + e * s2]`` = ``values[n, c, a, b, e]`` (``source``
    0), ``bias[c]`` (1) or zero (2), for (a, b, e) below ``counts``: one stride phase of a result, one
    thread per element."""
    @jit_kernel(threads, 1)
    def kernel(values, bias, source, offsets, stride, counts, out):
        batch, channels = out.shape[0], out.shape[1]
        total = batch * channels * counts[0] * counts[1] * counts[2]
        for index in range(cuda.grid(1), total, cuda.gridsize(1)):
            e, b, a, c, n = unravel(index, counts[2], counts[1], counts[0], channels)
            value = values[n, c, a, b, e] if source == 0 else (bias[c] if source == 1 else 0)
            out[n, c, offsets[0] + a * stride[0], offsets[1] + b * stride[1],
                offsets[2] + e * stride[2]] = value

    return kernel


@functools.lru_cache(maxsize=None)
def weight_grad_kernel(dtype, threads):
    """``out[o, i, kd, kh, kw]`` = sum over the output positions (n, od, oh, ow) of ``grad[n, o, od, oh,
    ow] * conj(padded input of channel i of o's group at the tap)``, the input read through the padding
    index maps; a block per weight element, thread t summing positions t, t + threads, ..., then the
    block's fixed tree (``threads`` a power of two)."""
    value = from_dtype(np.dtype(dtype))
    read_input = _reader(dtype, True)

    @jit_kernel(threads, 1)
    def kernel(x, grad, out, groups, stride, dilation, front, mode):
        batch, depth, height, width = x.shape[0], x.shape[2], x.shape[3], x.shape[4]
        out_channels, in_per_group, kernel_d, kernel_h, kernel_w = out.shape
        out_depth, out_height, out_width = grad.shape[2], grad.shape[3], grad.shape[4]
        out_per_group = out_channels // groups
        positions = batch * out_depth * out_height * out_width
        elements = out_channels * in_per_group * kernel_d * kernel_h * kernel_w
        partial = cuda.shared.array(threads, value)
        sums = cuda.local.array(1, value)
        thread = cuda.threadIdx.x
        for element in range(cuda.blockIdx.x, elements, cuda.gridDim.x):
            kw, kh, kd, i, o = unravel(element, kernel_w, kernel_h, kernel_d, in_per_group)
            c = (o // out_per_group) * in_per_group + i
            sums[0] = 0
            for position in range(thread, positions, threads):
                ow, oh, od, n, _ = unravel(position, out_width, out_height, out_depth, batch)
                sd = padded_source_index(od * stride[0] + kd * dilation[0], front[0], depth, mode)
                sh = padded_source_index(oh * stride[1] + kh * dilation[1], front[1], height, mode)
                sw = padded_source_index(ow * stride[2] + kw * dilation[2], front[2], width, mode)
                if sd >= 0 and sh >= 0 and sw >= 0:
                    sums[0] += grad[n, o, od, oh, ow] * read_input(x[n, c, sd, sh, sw])
            total = _block_sum(partial, sums[0], thread, threads)
            if thread == 0:
                out[o, i, kd, kh, kw] = total

    return kernel


@functools.lru_cache(maxsize=None)
def bias_grad_kernel(dtype, threads):
    """``partials[split, c]`` = ``grad[:, c]`` summed over batch and one slice of the positions: a
    block per channel and split (grid ``(channels, splits)``), each split's positions a contiguous
    range of the flattened (sample, volume), summed as :func:`weight_grad_kernel` sums."""
    value = from_dtype(np.dtype(dtype))

    @jit_kernel(threads, 1)
    def kernel(grad, partials):
        batch, channels, out_depth, out_height, out_width = grad.shape
        positions = batch * out_depth * out_height * out_width
        splits = partials.shape[0]
        per_split = (positions + splits - 1) // splits
        partial = cuda.shared.array(threads, value)
        sums = cuda.local.array(1, value)
        thread, split = cuda.threadIdx.x, cuda.blockIdx.y
        for c in range(cuda.blockIdx.x, channels, cuda.gridDim.x):
            sums[0] = 0
            for position in range(split * per_split + thread, min(positions, (split + 1) * per_split),
                                  threads):
                ow, oh, od, n, _ = unravel(position, out_width, out_height, out_depth, batch)
                sums[0] += grad[n, c, od, oh, ow]
            total = _block_sum(partial, sums[0], thread, threads)
            if thread == 0:
                partials[split, c] = total

    return kernel


@functools.lru_cache(maxsize=None)
def split_rows_kernel(dtype, threads):
    """``out[c]`` = the column ``partials[:, c]`` summed in row order: one thread per column."""
    value = from_dtype(np.dtype(dtype))

    @jit_kernel(threads, 1)
    def kernel(partials, out):
        sums = cuda.local.array(1, value)
        for c in range(cuda.grid(1), out.shape[0], cuda.gridsize(1)):
            sums[0] = 0
            for split in range(partials.shape[0]):
                sums[0] += partials[split, c]
            out[c] = sums[0]

    return kernel
