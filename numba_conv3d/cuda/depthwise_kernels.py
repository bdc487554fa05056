"""The depthwise ``@cuda.jit`` kernel: one input channel per output channel, each input read through
the L1 cache rather than staged (a memory-bound layer has no reuse across channels to stage for).

A thread computes ``outputs`` consecutive outputs of one output row, summing in the fixed order (kd, kh,
kw): results are bitwise equal from run to run. Geometry arrives in the plan's geometry array.
"""
import functools

import numba
import numpy as np
from numba import cuda, from_dtype

from .gemm_kernels import digits
from .geometry import (G_DEPTH, G_DILATION_D, G_DILATION_H, G_DILATION_W, G_HAS_BIAS, G_HEIGHT,
                       G_KERNEL_D, G_KERNEL_H, G_KERNEL_W, G_OUT_CHANNELS, G_OUT_DEPTH, G_OUT_HEIGHT,
                       G_OUT_WIDTH, G_PAD_D, G_PAD_H, G_PAD_W, G_POSITIONS, G_STRIDE_D, G_STRIDE_H,
                       G_STRIDE_W, G_WIDTH)
from .kernels import jit_kernel

_at = numba.uint64


@functools.lru_cache(maxsize=None)
def depthwise_kernel(dtype, threads, outputs):
    """The depthwise kernel for ``dtype`` at ``threads`` per block, ``outputs`` outputs per thread:
    ``kernel(x, w, b, out, geometry)`` with flat C-order ``x``, ``w`` and ``out``; a grid-stride loop
    over (sample, channel, output depth, output row, chunk of ``outputs`` columns)."""
    value = from_dtype(np.dtype(dtype))
    zero = value(0)

    @jit_kernel(threads, 1)
    def kernel(x, w, b, out, geometry):
        out_depth, out_height, out_width = (geometry[G_OUT_DEPTH], geometry[G_OUT_HEIGHT],
                                            geometry[G_OUT_WIDTH])
        depth, height, width = geometry[G_DEPTH], geometry[G_HEIGHT], geometry[G_WIDTH]
        kernel_d, kernel_h, kernel_w = geometry[G_KERNEL_D], geometry[G_KERNEL_H], geometry[G_KERNEL_W]
        channels = geometry[G_OUT_CHANNELS]
        stride_w, dilation_w = geometry[G_STRIDE_W], geometry[G_DILATION_W]
        has_bias = geometry[G_HAS_BIAS] != 0
        chunks = (out_width + outputs - 1) // outputs
        rows = geometry[G_POSITIONS] // out_width * channels
        sums = cuda.local.array(outputs, value)
        for item in range(cuda.grid(1), rows * chunks, cuda.gridsize(1)):
            chunk, oh, od, plane = digits(item, chunks, out_height, out_depth)
            channel = plane % numba.uint32(channels)
            ow0 = chunk * outputs
            w0 = ow0 * stride_w - geometry[G_PAD_W]
            for v in range(outputs):
                sums[v] = zero
            for kd in range(kernel_d):
                d = od * geometry[G_STRIDE_D] - geometry[G_PAD_D] + kd * geometry[G_DILATION_D]
                if d < 0 or d >= depth:
                    continue
                for kh in range(kernel_h):
                    h = oh * geometry[G_STRIDE_H] - geometry[G_PAD_H] + kh * geometry[G_DILATION_H]
                    if h < 0 or h >= height:
                        continue
                    row = ((plane * depth + d) * height + h) * width
                    taps = (channel * kernel_d + kd) * kernel_h + kh
                    for kw in range(kernel_w):
                        weight = w[_at(taps * kernel_w + kw)]
                        for v in range(outputs):
                            c = w0 + v * stride_w + kw * dilation_w
                            if 0 <= c < width:
                                sums[v] += x[_at(row + c)] * weight
            at = ((plane * out_depth + od) * out_height + oh) * out_width
            for v in range(outputs):
                if ow0 + v < out_width:
                    out[_at(at + ow0 + v)] = sums[v] + b[channel] if has_bias else sums[v]

    return kernel
