"""The tensor-core implicit-GEMM ``@cuda.jit`` kernel: the product of ``gemm_kernels`` (output positions x
output channels over input channels x taps, tap by tap from a transposed weight copy or in the weight's
order, gathered stage by stage into shared memory while the previous stage multiplies), with each warp's
products on the tensor cores.

Operands are staged as 32-bit units (``tensor_ops``): two adjacent reduction steps of float16 or
bfloat16 bits, or one float32 rounded to TF32. A stage holds ``tile.units`` units of ``block_m``
positions and of ``block_n`` channels, rows of ``tile.pitch`` units. Each warp owns ``frags_m x
frags_n`` products of 16 positions x 8 channels and keeps their float32 sums in registers, four per
thread and product; per step of ``MMA_UNITS`` units it loads its fragments from shared memory and
issues one ``mma.sync`` per product.

Each output is summed in a fixed order, by one warp's products in stage order; the split reduction
writes float32 partial sums that ``gemm_kernels.split_sum_kernel`` adds in split order and rounds. No
atomics: results are bitwise equal from run to run.
"""
import functools

import numba
from numba import cuda

from . import tensor_ops
from .gemm_kernels import _at, _u32, block_origin, gathered_position, stage_tap, tap_inside
from .geometry import (G_HAS_BIAS, G_IN_PER_GROUP, G_IN_VOLUME,
                       G_OUT_CHANNELS, G_OUT_PER_GROUP, G_OUT_VOLUME, G_POSITIONS, G_REDUCTION,
                       G_SPLIT_ELEMENTS, G_TAPS, TAP_OFFSET)
from .kernels import jit_kernel
from .tensor_core_plan import MMA_COLUMNS, MMA_ROWS, MMA_UNITS, STEPS_PER_UNIT


@functools.lru_cache(maxsize=None)
def warp_products(kind, tile):
    """The device function that adds a staged stage's products to a warp's sums:
    ``multiply(a_shared, b_shared, a_at, b_at, sums, a_fragments, b_fragments)``, where ``a_at`` and
    ``b_at`` are the offsets of the thread's first fragment unit (its warp's first row, plus the lane's
    row and unit) in the stage's buffers."""
    frags_m, frags_n, units, pitch = tile.frags_m, tile.frags_n, tile.units, tile.pitch
    mma = tensor_ops.MMA[kind]
    below, right = _at(8 * pitch), _at(4)  # fragment rows g + 8 and units t + 4

    @cuda.jit(device=True, inline=True)
    def multiply(a_shared, b_shared, a_at, b_at, sums, a_fragments, b_fragments):
        for step in range(0, units, MMA_UNITS):
            for i in range(frags_m):
                at = a_at + _at(i * MMA_ROWS * pitch + step)
                a_fragments[i, 0] = a_shared[at]
                a_fragments[i, 1] = a_shared[at + below]
                a_fragments[i, 2] = a_shared[at + right]
                a_fragments[i, 3] = a_shared[at + below + right]
            for j in range(frags_n):
                at = b_at + _at(j * MMA_COLUMNS * pitch + step)
                b_fragments[j, 0] = b_shared[at]
                b_fragments[j, 1] = b_shared[at + right]
            for i in range(frags_m):
                for j in range(frags_n):
                    d0, d1, d2, d3 = mma(a_fragments[i, 0], a_fragments[i, 1], a_fragments[i, 2],
                                         a_fragments[i, 3], b_fragments[j, 0], b_fragments[j, 1],
                                         sums[i, j, 0], sums[i, j, 1], sums[i, j, 2], sums[i, j, 3])
                    sums[i, j, 0], sums[i, j, 1], sums[i, j, 2], sums[i, j, 3] = d0, d1, d2, d3

    return multiply


@functools.lru_cache(maxsize=None)
def tensor_core_kernel(kind, tile, min_blocks, partial, tap_major):
    """The tensor-core kernel of product ``kind`` (a key of ``tensor_core_plan.MMA_KINDS``) and ``tile``
    (a ``tensor_core_plan.TensorCoreTile``), compiled for at least ``min_blocks`` resident blocks per
    multiprocessor, reducing tap by tap or in the weight's order (``tap_major``).

    Launch on grid ``(position tiles, groups x channel tiles, splits)`` with ``tile.threads`` threads:
    ``kernel(x, w, b, target, taps, geometry)``, with ``x``, ``w`` and ``b`` flat C-order views of the
    kind's stored type (``tensor_ops.conversions``) and ``taps`` the plan's taps table
    (``tensor_core_plan.taps``); ``w`` is the weight, or tap by tap its
    ``gemm_kernels.transposed_weight_kernel`` copy. ``target`` is the output in the stored type, or where
    ``partial`` the float32 split workspace (``splits`` partial outputs, without the bias).
    """
    convert = tensor_ops.conversions(kind)
    part, widened = convert.part, convert.widened
    finish = tensor_ops.conversions(None).narrowed if partial else convert.narrowed
    steps = STEPS_PER_UNIT[kind]
    frags_m, frags_n, units, pitch = tile.frags_m, tile.frags_n, tile.units, tile.pitch
    block_m, block_n, threads, warps_m = tile.block_m, tile.block_n, tile.threads, tile.warps_m
    block_k = tile.block_k(kind)
    a_rows = threads // block_m  # units of a position one pass of the block gathers
    a_loads = units // a_rows
    b_rows = threads // units  # weight rows (output channels) one pass stages
    b_loads = block_n // b_rows
    t_rows = threads // block_n  # transposed weights: units of block_n channels one pass stages
    t_loads = units // t_rows
    b_count = t_loads if tap_major else b_loads
    a_stage, b_stage = block_m * pitch, block_n * pitch
    a_shared_size, b_shared_size = 2 * a_stage, 2 * b_stage  # shared shapes must be constants
    multiply = warp_products(kind, tile)
    zero = convert.stored(0)
    unit, single = numba.uint32, numba.float32

    @jit_kernel(threads, min_blocks)
    def kernel(x, w, b, target, taps, geometry):
        a_shared = cuda.shared.array(a_shared_size, unit)
        b_shared = cuda.shared.array(b_shared_size, unit)
        sums = cuda.local.array((frags_m, frags_n, 4), single)
        a_fragments = cuda.local.array((frags_m, 4), unit)
        b_fragments = cuda.local.array((frags_n, 2), unit)
        a_next = cuda.local.array(a_loads, unit)
        b_next = cuda.local.array(b_count, unit)

        positions, out_volume = geometry[G_POSITIONS], geometry[G_OUT_VOLUME]
        out_per_group, out_channels = geometry[G_OUT_PER_GROUP], geometry[G_OUT_CHANNELS]
        reduction = geometry[G_REDUCTION]
        in_per_group, in_volume = geometry[G_IN_PER_GROUP], geometry[G_IN_VOLUME]

        t = cuda.threadIdx.x
        group, m0, n0, split, first_stage, last_stage = block_origin(block_m, block_n, geometry)

        a_origin, depth_taps, row_taps, column_taps = gathered_position(m0 + t % block_m, group,
                                                                        geometry)
        a_unit = t // block_m
        b_unit = t % units
        b_channel = n0 + t // units
        b_origin = (group * out_per_group + b_channel) * reduction
        # tap by tap: the transposed weights' output channel and first unit this thread stages
        t_channel = n0 + t % block_n
        t_unit = t // block_n
        transposed_origin = group * geometry[G_TAPS] * in_per_group * out_per_group + t_channel
        t_live = t_channel < out_per_group
        channels = _u32(in_per_group)  # compared with 32-bit channel indices in 32 bits

        lane, warp = t % 32, t // 32
        g, q = lane // 4, lane % 4
        warp_m = (warp % warps_m) * frags_m * MMA_ROWS
        warp_n = (warp // warps_m) * frags_n * MMA_COLUMNS
        for i in range(frags_m):
            for j in range(frags_n):
                for r in range(4):
                    sums[i, j, r] = 0

        for stage in range(first_stage, last_stage + 1):
            if stage < last_stage and tap_major:
                # Offsets within a group's input and the weight fit 32 bits (gemm_plan.applies).
                tap_index, c0, tap, inside = stage_tap(stage, block_k, taps, depth_taps, row_taps,
                                                       column_taps, geometry)
                for i in range(a_loads):
                    gathered = _u32(0)
                    for s in range(steps):
                        channel = _u32(c0 + (a_unit + i * a_rows) * steps + s)
                        offset = _u32((tap & TAP_OFFSET) + channel * in_volume)
                        live = inside and channel < channels
                        value = x[_at(a_origin + offset)] if live else zero
                        gathered |= part(value, s)
                    a_next[i] = gathered
                for j in range(t_loads):
                    staged = _u32(0)
                    for s in range(steps):
                        channel = _u32(c0 + (t_unit + j * t_rows) * steps + s)
                        offset = _u32(transposed_origin
                                      + (tap_index * in_per_group + channel) * out_per_group)
                        live = channel < channels and t_live
                        value = w[_at(offset)] if live else zero
                        staged |= part(value, s)
                    b_next[j] = staged
            elif stage < last_stage:
                k0 = stage * block_k
                for i in range(a_loads):
                    gathered = _u32(0)
                    for s in range(steps):
                        tap = taps[_at(k0 + (a_unit + i * a_rows) * steps + s)]
                        inside = tap_inside(tap, depth_taps, row_taps, column_taps)
                        value = x[_at(a_origin + (tap & TAP_OFFSET))] if inside else zero
                        gathered |= part(value, s)
                    a_next[i] = gathered
                for j in range(b_loads):
                    live = b_channel + j * b_rows < out_per_group
                    staged = _u32(0)
                    for s in range(steps):
                        k = k0 + b_unit * steps + s
                        at = b_origin + j * b_rows * reduction + k
                        value = w[_at(at)] if live and k < reduction else zero
                        staged |= part(value, s)
                    b_next[j] = staged
            if stage > first_stage:
                buffer = (stage - 1 - first_stage) & 1
                a_at = _at(buffer * a_stage + (warp_m + g) * pitch + q)
                b_at = _at(buffer * b_stage + (warp_n + g) * pitch + q)
                multiply(a_shared, b_shared, a_at, b_at, sums, a_fragments, b_fragments)
            if stage < last_stage:
                buffer = (stage - first_stage) & 1
                a_at = _at(buffer * a_stage + (t % block_m) * pitch + a_unit)
                for i in range(a_loads):
                    a_shared[a_at + _at(i * a_rows)] = a_next[i]
                if tap_major:
                    b_at = _at(buffer * b_stage + (t % block_n) * pitch + t_unit)
                    for j in range(t_loads):
                        b_shared[b_at + _at(j * t_rows)] = b_next[j]
                else:
                    b_at = _at(buffer * b_stage + (t // units) * pitch + b_unit)
                    for j in range(b_loads):
                        b_shared[b_at + _at(j * b_rows * pitch)] = b_next[j]
            cuda.syncthreads()

        has_bias = geometry[G_HAS_BIAS] != 0 and cuda.gridDim.z == 1  # else the split sum adds it
        split_at = split * geometry[G_SPLIT_ELEMENTS]
        # rows (i, half) and columns (j, c) of the thread's sums, sums[i, j, 2 * half + c]: one loop
        # per side, so that NVVM unrolls them and the sums stay in registers
        for row in range(2 * frags_m):
            position = m0 + warp_m + (row >> 1) * MMA_ROWS + g + 8 * (row & 1)
            if position < positions:
                sample = _u32(position) // _u32(out_volume)
                at = split_at + sample * out_channels * out_volume + position - sample * out_volume
                for column in range(2 * frags_n):
                    local = n0 + warp_n + (column >> 1) * MMA_COLUMNS + 2 * q + (column & 1)
                    if local < out_per_group:
                        channel = group * out_per_group + local
                        total = sums[row >> 1, column >> 1, 2 * (row & 1) + (column & 1)]
                        if has_bias:
                            total += widened(b[channel])
                        target[_at(at + channel * out_volume)] = finish(total)

    return kernel
