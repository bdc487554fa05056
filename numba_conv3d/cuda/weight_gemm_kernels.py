"""The weight gradient as an implicit-GEMM ``@cuda.jit`` kernel, never materialising the im2col matrix.

Rows of the product are the output channels of one group, columns that group's reduction steps of the
forward convolution (input channel x taps, the weight's memory order), and the reduction runs over
output positions (batch folded in): ``dW[o, column] = sum over positions p of grad[o, p] *
x[column's channel at p's tap]``. A block computes a ``block_m x block_n`` tile, ``block_k`` positions
per stage: each thread gathers one position of the stage (its digits and per-axis validity masks
computed once a stage) for a few output channels of the gradient and a few columns of the input,
whose packed taps it holds in registers for the whole reduction, while the block multiplies the
previous stage out of shared memory (``gemm_kernels.stage_product``; two buffers, one barrier per
stage).

Positions are long (a whole batch's volume) and tiles few, so the positions are split
(``splits`` blocks along the grid's z) and each split writes its partial gradient; the forward's
ordered ``split_sum_kernel`` adds them in split order. No atomics: results are bitwise equal from run
to run.
"""
import functools

import numba
import numpy as np
from numba import cuda, from_dtype

from .gemm_kernels import axis_mask, digits, spread, stage_product, tap_inside
from .gemm_plan import staged_pitch
from .geometry import (G_CHANNEL_TILES, G_DEPTH, G_DILATION_D, G_DILATION_H, G_DILATION_W, G_HEIGHT,
                       G_IN_CHANNELS, G_IN_PER_GROUP, G_KERNEL_D, G_KERNEL_H, G_KERNEL_W,
                       G_OUT_CHANNELS, G_OUT_DEPTH, G_OUT_HEIGHT, G_OUT_PER_GROUP, G_OUT_VOLUME,
                       G_OUT_WIDTH, G_PAD_D, G_PAD_H, G_PAD_W, G_POSITIONS, G_REDUCTION, G_SPLIT_ELEMENTS,
                       G_STAGES, G_STAGES_PER_SPLIT, G_STRIDE_D, G_STRIDE_H, G_STRIDE_W, G_WIDTH,
                       TAP_OFFSET)
from .kernels import jit_kernel

_at = numba.uint64


@functools.lru_cache(maxsize=None)
def weight_gemm_kernel(dtype, tile, min_blocks):
    """The weight-gradient kernel for ``dtype`` (a real NumPy dtype name) and ``tile`` (a
    ``gemm_plan.GemmTile``: ``block_m`` output channels x ``block_n`` columns, ``block_k`` positions a
    stage), compiled for at least ``min_blocks`` resident blocks per multiprocessor.

    Launch on grid ``(column tiles, groups x channel tiles, splits)`` with ``tile.threads`` threads:
    ``kernel(x, grad, target, taps, geometry)`` with flat C-order views; ``taps`` is the forward's
    packed taps table in the weight's order, padded to whole column tiles; ``target`` is the weight's
    gradient (one split) or ``splits`` partial gradients.
    """
    value = from_dtype(np.dtype(dtype))
    block_m, block_n, block_k, thread_m, thread_n = tile
    threads = tile.threads
    m_threads = block_m // thread_m
    run_m, run_n = min(4, thread_m), min(4, thread_n)
    lanes = threads // block_k  # threads gathering one position of a stage
    a_loads, b_loads = block_m // lanes, block_n // lanes
    a_pitch, b_pitch = staged_pitch(block_m), staged_pitch(block_n)
    a_stage, b_stage = block_k * a_pitch, block_k * b_pitch
    a_shared_size, b_shared_size = 2 * a_stage, 2 * b_stage
    zero = value(0)
    multiply = stage_product(tile, a_pitch, b_pitch)

    @jit_kernel(threads, min_blocks)
    def kernel(x, grad, target, taps, geometry):
        a_shared = cuda.shared.array(a_shared_size, value)
        b_shared = cuda.shared.array(b_shared_size, value)
        sums = cuda.local.array((thread_m, thread_n), value)
        a_values = cuda.local.array(thread_m, value)
        b_values = cuda.local.array(thread_n, value)
        a_next = cuda.local.array(a_loads, value)
        b_next = cuda.local.array(b_loads, value)
        column_taps = cuda.local.array(b_loads, numba.int64)

        positions, out_volume = geometry[G_POSITIONS], geometry[G_OUT_VOLUME]
        out_depth, out_height, out_width = (geometry[G_OUT_DEPTH], geometry[G_OUT_HEIGHT],
                                            geometry[G_OUT_WIDTH])
        depth, height, width = geometry[G_DEPTH], geometry[G_HEIGHT], geometry[G_WIDTH]
        in_per_group, out_per_group = geometry[G_IN_PER_GROUP], geometry[G_OUT_PER_GROUP]
        out_channels, reduction = geometry[G_OUT_CHANNELS], geometry[G_REDUCTION]
        channel_tiles = geometry[G_CHANNEL_TILES]
        stages, stages_per_split = geometry[G_STAGES], geometry[G_STAGES_PER_SPLIT]

        t = cuda.threadIdx.x
        group = numba.uint32(cuda.blockIdx.y) // numba.uint32(channel_tiles)
        m0 = (cuda.blockIdx.y - group * channel_tiles) * block_m
        n0 = cuda.blockIdx.x * block_n
        split = cuda.blockIdx.z
        first_stage = split * stages_per_split
        last_stage = min(stages, first_stage + stages_per_split)

        step = t % block_k  # the position of each stage this thread gathers
        lane = t // block_k
        for j in range(b_loads):
            column_taps[j] = taps[_at(n0 + lane + j * lanes)]
        channel_origin = group * out_per_group + m0 + lane

        tm, tn = t % m_threads, t // m_threads
        for i in range(thread_m):
            for j in range(thread_n):
                sums[i, j] = 0

        for stage in range(first_stage, last_stage + 1):
            if stage < last_stage:
                position = stage * block_k + step
                ow, oh, od, sample = digits(position, out_width, out_height, out_depth)
                d0 = od * geometry[G_STRIDE_D] - geometry[G_PAD_D]
                h0 = oh * geometry[G_STRIDE_H] - geometry[G_PAD_H]
                w0 = ow * geometry[G_STRIDE_W] - geometry[G_PAD_W]
                live = position < positions
                depth_taps = axis_mask(d0, geometry[G_KERNEL_D], geometry[G_DILATION_D], depth)
                if not live:
                    depth_taps = 0
                row_taps = axis_mask(h0, geometry[G_KERNEL_H], geometry[G_DILATION_H], height)
                col_taps = axis_mask(w0, geometry[G_KERNEL_W], geometry[G_DILATION_W], width)
                grad_origin = ((sample * out_channels + channel_origin) * out_volume + position
                               - sample * out_volume)
                for i in range(a_loads):
                    inside = live and m0 + lane + i * lanes < out_per_group
                    a_next[i] = grad[_at(grad_origin + i * lanes * out_volume)] if inside else zero
                x_origin = (((sample * geometry[G_IN_CHANNELS] + group * in_per_group) * depth + d0)
                            * height + h0) * width + w0
                for j in range(b_loads):
                    tap = column_taps[j]
                    inside = tap_inside(tap, depth_taps, row_taps, col_taps)
                    b_next[j] = x[_at(x_origin + (tap & TAP_OFFSET))] if inside else zero
            if stage > first_stage:
                buffer = (stage - 1 - first_stage) & 1
                multiply(a_shared, b_shared, _at(buffer * a_stage + tm * run_m),
                         _at(buffer * b_stage + tn * run_n), sums, a_values, b_values)
            if stage < last_stage:
                buffer = (stage - first_stage) & 1
                a_at = _at(buffer * a_stage + step * a_pitch + lane)
                for i in range(a_loads):
                    a_shared[a_at + _at(i * lanes)] = a_next[i]
                b_at = _at(buffer * b_stage + step * b_pitch + lane)
                for j in range(b_loads):
                    b_shared[b_at + _at(j * lanes)] = b_next[j]
            cuda.syncthreads()

        split_at = split * geometry[G_SPLIT_ELEMENTS]
        for i in range(thread_m):
            local = m0 + tm * run_m + spread(i, run_m, m_threads)
            if local < out_per_group:
                row_at = split_at + (group * out_per_group + local) * reduction
                for j in range(thread_n):
                    column = n0 + tn * run_n + spread(j, run_n, block_n // thread_n)
                    if column < reduction:
                        target[_at(row_at + column)] = sums[i, j]

    return kernel
