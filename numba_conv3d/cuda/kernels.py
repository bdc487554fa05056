"""The ``@cuda.jit`` kernels: a shared-memory tiled kernel (two tile shapes) and a direct fallback.

Every output element is summed by one thread in the fixed order (input-channel stage, kd, channel in
stage, kh, kw), without atomics: results are bitwise equal from run to run. Plan numbers arrive as
runtime arguments; only the dtype and the tile shape are compiled in (a handful of variants, cached).
"""
import functools

import numba
import numpy as np
from numba import cuda, from_dtype

from ..shape_rules import padded_source_index
from .tiling import staged_plane, tile_counts, unravel


# Shared-memory offsets as unsigned 64-bit ints, kept unsigned through their sums (a signed operand
# would make Numba promote the sum to float64): Numba then skips its negative-index wraparound, and
# the compiler folds constant offsets into the load instructions.
_at = numba.uint64


def jit_kernel(threads, min_blocks):
    """``cuda.jit`` with launch bounds (``threads`` per block, ``min_blocks`` resident per SM, which
    caps registers per thread); the simulator takes no launch bounds."""
    if numba.config.ENABLE_CUDASIM:
        return cuda.jit(cache=True)
    return cuda.jit(cache=True, launch_bounds=(threads, min_blocks))


class FastLaunch:
    """Launches of a kernel that always takes arguments of the same types, on the default stream:
    after the first launch (through the dispatcher, which compiles or loads the kernel), the compiled
    kernel is launched directly, skipping the dispatcher's typing of every argument and its
    small-grid warning. Where the compiled kernel cannot be reached (the simulator, another
    numba-cuda), every launch goes through the dispatcher. ``grid`` and ``block`` are 3-tuples."""

    def __init__(self, dispatcher):
        self.dispatcher = dispatcher
        self.compiled = None
        self.stream = None

    def __call__(self, grid, block, *args):
        if self.compiled:
            try:
                self.compiled.launch(args, grid, block, self.stream, 0)
                return
            except TypeError:  # a numba-cuda whose compiled kernels launch otherwise (before launching)
                self.compiled = False
        configured = self.dispatcher[grid, block]
        configured(*args)
        if self.compiled is None:
            overloads = list(getattr(self.dispatcher, "overloads", {}).values())
            direct = len(overloads) == 1 and hasattr(overloads[0], "launch") and hasattr(configured,
                                                                                         "stream")
            self.compiled = overloads[0] if direct else False
            self.stream = configured.stream if direct else None


@functools.lru_cache(maxsize=None)
def tiled_kernel(dtype, tile, min_blocks):
    """The tiled kernel for ``dtype`` (a NumPy dtype name) and ``tile`` (a ``tiling.Tile``), compiled
    for at least ``min_blocks`` resident blocks per multiprocessor.

    A block computes a tile of output columns x rows x channels at one output depth. For each stage
    of ``tile.stage_channels`` input channels and each kd, it stages the padded input planes the tile
    reads (every padding mode through ``padded_source_index``) and their weights in shared memory;
    each thread then accumulates ``rows_per_thread x channels_per_thread`` outputs in registers.
    Launch with ``tile.block_shape`` threads and ``tiling.shared_bytes`` of dynamic shared memory.
    """
    value = from_dtype(np.dtype(dtype))
    columns, thread_rows, rows_per_thread, channel_threads, channels_per_thread, stage_channels = tile
    block_rows, block_channels = tile.block_rows, tile.block_channels
    row_lanes = thread_rows * channel_threads
    tap_lanes = columns * row_lanes // block_channels

    @jit_kernel(columns * row_lanes, min_blocks)
    def kernel(x, w, b, out, groups, stride, dilation, front, padded, mode, has_bias):
        batch, _, depth, height, width = x.shape
        out_channels, in_per_group, kernel_d, kernel_h, kernel_w = w.shape
        out_depth, out_height, out_width = out.shape[2], out.shape[3], out.shape[4]
        out_per_group = out_channels // groups
        channel_blocks, row_tiles, column_tiles = tile_counts(
            out_per_group, out_height, out_width, block_channels, block_rows, columns)
        tiles = batch * groups * out_depth * row_tiles * column_tiles * channel_blocks
        staged_columns, plane = staged_plane(block_rows, columns, stride[1], stride[2], kernel_h,
                                             kernel_w, dilation[1], dilation[2])
        staged_rows = plane // staged_columns
        taps = kernel_h * kernel_w
        shared = cuda.shared.array(0, value)
        staged_weights = shared[stage_channels * plane:]
        tx, ty, tz = cuda.threadIdx.x, cuda.threadIdx.y, cuda.threadIdx.z
        row_lane = ty + thread_rows * tz
        thread = tx + columns * row_lane
        channel_lane = thread % block_channels
        tap_lane = thread // block_channels
        thread_inputs = ty * rows_per_thread * stride[1] * staged_columns + tx * stride[2]
        row_step = stride[1] * staged_columns
        weight_step = _at(block_channels)
        column_step = _at(dilation[2])
        row_jump = _at(dilation[1] * staged_columns)
        sums = cuda.local.array((rows_per_thread, channels_per_thread), value)
        weight_row = cuda.local.array(channels_per_thread, value)

        for tile_index in range(cuda.blockIdx.x, tiles, cuda.gridDim.x):
            channel_block, column_tile, row_tile, od, item = unravel(
                tile_index, channel_blocks, column_tiles, row_tiles, out_depth)
            group = item % groups
            n = item // groups
            first_channel = channel_block * block_channels
            out_channel = group * out_per_group + first_channel + channel_lane
            stages_weight = first_channel + channel_lane < out_per_group
            row0 = row_tile * block_rows * stride[1]
            column0 = column_tile * columns * stride[2]
            for r in range(rows_per_thread):
                for j in range(channels_per_thread):
                    sums[r, j] = 0

            for c0 in range(0, in_per_group, stage_channels):
                stage = min(stage_channels, in_per_group - c0)
                for kd in range(kernel_d):
                    source_d = padded_source_index(od * stride[0] + kd * dilation[0], front[0], depth,
                                                   mode)
                    if source_d < 0:
                        continue  # a zero pad plane adds nothing (the branch is uniform per block)
                    cuda.syncthreads()
                    for ch in range(stage):
                        channel = group * in_per_group + c0 + ch
                        for row in range(row_lane, staged_rows, row_lanes):
                            ph = row0 + row
                            source_h = padded_source_index(ph, front[1], height, mode)
                            for column in range(tx, staged_columns, columns):
                                pw = column0 + column
                                source_w = padded_source_index(pw, front[2], width, mode)
                                at = ch * plane + row * staged_columns + column
                                if (ph < padded[1] and pw < padded[2] and source_h >= 0
                                        and source_w >= 0):
                                    shared[_at(at)] = x[n, channel, source_d, source_h, source_w]
                                else:
                                    shared[_at(at)] = 0
                        for tap in range(tap_lane, taps, tap_lanes):
                            kh = tap // kernel_w
                            at = (ch * taps + tap) * block_channels + channel_lane
                            if stages_weight:
                                staged_weights[_at(at)] = w[out_channel, c0 + ch, kd, kh,
                                                                    tap - kh * kernel_w]
                            else:
                                staged_weights[_at(at)] = 0
                    cuda.syncthreads()

                    for ch in range(stage):
                        weights_at = _at(ch * taps * block_channels + tz * channels_per_thread)
                        row_at = _at(ch * plane + thread_inputs)
                        for _ in range(kernel_h):
                            inputs_at = row_at
                            for _ in range(kernel_w):
                                for j in range(channels_per_thread):
                                    weight_row[j] = staged_weights[weights_at + _at(j)]
                                for r in range(rows_per_thread):
                                    v = shared[inputs_at + _at(r * row_step)]
                                    for j in range(channels_per_thread):
                                        sums[r, j] += v * weight_row[j]
                                weights_at += weight_step
                                inputs_at += column_step
                            row_at += row_jump

            ow = column_tile * columns + tx
            for r in range(rows_per_thread):
                oh = row_tile * block_rows + ty * rows_per_thread + r
                for j in range(channels_per_thread):
                    local_channel = first_channel + tz * channels_per_thread + j
                    if oh < out_height and ow < out_width and local_channel < out_per_group:
                        oc = group * out_per_group + local_channel
                        out[n, oc, od, oh, ow] = sums[r, j] + b[oc] if has_bias else sums[r, j]

    return kernel


@functools.lru_cache(maxsize=None)
def direct_kernel(dtype, threads):
    """The fallback kernel for ``dtype`` at ``threads`` per block: one output element per thread,
    input read through the padding index maps from global memory, no shared memory (any kernel size
    or dilation). It takes the tiled kernel's arguments, so one launcher serves both (it needs no
    ``padded``: every output it computes reads inside the padded extents)."""
    value = from_dtype(np.dtype(dtype))

    @jit_kernel(threads, 1)
    def kernel(x, w, b, out, groups, stride, dilation, front, padded, mode, has_bias):
        _, _, depth, height, width = x.shape
        out_channels, in_per_group, kernel_d, kernel_h, kernel_w = w.shape
        _, _, out_depth, out_height, out_width = out.shape
        out_per_group = out_channels // groups
        total = out.shape[0] * out_channels * out_depth * out_height * out_width
        sums = cuda.local.array(1, value)
        for index in range(cuda.grid(1), total, cuda.gridsize(1)):
            ow, oh, od, oc, n = unravel(index, out_width, out_height, out_depth, out_channels)
            first_input = (oc // out_per_group) * in_per_group
            sums[0] = 0
            for c in range(in_per_group):
                for kd in range(kernel_d):
                    source_d = padded_source_index(od * stride[0] + kd * dilation[0], front[0], depth,
                                                   mode)
                    for kh in range(kernel_h):
                        source_h = padded_source_index(oh * stride[1] + kh * dilation[1], front[1],
                                                       height, mode)
                        for kw in range(kernel_w):
                            source_w = padded_source_index(ow * stride[2] + kw * dilation[2],
                                                           front[2], width, mode)
                            if source_d >= 0 and source_h >= 0 and source_w >= 0:
                                sums[0] += (x[n, first_input + c, source_d, source_h, source_w]
                                            * w[oc, c, kd, kh, kw])
            out[n, oc, od, oh, ow] = sums[0] + b[oc] if has_bias else sums[0]

    return kernel


@functools.lru_cache(maxsize=None)
def pad_kernel(dtype, threads):
    """The kernel that writes a padded copy of a 5-D volume (any layout; a plain copy with zero pads):
    one thread per padded element, ``kernel(x, padded, front, mode)``."""
    @jit_kernel(threads, 1)
    def kernel(x, padded, front, mode):
        _, channels, depth, height, width = x.shape
        _, _, padded_d, padded_h, padded_w = padded.shape
        for index in range(cuda.grid(1), padded.size, cuda.gridsize(1)):
            pw, ph, pd, c, n = unravel(index, padded_w, padded_h, padded_d, channels)
            padded[n, c, pd, ph, pw] = x[n, c, padded_source_index(pd, front[0], depth, mode),
                                         padded_source_index(ph, front[1], height, mode),
                                         padded_source_index(pw, front[2], width, mode)]

    return kernel
