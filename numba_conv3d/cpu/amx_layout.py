"""The input of the AMX kernel (``amx_bfloat16.py``), laid out once per call: one grid per stride phase
of the padded volume, every padding mode applied as the index maps of ``slab.py`` give it. Padded
position (a + SD z, b + SH y, c + SW x) is position ``(z * GH + y) * GW + x`` of phase (a, b, c)
(``grid_size``), and each position holds, per chunk of input channels, the chunk's pairs of channels
side by side (a pair of bfloat16 values in one 32-bit word, channel 2k low, 2k + 1 high). A chunk holds
up to 16 pairs, as few as the group's channels split evenly need, rounded up to a power of two so that
no tile row crosses a cache line (``chunking``: 16 channels make rows of 8 pairs). Only the phases some
tap reads are laid out (``phases_read``).
"""
import numpy as np
from numba import njit, prange
from numba.extending import register_jitable

from ..shape_rules import ceil_div, padded_source_index, round_up
from .amx_tiles import TILE_ROW_BYTES, aligned_empty
from .simd_masked import scatter_transposed

# Pairs of input channels a tile row holds at most (64 bytes).
MAX_CHUNK_PAIRS = TILE_ROW_BYTES // 4
# Positions of an input plane whose channel pairs the layout forms at a time (16 pairs of them: 64 KiB).
LAYOUT_BAND_POSITIONS = 1024


@register_jitable
def chunking(in_per_group):
    """(chunks, pairs per chunk): a group's channel pairs split evenly into chunks of at most
    ``MAX_CHUNK_PAIRS``, rounded up to a power of two (so that no tile row crosses a cache line)."""
    pairs = ceil_div(in_per_group, 2)
    chunks = ceil_div(pairs, MAX_CHUNK_PAIRS)
    chunk_pairs = 1
    while chunk_pairs < ceil_div(pairs, chunks):
        chunk_pairs *= 2
    return chunks, chunk_pairs


def grid_size(padded, stride):
    """(D, H, W) of one stride phase of the padded volume: the grid the outputs are positions of."""
    return tuple(ceil_div(extent, step) for extent, step in zip(padded, stride))


def phases_read(kernel, dilation, stride):
    """(3, max stride) uint8: whether some tap reads stride phase a along D (row 0), H (1) and W (2)
    (a strided 1x1x1 kernel reads one phase of each dimension's stride)."""
    read = np.zeros((3, max(stride)), np.uint8)
    for dim in range(3):
        read[dim, [k * dilation[dim] % stride[dim] for k in range(kernel[dim])]] = 1
    return read


@register_jitable
def _pair_words(words, bits, n, low_channel, high_channel, d, first, count):
    """``words[k]`` = the pair of input channels ``low_channel`` (low half) and ``high_channel`` (high
    half; none where it is negative) at element ``first + k`` of plane d of sample ``n``, for ``k``
    below ``count``."""
    low = bits[n, low_channel, d].reshape(-1)[first:first + count]
    high = bits[n, max(high_channel, 0), d].reshape(-1)[first:first + count]
    high_mask = np.uint32(0xFFFF0000) if high_channel >= 0 else np.uint32(0)
    for k in range(count):
        words[k] = np.uint32(low[k]) | np.uint32(high[k]) << 16 & high_mask


@register_jitable
def band(width):
    """(input rows a band of the layout holds, words per pair of its channels): up to
    ``LAYOUT_BAND_POSITIONS`` positions, and a vector more, which a square's last columns read."""
    rows = max(1, LAYOUT_BAND_POSITIONS // width)
    return rows, round_up(rows * width, MAX_CHUNK_PAIRS) + MAX_CHUNK_PAIRS


@register_jitable
def _grid_row(zd, zh, stride, grid, positions):
    """The grid position of padded row (zd, zh)'s first column in its stride phase of W (phase 0)."""
    return (((zd % stride[0]) * stride[1] + zh % stride[1]) * stride[2] * positions
            + (zd // stride[0] * grid[1] + zh // stride[1]) * grid[2])


@njit(parallel=True, cache=True)
def chunk_grids(bits, groups, chunks, chunk_pairs, padded, pad_front, mode, stride, read, grid, positions):
    """bfloat16 input bits (N, C, D, H, W), C-contiguous uint16 -> (N, groups, ``chunks``, stride
    phases x ``positions``, ``chunk_pairs``) uint32: pair k of chunk c of group g holds the group's
    channels 2 (c * chunk_pairs + k) (low half) and the next (high half); padded position (zd, zh, zw)
    is position (z * GH + y) * GW + x of phase (a * SH + b) * SW + c, where zd = z * SD + a, and so on
    along H and W (``grid_size``); zero past the group's channels and in the padding. The phases no
    tap reads (``phases_read``: ``read``) and the positions past the padded volume (read only for grid
    positions that are no output) are left unwritten.

    Per band of rows of an input plane, each pair's words are formed along the band, then squares of
    16 columns x 16 pairs of a row are transposed in registers and stored, one position's pairs at a
    time (``simd_masked.scatter_transposed``); the padding columns another mode fills are copied one
    by one."""
    batch, channels = bits.shape[:2]
    per_group, height, width = channels // groups, bits.shape[3], bits.shape[4]
    lanes = MAX_CHUNK_PAIRS
    # per column of the input, its position in the grids (-1 where no tap reads it), in whole vectors
    column_positions = np.full(round_up(width, lanes), -1, np.int64)
    # per padded column outside the input's (another padding mode's), the input column it holds (-1 for
    # the input's own columns, which ``column_positions`` places, for zeros, and where no tap reads it)
    columns = np.full(padded[2], -1, np.int64)
    for zw in range(padded[2]):
        source = padded_source_index(zw, pad_front[2], width, mode)
        if read[2, zw % stride[2]] and source >= 0:
            if zw - pad_front[2] == source:
                column_positions[source] = zw % stride[2] * positions + zw // stride[2]
            else:
                columns[zw] = source
    band_rows, span = band(width)
    phases = stride[0] * stride[1] * stride[2]
    out = aligned_empty(batch * groups * chunks * phases * positions * chunk_pairs, np.uint32).reshape(
        (batch, groups, chunks, phases * positions, chunk_pairs))
    for job in prange(batch * groups * chunks * padded[0]):
        n, g = job // (groups * chunks * padded[0]), job // (chunks * padded[0]) % groups
        chunk, zd = job // padded[0] % chunks, job % padded[0]
        if not read[0, zd % stride[0]]:
            continue
        target = out[n, g, chunk]
        words = target.reshape(-1)
        # the rows' phases zeroed first (the padding); a phase no tap reads, or a position no output
        # reads (past the padded volume), is left as it was
        for zh in range(padded[1]):
            if read[1, zh % stride[1]]:
                row = _grid_row(zd, zh, stride, grid, positions)
                for phase in range(stride[2]):
                    if read[2, phase]:
                        start = (row + phase * positions) * chunk_pairs
                        words[start:start + grid[2] * chunk_pairs] = 0
        d = padded_source_index(zd, pad_front[0], bits.shape[2], mode)
        if d < 0:
            continue
        first = g * per_group + 2 * chunk * chunk_pairs
        count = min(2 * chunk_pairs, (g + 1) * per_group - first)
        pairs = ceil_div(count, 2)
        # the chunk's pairs along a band of rows, pair by pair: past the group's channels zero, past
        # the chunk's pairs loaded but never stored
        pair_rows = aligned_empty(lanes * span, np.uint32)
        pair_rows[pairs * span:chunk_pairs * span] = 0
        for h0 in range(0, height, band_rows):
            h1 = min(height, h0 + band_rows)
            for pair in range(pairs):
                # a group's odd last channel pairs with zero
                high = first + 2 * pair + 1 if 2 * pair + 1 < count else -1
                _pair_words(pair_rows[pair * span:], bits, n, first + 2 * pair, high, d, h0 * width,
                            (h1 - h0) * width)
            for zh in range(padded[1]):
                h = padded_source_index(zh, pad_front[1], height, mode)
                if not read[1, zh % stride[1]] or h < h0 or h >= h1:
                    continue
                row = _grid_row(zd, zh, stride, grid, positions)
                for w0 in range(0, width, lanes):
                    scatter_transposed(words, column_positions, w0, row, chunk_pairs, chunk_pairs, pair_rows,
                                       (h - h0) * width + w0, span)
                for zw in range(padded[2]):
                    if columns[zw] >= 0:
                        at = row + zw % stride[2] * positions + zw // stride[2]
                        for pair in range(chunk_pairs):
                            target[at, pair] = pair_rows[pair * span + (h - h0) * width + columns[zw]]
    return out
