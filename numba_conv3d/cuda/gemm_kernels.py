"""The implicit-GEMM ``@cuda.jit`` kernel: a convolution as a matrix product computed tile by tile,
never materialising the im2col matrix.

Rows of the product are output positions (batch folded in), columns output channels of one group, and
the reduction runs over input channels x taps of that group: tap by tap (``block_k`` input channels of
one tap per stage, one padding test per stage, weights read from a transposed copy), or in the weight's
own memory order (each step's tap read from a packed taps table and tested against per-axis validity
masks computed once per tile). A block computes a ``block_m x block_n`` tile of the product,
``block_k`` reduction steps per stage: it gathers the stage's input columns (zero where a tap falls in
the padding) and weights from global memory into registers while it multiplies the previous stage out
of shared memory (two buffers, one barrier per stage). Each thread keeps ``thread_m x thread_n`` sums
in registers, read from shared memory in runs of four so that the loads can be 16 bytes wide.

Every output element is summed by one thread in reduction order; with a split reduction
(``splits > 1``), each split writes its partial sums and a second kernel adds them in split order. No
atomics: results are bitwise equal from run to run. Geometry arrives in a small device array
(``geometry.geometry``), so that a launch passes few arguments and shapes never recompile.
"""
import functools

import numba
import numpy as np
from numba import cuda, from_dtype

from .geometry import (G_CHANNEL_CHUNKS, G_CHANNEL_TILES, G_DEPTH, G_DILATION_D, G_DILATION_H,
                       G_DILATION_W, G_HAS_BIAS, G_HEIGHT, G_IN_CHANNELS, G_IN_PER_GROUP, G_IN_VOLUME,
                       G_KERNEL_D, G_KERNEL_H, G_KERNEL_W, G_OUT_CHANNELS, G_OUT_DEPTH, G_OUT_HEIGHT,
                       G_OUT_PER_GROUP, G_OUT_VOLUME, G_OUT_WIDTH, G_PAD_D, G_PAD_H, G_PAD_W,
                       G_POSITIONS, G_REDUCTION, G_SPLIT_ELEMENTS, G_STAGES, G_STAGES_PER_SPLIT,
                       G_STRIDE_D, G_STRIDE_H, G_STRIDE_W, G_TAPS, G_WIDTH, TAP_COLUMN_SHIFT,
                       TAP_DEPTH_SHIFT, TAP_INDEX, TAP_OFFSET, TAP_ROW_SHIFT)
from .kernels import jit_kernel

_at = numba.uint64
# Positions are below 2**31 (``gemm_plan.applies``): their digits are 32-bit divisions, which the
# compiler inlines, where a 64-bit division is a call.
_u32 = numba.uint32

# Reduction steps of a stage multiplied per pass of the loop NVVM leaves rolled (it unrolls the pass).
UNROLL_STEPS = 2


@cuda.jit(device=True, inline=True)
def digits(position, width, height, depth):
    """Digits of ``position`` in the mixed radix (width, height, depth, unbounded), least significant
    first, in 32-bit arithmetic: an output position's column, row, depth and sample."""
    rest = _u32(position) // _u32(width)
    column = _u32(position) - rest * _u32(width)
    row = rest % _u32(height)
    rest //= _u32(height)
    return column, row, rest % _u32(depth), rest // _u32(depth)


@cuda.jit(device=True, inline=True)
def axis_mask(start, taps, dilation, size):
    """Bit k set where ``start + k * dilation`` lies in ``[0, size)``, for k below ``taps``."""
    mask = 0
    for k in range(taps):
        at = start + k * dilation
        if 0 <= at < size:
            mask |= 1 << k
    return mask


@cuda.jit(device=True, inline=True)
def tap_inside(tap, depth_taps, row_taps, column_taps):
    """1 where the packed ``tap`` (a taps-table entry) lands inside the input for a position whose
    per-axis validity masks are given, else 0."""
    return ((depth_taps >> ((tap >> TAP_DEPTH_SHIFT) & TAP_INDEX))
            & (row_taps >> ((tap >> TAP_ROW_SHIFT) & TAP_INDEX))
            & (column_taps >> ((tap >> TAP_COLUMN_SHIFT) & TAP_INDEX)) & 1)


@cuda.jit(device=True, inline=True)
def gathered_position(position, group, geometry):
    """Where the thread that gathers the input column of output ``position`` in ``group`` reads: the
    flat offset of the position's first tap in the group's first input channel, and per axis the bits
    of the taps that land inside the input (``axis_mask``; none for a position past the end), so that a
    tap's test is three shifts (``tap_inside``)."""
    depth, height, width = geometry[G_DEPTH], geometry[G_HEIGHT], geometry[G_WIDTH]
    ow, oh, od, sample = digits(position, geometry[G_OUT_WIDTH], geometry[G_OUT_HEIGHT],
                                geometry[G_OUT_DEPTH])
    d0 = od * geometry[G_STRIDE_D] - geometry[G_PAD_D]
    h0 = oh * geometry[G_STRIDE_H] - geometry[G_PAD_H]
    w0 = ow * geometry[G_STRIDE_W] - geometry[G_PAD_W]
    origin = (((sample * geometry[G_IN_CHANNELS] + group * geometry[G_IN_PER_GROUP]) * depth + d0)
              * height + h0) * width + w0
    depth_taps = axis_mask(d0, geometry[G_KERNEL_D], geometry[G_DILATION_D], depth)
    if position >= geometry[G_POSITIONS]:
        depth_taps = 0
    return (origin, depth_taps, axis_mask(h0, geometry[G_KERNEL_H], geometry[G_DILATION_H], height),
            axis_mask(w0, geometry[G_KERNEL_W], geometry[G_DILATION_W], width))


@cuda.jit(device=True, inline=True)
def block_origin(block_m, block_n, geometry):
    """Where this block's tile lies: (group, first position, first output channel of the group, split,
    first stage, end of its stages), from the grid (position tiles, groups x channel tiles, splits)."""
    channel_tiles = geometry[G_CHANNEL_TILES]
    group = _u32(cuda.blockIdx.y) // _u32(channel_tiles)
    split = cuda.blockIdx.z
    first_stage = split * geometry[G_STAGES_PER_SPLIT]
    return (group, cuda.blockIdx.x * block_m, (cuda.blockIdx.y - group * channel_tiles) * block_n, split,
            first_stage, min(geometry[G_STAGES], first_stage + geometry[G_STAGES_PER_SPLIT]))


@cuda.jit(device=True, inline=True)
def stage_tap(stage, block_k, taps, depth_taps, row_taps, column_taps, geometry):
    """A tap-by-tap stage's tap: (its index, the stage's first input channel, its packed taps-table entry,
    1 where it lands inside the input for this thread's position, else 0)."""
    chunks = geometry[G_CHANNEL_CHUNKS]
    tap_index = _u32(stage) // _u32(chunks)
    tap = taps[_at(tap_index)]
    return (tap_index, _u32((stage - tap_index * chunks) * block_k), tap,
            tap_inside(tap, depth_taps, row_taps, column_taps))


@cuda.jit(device=True, inline=True)
def spread(index, run, lanes):
    """Offset of a thread's ``index``-th sum along one side of the tile, from its first: sums come in
    runs of ``run`` adjacent elements (read by one wide load), ``lanes`` threads' runs apart."""
    return index % run + (index // run) * lanes * run


@functools.lru_cache(maxsize=None)
def stage_product(tile, a_pitch, b_pitch):
    """The device function that adds a staged stage's product to a thread's sums:
    ``multiply(a_shared, b_shared, a_at, b_at, sums, a_values, b_values)``, for each of ``tile.block_k``
    steps reading ``thread_m`` values of the stage's rows of ``a_pitch`` elements (from ``a_at``, the
    thread's first) and ``thread_n`` of rows of ``b_pitch`` (from ``b_at``) into registers, then adding
    their outer product to ``sums``."""
    block_k, thread_m, thread_n = tile.block_k, tile.thread_m, tile.thread_n
    m_threads, n_threads = tile.block_m // thread_m, tile.block_n // thread_n
    run_m, run_n = min(4, thread_m), min(4, thread_n)
    unroll = min(UNROLL_STEPS, block_k)

    @cuda.jit(device=True, inline=True)
    def multiply(a_shared, b_shared, a_at, b_at, sums, a_values, b_values):
        for step in range(0, block_k, unroll):
            # a constant inner trip count: NVVM unrolls it, where it keeps a loop of block_k
            for kk in range(step, step + unroll):
                for i in range(thread_m):
                    a_values[i] = a_shared[a_at + _at(kk * a_pitch + spread(i, run_m, m_threads))]
                for j in range(thread_n):
                    b_values[j] = b_shared[b_at + _at(kk * b_pitch + spread(j, run_n, n_threads))]
                for i in range(thread_m):
                    for j in range(thread_n):
                        sums[i, j] += a_values[i] * b_values[j]

    return multiply


@functools.lru_cache(maxsize=None)
def implicit_gemm_kernel(dtype, tile, min_blocks, tap_major):
    """The implicit-GEMM kernel for ``dtype`` (a real NumPy dtype name) and ``tile`` (a
    ``gemm_plan.GemmTile``), compiled for at least ``min_blocks`` resident blocks per multiprocessor,
    reducing tap by tap or in the weight's order (``tap_major``, see ``gemm_plan.tap_major``).

    Launch on grid ``(position tiles, groups x channel tiles, splits)`` with ``tile.threads`` threads:
    ``kernel(x, w, b, target, taps, geometry)`` with ``x``, ``w`` and ``target`` flat C-order views;
    ``w`` is the weight, or tap by tap its ``transposed_weight_kernel`` copy. ``target`` is the output
    (one split) or the split workspace (``splits`` partial outputs).
    """
    value = from_dtype(np.dtype(dtype))
    block_m, block_n, block_k, thread_m, thread_n = tile
    threads = tile.threads
    m_threads, n_threads = block_m // thread_m, block_n // thread_n
    run_m, run_n = min(4, thread_m), min(4, thread_n)
    a_rows = threads // block_m  # reduction rows of a stage one pass of the block gathers
    a_loads = block_k // a_rows
    b_columns = threads // block_k  # weights in the weight's order: columns of block_k steps
    b_loads = block_n // b_columns
    b_rows = threads // block_n  # transposed weights: rows of block_n output channels
    a_stage = block_k * block_m
    b_pitch = tile.weight_pitch
    b_stage = block_k * b_pitch
    zero = value(0)
    multiply = stage_product(tile, block_m, b_pitch)
    a_shared_size, b_shared_size = 2 * a_stage, 2 * b_stage  # shared shapes must be constants

    @jit_kernel(threads, min_blocks)
    def kernel(x, w, b, target, taps, geometry):
        a_shared = cuda.shared.array(a_shared_size, value)
        b_shared = cuda.shared.array(b_shared_size, value)
        sums = cuda.local.array((thread_m, thread_n), value)
        a_values = cuda.local.array(thread_m, value)
        b_values = cuda.local.array(thread_n, value)
        a_next = cuda.local.array(a_loads, value)
        b_next = cuda.local.array(b_loads, value)

        positions = geometry[G_POSITIONS]
        out_volume = geometry[G_OUT_VOLUME]
        in_per_group, out_per_group = geometry[G_IN_PER_GROUP], geometry[G_OUT_PER_GROUP]
        out_channels, reduction = geometry[G_OUT_CHANNELS], geometry[G_REDUCTION]

        t = cuda.threadIdx.x
        group, m0, n0, split, first_stage, last_stage = block_origin(block_m, block_n, geometry)

        a_origin, depth_taps, row_taps, column_taps = gathered_position(m0 + t % block_m, group,
                                                                        geometry)
        a_row = t // block_m
        # The weight row (output channel) and reduction step this thread stages, in the weight's order;
        # tap by tap, the transposed weights' row (input channel of the stage) and column.
        b_step = t % block_k
        b_channel = n0 + t // block_k
        b_origin = (group * out_per_group + b_channel) * reduction + b_step
        b_row = t // block_n
        b_column = n0 + t % block_n
        in_volume = geometry[G_IN_VOLUME]
        transposed_origin = group * geometry[G_TAPS] * in_per_group * out_per_group + b_column

        tm, tn = t % m_threads, t // m_threads
        for i in range(thread_m):
            for j in range(thread_n):
                sums[i, j] = 0

        for stage in range(first_stage, last_stage + 1):
            if stage < last_stage and tap_major:
                # Offsets within a group's input and the weight fit 32 bits (gemm_plan.applies):
                # truncating each sum lets the compiler do its arithmetic in 32 bits.
                tap_index, c0, tap, inside = stage_tap(stage, block_k, taps, depth_taps, row_taps,
                                                       column_taps, geometry)
                for i in range(a_loads):
                    channel = _u32(c0 + a_row + i * a_rows)
                    offset = _u32((tap & TAP_OFFSET) + channel * in_volume)
                    a_next[i] = x[_at(a_origin + offset)] if inside and channel < in_per_group else zero
                for j in range(b_loads):
                    channel = _u32(c0 + b_row + j * b_rows)
                    offset = _u32(transposed_origin + (tap_index * in_per_group + channel) * out_per_group)
                    live = channel < in_per_group and b_column < out_per_group
                    b_next[j] = w[_at(offset)] if live else zero
            elif stage < last_stage:
                k0 = stage * block_k
                for i in range(a_loads):
                    tap = taps[_at(k0 + a_row + i * a_rows)]
                    inside = tap_inside(tap, depth_taps, row_taps, column_taps)
                    a_next[i] = x[_at(a_origin + (tap & TAP_OFFSET))] if inside else zero
                for j in range(b_loads):
                    inside = (k0 + b_step < reduction
                              and b_channel + j * b_columns < out_per_group)
                    b_next[j] = w[_at(b_origin + k0 + j * b_columns * reduction)] if inside else zero
            if stage > first_stage:
                a_at = _at(((stage - 1 - first_stage) & 1) * a_stage + tm * run_m)
                b_at = _at(((stage - 1 - first_stage) & 1) * b_stage + tn * run_n)
                multiply(a_shared, b_shared, a_at, b_at, sums, a_values, b_values)
            if stage < last_stage:
                a_at = _at(((stage - first_stage) & 1) * a_stage + t % block_m)
                for i in range(a_loads):
                    a_shared[a_at + _at((a_row + i * a_rows) * block_m)] = a_next[i]
                if tap_major:
                    b_at = _at(((stage - first_stage) & 1) * b_stage + b_row * b_pitch + t % block_n)
                    for j in range(b_loads):
                        b_shared[b_at + _at(j * b_rows * b_pitch)] = b_next[j]
                else:
                    b_at = _at(((stage - first_stage) & 1) * b_stage + b_step * b_pitch + t // block_k)
                    for j in range(b_loads):
                        b_shared[b_at + _at(j * b_columns)] = b_next[j]
            cuda.syncthreads()

        has_bias = geometry[G_HAS_BIAS] != 0 and cuda.gridDim.z == 1  # else the split sum adds it
        split_at = split * geometry[G_SPLIT_ELEMENTS]
        for i in range(thread_m):
            position = m0 + tm * run_m + spread(i, run_m, m_threads)
            if position < positions:
                sample = _u32(position) // _u32(out_volume)
                at = split_at + sample * out_channels * out_volume + position - sample * out_volume
                for j in range(thread_n):
                    local = n0 + tn * run_n + spread(j, run_n, n_threads)
                    if local < out_per_group:
                        channel = group * out_per_group + local
                        total = sums[i, j] + b[channel] if has_bias else sums[i, j]
                        target[_at(at + channel * out_volume)] = total

    return kernel


@functools.lru_cache(maxsize=None)
def split_sum_kernel(dtype, threads, kind=None):
    """The kernel that adds ``splits`` partial outputs in split order (and the bias): one thread per
    output element, ``kernel(partials, b, out, geometry)`` with flat ``partials`` and ``out``; for a
    tensor-core product ``kind``, float32 partials, and ``b`` and ``out`` of the kind's stored type
    (``tensor_ops.conversions``), the sum rounded once."""
    from .tensor_ops import conversions

    widened, narrowed = conversions(kind).widened, conversions(kind).narrowed

    @jit_kernel(threads, 1)
    def kernel(partials, b, out, geometry):
        elements = geometry[G_SPLIT_ELEMENTS]
        out_volume, out_channels = geometry[G_OUT_VOLUME], geometry[G_OUT_CHANNELS]
        splits = partials.size // elements
        has_bias = geometry[G_HAS_BIAS] != 0
        for index in range(cuda.grid(1), elements, cuda.gridsize(1)):
            total = partials[index]
            for split in range(1, splits):
                total += partials[split * elements + index]
            if has_bias:
                total += widened(b[(index // out_volume) % out_channels])
            out[index] = narrowed(total)

    return kernel


@functools.lru_cache(maxsize=None)
def transposed_weight_kernel(dtype, threads):
    """The kernel that copies the weight (groups x out_per_group, in_per_group, taps) into the order the
    tap-by-tap reduction stages it: (groups, taps, in_per_group, out_per_group), one thread per
    element, ``kernel(w, transposed, geometry)`` with flat C-order arrays."""
    @jit_kernel(threads, 1)
    def kernel(w, transposed, geometry):
        taps, in_per_group = geometry[G_TAPS], geometry[G_IN_PER_GROUP]
        out_per_group = geometry[G_OUT_PER_GROUP]
        for index in range(cuda.grid(1), w.size, cuda.gridsize(1)):
            tap, channel, out_channel, group = digits(index, taps, in_per_group, out_per_group)
            transposed[_at(((group * taps + tap) * in_per_group + channel) * out_per_group
                           + out_channel)] = w[_at(index)]

    return kernel
