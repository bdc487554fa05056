"""The weight gradient vectorized over output channels, on the CPU, for float32 and float64.

``grad_weight[o, i, t]`` is the sum over output positions of ``grad_output[n, o]`` times the padded
input channel i seen from tap t. ``weight_grad.py`` lays its SIMD vectors along output positions and
ends every sum with a horizontal add; here, as oneDNN's backward-weights kernels do, the vectors lie
along output channels. The output gradient is transposed to (positions x output channels) and the
padded input to (padded positions x input channels), each group's channels padded with zeros to whole
blocks; a register block of ``CHANNEL_WEIGHT_GRAD_COLUMNS`` input channels x
``CHANNEL_WEIGHT_GRAD_VECTORS`` vectors of output channels of one tap adds, at each output position,
the input channels' elements broadcast times the output gradient's vectors (``simd.fma_tile``): 2
vector loads and 8 broadcasts per 16 multiply-adds (float32 AVX-512), every sum whole in one lane.
Where the output channels fill wider blocks (``block_shape``), 6 input channels x 4 vectors: 10 loads
per 24 multiply-adds.

A task owns a range of output channel blocks of a group and a range of units (block of input channels,
tap), the pair of range counts chosen to read the padded input and the output gradient the fewest
times (``task_splits``). It walks the output rows in chunks of about ``CHANNEL_WEIGHT_GRAD_CHUNK``
positions, whose output gradient for one block stays in L1 while the task's units add the chunk; a
unit's block rests in a small array between chunks. Rows whose tap reads zero padding along D or H are
skipped (not where the output gradient holds an Inf or NaN, whose product with a padding zero is
NaN). Each weight element is summed by one thread over the positions in order, with fused
multiply-adds: bitwise the same for any thread count, block shape and task split.
"""
import math
import numpy as np
from numba import njit, prange

from ..config import (CHANNEL_WEIGHT_GRAD_CHUNK, CHANNEL_WEIGHT_GRAD_COLUMNS, CHANNEL_WEIGHT_GRAD_VECTORS,
                      CHANNEL_WEIGHT_GRAD_WIDE_COLUMNS, CHANNEL_WEIGHT_GRAD_WIDE_VECTORS, VECTOR_BYTES)
from ..grad_crossovers import (CHANNEL_WEIGHT_GRAD_MIN_IN, CHANNEL_WEIGHT_GRAD_MIN_OUT,
                               CHANNEL_WEIGHT_GRAD_MIN_POSITIONS)
from ..shape_rules import ceil_div, round_up
from .register_blocks import skips_padding
from .simd import fma_tile, load_block, store_block, vector_lanes, zero_block
from .tile_spans import SPAN_ALL
from .slab import index_map, tap_sources
from .tasks import split_range, tasks_wanted

COLUMNS = CHANNEL_WEIGHT_GRAD_COLUMNS
VECTORS = CHANNEL_WEIGHT_GRAD_VECTORS
WIDE_COLUMNS = CHANNEL_WEIGHT_GRAD_WIDE_COLUMNS
WIDE_VECTORS = CHANNEL_WEIGHT_GRAD_WIDE_VECTORS
# Output positions per slice of the output gradient's transposition (one task each).
_TRANSPOSE_POSITIONS = 1024


def preferred(plan):
    """Whether the weight gradient of ``plan`` (a forward plan) takes this kernel: float32 or float64,
    enough channels per group on both sides, more than one tap and enough output positions
    (``grad_crossovers.CHANNEL_WEIGHT_GRAD_MIN_*``, measured against the other routes)."""
    return (plan.dtype in ("float32", "float64") and plan.in_per_group >= CHANNEL_WEIGHT_GRAD_MIN_IN
            and plan.out_per_group >= CHANNEL_WEIGHT_GRAD_MIN_OUT and math.prod(plan.kernel_size) > 1
            and plan.batch * math.prod(plan.output_size) >= CHANNEL_WEIGHT_GRAD_MIN_POSITIONS)


@njit(parallel=True, cache=True)
def _transposed_grad(grad, groups, width, out):
    """``out`` (flat (g, N * positions, ``width``)) at ``[g, n * positions + q, o]`` = ``grad[n, g * O +
    o, q]`` (q: flattened output position, O: output channels per group), zeros past O. Flat indices
    throughout: a view per row would count references atomically, for a few elements each."""
    batch, channels = grad.shape[:2]
    per_group = channels // groups
    positions = grad.shape[2] * grad.shape[3] * grad.shape[4]
    flat = grad.reshape(-1)
    slices = (positions + _TRANSPOSE_POSITIONS - 1) // _TRANSPOSE_POSITIONS
    for job in prange(groups * batch * slices):
        g, n, piece = job // (batch * slices), job // slices % batch, job % slices
        first, stop = piece * _TRANSPOSE_POSITIONS, min(positions, (piece + 1) * _TRANSPOSE_POSITIONS)
        target = (g * batch * positions + n * positions) * width
        for o in range(per_group):
            source = (n * channels + g * per_group + o) * positions
            for q in range(first, stop):
                out[target + q * width + o] = flat[source + q]
        for q in range(first, stop):
            for o in range(per_group, width):
                out[target + q * width + o] = 0


@njit(parallel=True, cache=True)
def _padded_input(x, groups, map_d, map_h, map_w, out):
    """``out`` (N, g, channels per block-padded group, PD, PH, PW) = the padded input (index maps
    ``map_*``, -1 for a zero) of each group's input channels, zero channels past the group's."""
    batch, channels = x.shape[:2]
    per_group = channels // groups
    width, padded_d, padded_h, padded_w = out.shape[2:]
    for job in prange(batch * groups * width * padded_d):
        n, g, c, pd = (job // (groups * width * padded_d), job // (width * padded_d) % groups,
                       job // padded_d % width, job % padded_d)
        plane = out[n, g, c, pd]
        sd = map_d[pd]
        for ph in range(padded_h):
            sh = map_h[ph]
            if c >= per_group or sd < 0 or sh < 0:
                for pw in range(padded_w):
                    plane[ph, pw] = 0
                continue
            source = x[n, g * per_group + c, sd, sh]
            for pw in range(padded_w):
                plane[ph, pw] = source[map_w[pw]] if map_w[pw] >= 0 else 0


@njit(cache=True, inline='always')
def _task(grad_t, padded_x, reads_d, reads_h, out_size, kernel, stride, dilation, input_shape, front_d,
          out_splits, unit_splits, chunk_rows, out, task, columns, vectors):
    """Task ``task`` of :func:`_kernel` in register blocks of ``columns`` input channels x ``vectors``
    SIMD vectors of output channels (compile-time ints)."""
    batch, groups, in_width, padded_d, padded_h, padded_w = input_shape
    out_per_group, in_per_group = out.shape[0] // groups, out.shape[1]
    channel_step = padded_d * padded_h * padded_w
    out_depth, out_height, out_width = out_size
    positions = batch * out_depth * out_height * out_width
    out_width_padded = grad_t.size // (groups * positions)
    block_out = vectors * vector_lanes(grad_t)
    out_blocks, in_blocks = out_width_padded // block_out, in_width // columns
    taps = kernel[0] * kernel[1] * kernel[2]
    units = taps * in_blocks
    rows = batch * out_depth * out_height
    size = columns * block_out
    g, out_split, unit_split = (task // (out_splits * unit_splits), task // unit_splits % out_splits,
                                task % unit_splits)
    ob_first, ob_stop = split_range(out_split, out_blocks, out_splits)
    first, stop = split_range(unit_split, units, unit_splits)
    count = stop - first
    sums = np.zeros((ob_stop - ob_first) * count * size, grad_t.dtype)
    like = zero_block(grad_t, columns, 1, vectors)
    for r0 in range(0, rows, chunk_rows):
        for ob in range(ob_first, ob_stop):
            for u in range(count):
                cb, tap = (first + u) // taps, (first + u) % taps
                kd, kh, kw = tap // (kernel[1] * kernel[2]), tap // kernel[2] % kernel[1], tap % kernel[2]
                at = ((ob - ob_first) * count + u) * size
                acc = load_block(like, sums, at)
                for row in range(r0, min(rows, r0 + chunk_rows)):
                    n, z, y = row // (out_depth * out_height), row // out_height % out_depth, row % out_height
                    if not (reads_d[kd, z] and reads_h[kh, y]):
                        continue
                    pd = z * stride[0] + kd * dilation[0] - front_d
                    ph = y * stride[1] + kh * dilation[1]
                    x_at = ((((n * groups + g) * in_width + cb * columns) * padded_d + pd) * padded_h
                            + ph) * padded_w + kw * dilation[2]
                    g_at = (g * positions + row * out_width) * out_width_padded + ob * block_out
                    for w in range(out_width):
                        acc = fma_tile(acc, padded_x, x_at + w * stride[2], channel_step, 0, columns, grad_t,
                                       g_at + w * out_width_padded, vectors, SPAN_ALL)
                store_block(acc, sums, at)
    for ob in range(ob_first, ob_stop):
        for u in range(count):
            cb, tap = (first + u) // taps, (first + u) % taps
            at = ((ob - ob_first) * count + u) * size
            for c in range(min(columns, in_per_group - cb * columns)):
                for k in range(min(block_out, out_per_group - ob * block_out)):
                    out[g * out_per_group + ob * block_out + k, cb * columns + c, tap] = sums[
                        at + c * block_out + k]


@njit(parallel=True, cache=True)
def _kernel(grad_t, padded_x, reads_d, reads_h, out_size, kernel, stride, dilation, input_shape, front_d,
            out_splits, unit_splits, chunk_rows, out, wide):
    """Fill ``out`` (C_out, C_in / g, taps) from the transposed output gradient ``grad_t`` (flat
    (g, positions, block-padded output channels)) and the padded input ``padded_x`` (flat
    ``input_shape``: (N, g, block-padded input channels, PD, PH, PW), its planes from padded plane
    ``front_d`` on), in the wide register blocks or the narrow ones (``block_shape``); ``reads_d[kd,
    od]`` and ``reads_h[kh, oh]``: whether that tap and output plane (row) read the input (False only
    where padding is skipped). A task of a group takes one of ``out_splits`` ranges of output channel
    blocks and one of ``unit_splits`` ranges of units (block of input channels, tap), numbered channel
    block first, so that a range of units reads few channels."""
    for task in prange(input_shape[1] * out_splits * unit_splits):
        if wide:
            _task(grad_t, padded_x, reads_d, reads_h, out_size, kernel, stride, dilation, input_shape,
                  front_d, out_splits, unit_splits, chunk_rows, out, task, WIDE_COLUMNS, WIDE_VECTORS)
        else:
            _task(grad_t, padded_x, reads_d, reads_h, out_size, kernel, stride, dilation, input_shape,
                  front_d, out_splits, unit_splits, chunk_rows, out, task, COLUMNS, VECTORS)


def _block_channels(vectors, itemsize):
    """Output channels of a register block of ``vectors`` SIMD vectors."""
    return vectors * VECTOR_BYTES // itemsize


def block_shape(out_per_group, itemsize):
    """(input channels, SIMD vectors of output channels) of the kernel's register blocks for
    ``out_per_group`` output channels per group: the wide blocks (``CHANNEL_WEIGHT_GRAD_WIDE_*``) where
    those channels fill at least two of their output blocks and leave no more lanes empty than the
    narrow blocks do."""
    wide_block, narrow_block = (_block_channels(vectors, itemsize) for vectors in (WIDE_VECTORS, VECTORS))
    if (out_per_group >= 2 * wide_block
            and round_up(out_per_group, wide_block) == round_up(out_per_group, narrow_block)):
        return WIDE_COLUMNS, WIDE_VECTORS
    return COLUMNS, VECTORS


def task_splits(out_blocks, units, groups, input_bytes, grad_bytes):
    """(ranges of output channel blocks, ranges of units) per group for ``tasks_wanted()`` tasks in all
    (as many as the blocks and units allow), the output blocks in ranges of equal size: of those, the
    pair that reads the fewest bytes, as each range of output blocks reads the padded input
    (``input_bytes`` a group) once and each range of units the output gradient (``grad_bytes`` a group)
    once. One task per output block read a 64 -> 128 channel layer's 14 MB padded input 8 times where 2
    ranges of 2 blocks x 4 of units read it twice and the 6 MB output gradient 4 times; unequal ranges
    (5 blocks in 4) left a thread idle for a third of the call."""
    wanted = min(ceil_div(tasks_wanted(), groups), out_blocks * units)
    best = None
    for out_splits in range(1, out_blocks + 1):
        unit_splits = min(units, ceil_div(wanted, out_splits))
        if out_blocks % out_splits or out_splits * unit_splits < wanted:
            continue
        traffic = input_bytes * out_splits + grad_bytes * unit_splits
        if best is None or traffic < best[0]:
            best = (traffic, out_splits, unit_splits)
    return best[1:]


def _reads(source_map, taps, outputs, stride, dilation, skip):
    """(taps, outputs): whether tap k of output j reads the input along one dimension (every pair
    without ``skip``)."""
    return (tap_sources(source_map, taps, outputs, stride, dilation) >= 0) | (not skip)


def _padded(x, groups, maps, padded, in_per_group, columns):
    """The padded input, (N, g, channels of a group up to whole blocks of ``columns``, PD, PH, PW)."""
    out = np.empty((x.shape[0], groups, round_up(in_per_group, columns)) + tuple(padded), x.dtype)
    _padded_input(x, groups, *maps, out)
    return out


def weight_grad(x, grad, weight_shape, stride, dilation, pad_front, padded, mode, groups):
    """The weight's gradient (``weight_shape``) from the batched input ``x`` and output gradient ``grad``
    (float32 or float64, C-contiguous); the arguments are the plan's numbers, as
    :func:`numba_conv3d.cpu.weight_grad.weight_grad` takes them."""
    kernel = tuple(weight_shape[2:])
    out_per_group, in_per_group = weight_shape[0] // groups, weight_shape[1]
    columns, vectors = block_shape(out_per_group, x.itemsize)
    block_out = _block_channels(vectors, x.itemsize)
    maps = [index_map(padded[d], pad_front[d], x.shape[2 + d], mode) for d in range(3)]
    out_width = round_up(out_per_group, block_out)
    grad_t = np.empty(groups * grad[0, 0].size * grad.shape[0] * out_width, x.dtype)
    _transposed_grad(grad, groups, out_width, grad_t)
    skip = skips_padding(x, grad, padded, mode)
    if skip and tuple(padded[1:]) == x.shape[3:] and in_per_group % columns == 0:
        # Zero pads along D only, never read (their rows are skipped): the input as it is.
        padded_x, front_d = x.reshape((x.shape[0], groups, in_per_group) + x.shape[2:]), pad_front[0]
    else:
        padded_x, front_d = _padded(x, groups, maps, padded, in_per_group, columns), 0
    reads_d = _reads(maps[0], kernel[0], grad.shape[2], stride[0], dilation[0], skip)
    reads_h = _reads(maps[1], kernel[1], grad.shape[3], stride[1], dilation[1], skip)
    out_blocks = out_width // block_out
    units = math.prod(kernel) * (padded_x.shape[2] // columns)
    out_splits, unit_splits = task_splits(out_blocks, units, groups, padded_x[0, 0].nbytes * x.shape[0],
                                          grad_t.nbytes // groups)
    out = np.empty((weight_shape[0], in_per_group, math.prod(kernel)), x.dtype)
    _kernel(grad_t, padded_x.reshape(-1), reads_d, reads_h, np.array(grad.shape[2:], np.int64),
            np.array(kernel, np.int64), np.array(stride, np.int64), np.array(dilation, np.int64),
            np.array(padded_x.shape, np.int64), front_d, out_splits, unit_splits,
            max(1, CHANNEL_WEIGHT_GRAD_CHUNK // grad.shape[4]), out,
            (columns, vectors) == (WIDE_COLUMNS, WIDE_VECTORS))
    return out.reshape(weight_shape)
