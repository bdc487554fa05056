"""bfloat16 convolution on Intel AMX tiles (``amx_tiles.py``): implicit GEMM over flattened positions.

The input of each (sample, group) is laid out once per call as one grid per stride phase of the padded
volume, each position holding its chunk's pairs of input channels (``amx_layout.py``). Output (od, oh,
ow) is grid position ``p = (od * GH + oh) * GW + ow``, and its tap (kd, kh, kw) reads the tap's phase at
``p + offset(tap)`` (``_tap_phases``): so 16 consecutive grid positions of one tap and chunk are 16
consecutive rows in memory, one ``tileloadd``, at any stride and dilation. Grid positions that are no
output (columns past OW, rows past OH) are computed and thrown away: on a 14x14 plane with k3, 28% more
positions; on 4x4, 2.3x.

A task holds 32 positions x 32 output channels in four float32 tiles and, per chunk and tap, loads two
tiles of input (16 positions each) and two of weights (the chunk's pairs x 16 output channels, packed
once in that order and kept between calls, ``packed_weights.py``) and multiplies each pair
(``tdpbf16ps``); tasks split the batch, groups, blocks of 32 output channels and the positions. The
tiles go to a float32 scratch; each square of 16 positions x 16 channels is shifted by the bias,
transposed in registers, rounded once and stored along the runs of outputs its positions hold by
masked stores (``simd_masked.store_transposed_runs``). Each output is summed in one order (chunk, tap,
pairs inside the instruction) whatever the thread count.
"""
import functools
import math

import numpy as np
from numba import njit, prange
from numba.extending import register_jitable

from ..config import TASKS_PER_THREAD
from ..shape_rules import ceil_div, round_up
from . import packed_weights
from ..environment import has_amx_bfloat16
from .amx_layout import MAX_CHUNK_PAIRS, band, chunk_grids, chunking, grid_size, phases_read
from .amx_tiles import (TILE_ROW_BYTES, TILE_ROWS, aligned_zeros, load_config, release_tiles, tile_config,
                        tile_dot, tile_load, tile_store, tile_zero)
from .channel_vectorized import pack_bias
from .simd_masked import store_transposed_runs
from .tasks import thread_count

# Positions and output channels of a task's four sum tiles (2 x 2 tiles of 16 x 16).
BLOCK_POSITIONS = 2 * TILE_ROWS
BLOCK_CHANNELS = 2 * TILE_ROWS
# Squares of 16 positions x 16 channels a block's half of channels stacks.
STACKED_SQUARES = BLOCK_POSITIONS // TILE_ROWS


def serves(plan):
    """bfloat16 operands on a CPU whose AMX tiles this process may use."""
    return plan.dtype == "bfloat16" and has_amx_bfloat16()


def _tap_phases(kernel, dilation, stride, grid):
    """Per tap, (kd, kh, kw) in C order: its stride phase's index and its offset within the phase's
    grid."""
    taps = np.unravel_index(np.arange(math.prod(kernel)), kernel)
    reach = [k * d for k, d in zip(taps, dilation)]
    phase = ((reach[0] % stride[0]) * stride[1] + reach[1] % stride[1]) * stride[2] + reach[2] % stride[2]
    local = ((reach[0] // stride[0]) * grid[1] + reach[1] // stride[1]) * grid[2] + reach[2] // stride[2]
    return phase.astype(np.int64), local.astype(np.int64)


@register_jitable
def _blocks(out_size, grid):
    """Number of grid positions up to the last output's, and of position blocks that cover them."""
    last = ((out_size[0] - 1) * grid[1] + out_size[1] - 1) * grid[2] + out_size[2]
    return last, ceil_div(last, BLOCK_POSITIONS)


def phase_positions(out_size, grid, kernel, dilation, stride):
    """Positions of one stride phase's grid: the phase of the padded volume, or as far as the last
    block's positions read, in whole tiles (every phase and chunk starts on a cache line)."""
    _, blocks = _blocks(out_size, grid)
    reach = blocks * BLOCK_POSITIONS + int(_tap_phases(kernel, dilation, stride, grid)[1].max())
    return round_up(max(math.prod(grid), reach), TILE_ROWS)


def _tap_offsets(kernel, dilation, stride, grid, positions):
    """Per tap, its offset from an output's grid position into a chunk's phases of ``positions``
    each."""
    phase, local = _tap_phases(kernel, dilation, stride, grid)
    return phase * positions + local


@njit(parallel=True, cache=True)
def pack_tiles(weight, groups):
    """bfloat16 weight bits (C_out, C_in/g, KD, KH, KW), C-contiguous uint16 -> a 1-tuple of (g, blocks
    of ``BLOCK_CHANNELS``, chunks, taps, 2, pairs per chunk, 16, 2) uint16 (``chunking``): per block,
    chunk and tap, two weight tiles (the chunk's pairs x 16 output channels x the pair); zero past a
    group's channels. (The kernel multiplies the zero padding, so it needs no finiteness flag.)"""
    out_channels, in_per_group = weight.shape[:2]
    out_per_group = out_channels // groups
    blocks = ceil_div(out_per_group, BLOCK_CHANNELS)
    chunks, chunk_pairs = chunking(in_per_group)
    taps = weight.shape[2] * weight.shape[3] * weight.shape[4]
    bits = weight.reshape(out_channels, in_per_group, taps)
    count = groups * blocks * chunks * taps * 4 * chunk_pairs * TILE_ROWS
    packed = aligned_zeros(count, np.uint16).reshape(
        (groups, blocks, chunks, taps, 2, chunk_pairs, TILE_ROWS, 2))
    for job in prange(groups * blocks * BLOCK_CHANNELS):
        g, block = job // (blocks * BLOCK_CHANNELS), job // BLOCK_CHANNELS % blocks
        lane = job % BLOCK_CHANNELS
        channel = block * BLOCK_CHANNELS + lane
        if channel >= out_per_group:
            continue
        source = bits[g * out_per_group + channel]
        half, column = lane // TILE_ROWS, lane % TILE_ROWS
        for c in range(in_per_group):
            chunk, pair, side = c // (2 * chunk_pairs), c % (2 * chunk_pairs) // 2, c % 2
            for tap in range(taps):
                packed[g, block, chunk, tap, half, pair, column, side] = source[c, tap]
    return (packed,)


@njit(cache=True)
def _configure(chunk_pairs):
    """Load the tile configuration: sums (0-3) 16 x 16 float32, input (4, 5) 16 positions x
    ``chunk_pairs`` pairs, weights (6, 7) ``chunk_pairs`` pairs x 16 output channels."""
    config = tile_config()
    for tile in (4, 5):
        config[16 + 2 * tile] = 4 * chunk_pairs
    for tile in (6, 7):
        config[48 + tile] = chunk_pairs
    load_config(config)


@register_jitable
def _output_runs(p0, out_size, grid, runs):
    """The runs of outputs among the ``BLOCK_POSITIONS`` grid positions from ``p0`` (columns past OW
    and rows past OH are none) into ``runs`` (first position, positions, output index in the sample's
    volume); their number."""
    plane = grid[1] * grid[2]
    count = 0
    j = 0
    while j < BLOCK_POSITIONS:
        p = p0 + j
        od, rest = p // plane, p % plane
        oh, ow = rest // grid[2], rest % grid[2]
        if od >= out_size[0]:
            break
        if oh >= out_size[1]:
            j += plane - rest
        elif ow >= out_size[2]:
            j += grid[2] - ow
        else:
            run = min(BLOCK_POSITIONS - j, out_size[2] - ow)
            runs[count, 0], runs[count, 1] = j, run
            runs[count, 2] = (od * out_size[1] + oh) * out_size[2] + ow
            count += 1
            j += run
    return count


@njit(cache=True)
def _store_half(sums, samples, bias, bias0, channel0, channels, volume, half, runs, run_count):
    """Half ``half`` of a block's float32 ``sums`` (32 grid positions x 32 channels, flat): its 16
    channels from ``channel0 + 16 half``, plus the bias from ``bias0 + 16 half`` on, transposed in
    registers, rounded, and stored into ``samples`` (C_out x ``volume`` of one sample, flat) along the
    block's ``run_count`` runs of outputs (``runs``)."""
    store_transposed_runs(samples, (channel0 + half * TILE_ROWS) * volume, volume,
                          min(TILE_ROWS, channels - half * TILE_ROWS), sums, half * TILE_ROWS, BLOCK_CHANNELS,
                          STACKED_SQUARES, bias, bias0 + half * TILE_ROWS, runs, run_count)


@njit(cache=True)
def _task(x, packed, bias, out, offsets, out_size, grid, n, g, block, first, stop):
    """Position blocks ``[first, stop)`` of output-channel block ``block`` of sample ``n``, group
    ``g``. A block's sums are rounded and stored while the next block's products run, a half every
    so many steps: the vector unit's work overlaps the tile unit's, and the tile stores have long
    completed when the vector loads read them."""
    chunks, taps, chunk_pairs = packed.shape[2], packed.shape[3], packed.shape[5]
    out_per_group = out.shape[1] // packed.shape[0]
    channel0 = g * out_per_group + block * BLOCK_CHANNELS
    channels = min(BLOCK_CHANNELS, out_per_group - block * BLOCK_CHANNELS)
    # a block of at most 16 output channels leaves its second half of tiles out
    both_halves = channels > TILE_ROWS
    halves, steps = 1 + both_halves, chunks * taps
    bias0 = (g * packed.shape[1] + block) * BLOCK_CHANNELS
    grids = x[n, g].reshape(-1)
    weights = packed[g, block].reshape(-1)
    samples = out[n].reshape(-1)
    volume = out.shape[2]
    row_bytes, positions = 4 * chunk_pairs, x.shape[3]
    tile_words = 2 * chunk_pairs * TILE_ROWS
    sum_row_bytes = BLOCK_CHANNELS * 4
    sums = aligned_zeros(BLOCK_POSITIONS * BLOCK_CHANNELS, np.float32)
    # the previous block's runs of outputs
    runs = np.empty((BLOCK_POSITIONS, 3), np.int64)
    _configure(chunk_pairs)
    for position_block in range(first, stop + 1):
        # the halves of the previous block's sums still to store
        pending = run_count = 0
        if position_block > first:
            pending = halves
            run_count = _output_runs((position_block - 1) * BLOCK_POSITIONS, out_size, grid, runs)
        if position_block < stop:
            p0 = position_block * BLOCK_POSITIONS
            tile_zero(0)
            tile_zero(1)
            tile_zero(2)
            tile_zero(3)
            for chunk in range(chunks):
                base = (chunk * positions + p0) * chunk_pairs
                for tap in range(taps):
                    # each load issued just before the first product that reads it, so that the tile
                    # unit overlaps it with the products before
                    a = base + offsets[tap] * chunk_pairs
                    b = (chunk * taps + tap) * 2 * tile_words
                    tile_load(4, grids, a, row_bytes)
                    tile_load(6, weights, b, TILE_ROW_BYTES)
                    tile_dot(0, 4, 6)
                    if both_halves:
                        tile_load(7, weights, b + tile_words, TILE_ROW_BYTES)
                        tile_dot(1, 4, 7)
                    tile_load(5, grids, a + TILE_ROWS * chunk_pairs, row_bytes)
                    tile_dot(2, 5, 6)
                    if both_halves:
                        tile_dot(3, 5, 7)
                    # the halves stored at the middles of equal shares of the steps
                    if pending and chunk * taps + tap >= (2 * (halves - pending) + 1) * steps // (2 * halves):
                        pending -= 1
                        _store_half(sums, samples, bias, bias0, channel0, channels, volume, pending, runs,
                                    run_count)
        while pending:
            pending -= 1
            _store_half(sums, samples, bias, bias0, channel0, channels, volume, pending, runs, run_count)
        if position_block < stop:
            tile_store(0, sums, 0, sum_row_bytes)
            tile_store(1, sums, TILE_ROWS, sum_row_bytes)
            tile_store(2, sums, TILE_ROWS * BLOCK_CHANNELS, sum_row_bytes)
            tile_store(3, sums, TILE_ROWS * BLOCK_CHANNELS + TILE_ROWS, sum_row_bytes)
    release_tiles()


@njit(parallel=True, cache=True)
def _kernel(x, packed, bias, out, offsets, out_size, grid, blocks_per_task):
    """Fill ``out`` (N, C_out, OD * OH * OW) from the chunk grids ``x`` and the packed weight tiles, in
    tasks of ``blocks_per_task`` position blocks."""
    batch, groups = x.shape[:2]
    channel_blocks = packed.shape[1]
    _, position_blocks = _blocks(out_size, grid)
    splits = ceil_div(position_blocks, blocks_per_task)
    for task in prange(batch * groups * channel_blocks * splits):
        split, unit = task % splits, task // splits
        block, unit = unit % channel_blocks, unit // channel_blocks
        g, n = unit % groups, unit // groups
        _task(x, packed, bias, out, offsets, out_size, grid, n, g, block, split * blocks_per_task,
              min(position_blocks, (split + 1) * blocks_per_task))


def blocks_per_task(units, position_blocks, threads):
    """Position blocks per task: all of them where the other splits make ``TASKS_PER_THREAD`` tasks per
    thread, else as many as make that many."""
    splits = min(position_blocks, ceil_div(TASKS_PER_THREAD * threads, units))
    return ceil_div(position_blocks, splits)


@functools.lru_cache(maxsize=256)
def layout(in_per_group, kernel, stride, dilation, padded, out_size):
    """How a call lays out and walks a convolution, kept per shape (0.05 ms a call from Python): the
    grid (``grid_size``), (chunks, pairs per chunk) (``chunking``), the positions of a phase's grid
    (``phase_positions``), the tap offsets (``_tap_offsets``), the number of position blocks and the
    phases read (``phases_read``)."""
    grid = grid_size(padded, stride)
    positions = phase_positions(out_size, grid, kernel, dilation, stride)
    return (grid, chunking(in_per_group), positions, _tap_offsets(kernel, dilation, stride, grid, positions),
            _blocks(out_size, grid)[1], phases_read(kernel, dilation, stride))


def compute(bits, weight, bias, has_bias, out, stride, dilation, pad_front, padded, mode, groups):
    """Fill the batched ``out``, the bits (uint16) of a bfloat16 result (or float32 sums), from the
    bits (uint16, C-contiguous) of the batched bfloat16 input and of the weight, and the float32 bias;
    the weight packed once while its bytes stay the same (``packed_weights.py``).

    The arguments are the plan's numbers, as :func:`numba_conv3d.cpu.direct.compute` takes them.
    """
    if not has_amx_bfloat16():
        raise RuntimeError("AMX tiles with bfloat16 products are not available to this process")
    stride, padded, out_size = tuple(stride), tuple(padded), out.shape[2:]
    grid, (chunks, chunk_pairs), positions, offsets, position_blocks, read = layout(
        weight.shape[1], weight.shape[2:], stride, tuple(dilation), padded, out_size)
    x = chunk_grids(bits, groups, chunks, chunk_pairs, padded, tuple(pad_front), mode, stride, read, grid,
                    positions)
    packed, = packed_weights.packed(weight, (groups,), pack_tiles)
    packed_bias = pack_bias(bias, has_bias, groups, weight.shape[0] // groups, BLOCK_CHANNELS, np.float32)
    per_task = blocks_per_task(bits.shape[0] * groups * packed.shape[1], position_blocks, thread_count())
    _kernel(x, packed, packed_bias, out.reshape(out.shape[:2] + (-1,)), offsets, out_size, grid, per_task)


def workspace_bytes(plan):
    """Scratch bytes one worker thread holds: the layout's channel pairs of a band of input rows, its
    block of float32 sums (each from a cache line, ``aligned_zeros``: up to ``TILE_ROW_BYTES`` elements
    more) and the runs of outputs of a block's positions."""
    span = band(plan.input_size[2])[1]
    return ((MAX_CHUNK_PAIRS * span + BLOCK_CHANNELS * BLOCK_POSITIONS + 2 * TILE_ROW_BYTES) * 4
            + BLOCK_POSITIONS * 3 * 8)


def call_bytes(plan):
    """Scratch bytes a call holds once: the chunk grids of the whole batch."""
    _, (chunks, chunk_pairs), positions = layout(plan.in_per_group, plan.kernel_size, plan.stride,
                                                 plan.dilation, plan.padded_size, plan.output_size)[:3]
    return plan.batch * plan.groups * chunks * math.prod(plan.stride) * positions * chunk_pairs * 4
