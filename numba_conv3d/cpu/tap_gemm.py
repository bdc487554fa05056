"""Convolution as one matrix product per kernel tap, over only the outputs whose tap reads the input
(real dtypes, OpenBLAS).

The deep layers of 3-D networks have small output volumes, where many taps read zero padding: 45% of
them on a 2x7x7 output with a 3x3x3 kernel, half on V-Net's 4x8x8 with 5x5x5. im2col + GEMM
(``gemm.py``) multiplies by those zeros. Here each tap ``t`` is a product of its own: the tap's weights
``W_t`` (C_out/g x C_in/g) times the input its outputs read, gathered as columns (C_in/g x the outputs
of every sample in the tap's box), by OpenBLAS's ``cblas_?gemm`` (90-104 GFLOP/s on one Zen 4 core on
these shapes); the product is added onto those outputs. A tap's box is, along each dimension, the range
of outputs whose tap reads inside the input (``tap_ranges``; every output in the other padding modes,
which read the input everywhere; and where a weight is Inf or NaN, whose product with a zero read from
the padding is NaN: ``register_blocks.skips_padding``).

The weights are packed once per call, tap by tap (``pack_weights``). Tasks are (group, chunk of taps):
a task adds its taps' products, in tap order, into a partial output of its own; the partials are
added in chunk order, then the bias. The chunks depend on the shape alone (``tap_chunks``), so results
are bitwise the same for any thread count. Each output is the sum over its taps of BLAS dot products
over the input channels; the rounding is that of a direct sum over ``C_in/g`` x taps terms.
"""
import numpy as np
from numba import njit, prange

from ..config import TAP_GEMM_MAX_CHUNKS, TAP_GEMM_PARTIAL_BYTES
from . import blas
from .cblas import AS_STORED, gemm, set_local_threads
from .register_blocks import skips_padding
from .slab import index_map



def serves(plan):
    """Whether this algorithm computes ``plan``: a real dtype, with NumPy's OpenBLAS found."""
    return not plan.is_complex and blas.openblas() is not None


def tap_ranges(source_map, taps, stride, dilation, outputs, skip_padding=True):
    """(taps, 2): for each tap along one dimension, the range ``[first, stop)`` of outputs whose tap
    reads inside the input (``source_map``: a padded coordinate's source index, -1 for a zero), or of
    every output without ``skip_padding``; empty ranges as ``[0, 0)``. Padding lies at the ends, so
    each range is contiguous."""
    ranges = np.zeros((taps, 2), np.int64)
    positions = np.arange(outputs) * stride
    for tap in range(taps):
        reads = np.flatnonzero(source_map[positions + tap * dilation] >= -int(not skip_padding))
        if reads.size:
            ranges[tap] = reads[0], reads[-1] + 1
    return ranges


def read_share(plan):
    """The share of the (output, tap) pairs of ``plan`` whose tap reads the input rather than zero
    padding: 1 in the other padding modes."""
    share = 1.0
    if plan.padding_mode != "zeros":
        return share
    for d in range(3):
        taps = np.arange(plan.kernel_size[d]) * plan.dilation[d]
        sources = (np.arange(plan.output_size[d])[:, None] * plan.stride[d] + taps[None, :]
                   - plan.pad_front[d])
        share *= float(np.mean((sources >= 0) & (sources < plan.input_size[d])))
    return share


def reads_evenly(source_map, ranges, stride, dilation):
    """For each tap along one dimension, whether the input indices its outputs' range reads step by
    ``stride`` (no padding read inside the range)."""
    even = np.zeros(len(ranges), np.bool_)
    for tap, (first, stop) in enumerate(ranges):
        sources = source_map[np.arange(first, stop) * stride + tap * dilation]
        steps = sources[0] + np.arange(sources.size) * stride if sources.size else sources
        even[tap] = bool(np.all(sources == steps) and np.all(sources >= 0))
    return even


def tap_chunks(taps, output_bytes):
    """Chunks of taps (as many as ``TAP_GEMM_MAX_CHUNKS``, fewer where their partial outputs,
    ``output_bytes`` each, would pass ``TAP_GEMM_PARTIAL_BYTES``): (chunks, 2) ``[first, stop)``."""
    count = max(1, min(TAP_GEMM_MAX_CHUNKS, taps, TAP_GEMM_PARTIAL_BYTES // max(1, output_bytes)))
    bounds = [taps * chunk // count for chunk in range(count + 1)]
    return np.array(list(zip(bounds[:-1], bounds[1:])), np.int64)


@njit(parallel=True, cache=True)
def pack_weights(weight, groups):
    """Weights (C_out, C_in/g, KD, KH, KW) -> (g, taps, C_out/g, C_in/g), each tap's weights a matrix.
    A task reads one output channel's weights (C_in/g x taps, in cache) tap by tap and writes each
    tap's row whole (a loop writing every tap's plane at once ran 3-5x slower)."""
    out_channels, in_per_group = weight.shape[:2]
    out_per_group = out_channels // groups
    taps = weight.shape[2] * weight.shape[3] * weight.shape[4]
    rows = weight.reshape(out_channels, in_per_group, taps)
    packed = np.empty((groups, taps, out_per_group, in_per_group), weight.dtype)
    for o in prange(out_channels):
        g, local = o // out_per_group, o % out_per_group
        source = rows[o]
        for tap in range(taps):
            target = packed[g, tap, local]
            for c in range(in_per_group):
                target[c] = source[c, tap]
    return packed


@njit(parallel=True, cache=True)
def _tap_partials(x, packed, kernel, stride, dilation, map_d, map_h, map_w, ranges_d, ranges_h, ranges_w,
                  affine_w, chunks, partials, one, gemm_address, set_threads_address, integer):
    """Fill ``partials[g, chunk]`` (N, C_out/g, OD, OH, OW) with the products of the chunk's taps of
    group ``g`` (see the module's docstring), tap by tap: gathers the columns, multiplies them by the
    tap's packed weights (``pack_weights``) and adds the products (``one``: 1 of the dtype). Where
    ``affine_w[kw]``, the columns a tap reads along W step evenly through the input (no padding inside
    its range: a plain strided copy)."""
    groups, chunk_count, batch, out_per_group = partials.shape[:4]
    out_depth, out_height, out_width = partials.shape[4:]
    in_per_group = packed.shape[3]
    box_limit = out_depth * out_height * out_width * batch
    for task in prange(groups * chunk_count):
        g, chunk = task // chunk_count, task % chunk_count
        first_tap, stop_tap = chunks[chunk, 0], chunks[chunk, 1]
        partial = partials[g, chunk]
        flat = partial.reshape(partial.size)
        for q in range(flat.size):
            flat[q] = 0
        columns = np.empty(in_per_group * box_limit, x.dtype)
        products = np.empty(out_per_group * box_limit, x.dtype)
        previous = set_local_threads(set_threads_address, 1)
        for tap in range(first_tap, stop_tap):
            kd, kh, kw = tap // (kernel[1] * kernel[2]), tap // kernel[2] % kernel[1], tap % kernel[2]
            d0, d1, h0, h1 = ranges_d[kd, 0], ranges_d[kd, 1], ranges_h[kh, 0], ranges_h[kh, 1]
            w0, w1 = ranges_w[kw, 0], ranges_w[kw, 1]
            count = (d1 - d0) * (h1 - h0) * (w1 - w0)
            if count == 0:
                continue
            width = batch * count
            run, first_w = w1 - w0, w0 * stride[2] + kw * dilation[2]
            source_w = map_w[first_w]
            for c in range(in_per_group):
                for n in range(batch):
                    target = c * width + n * count
                    for z in range(d0, d1):
                        source_d = map_d[z * stride[0] + kd * dilation[0]]
                        for y in range(h0, h1):
                            source_h = map_h[y * stride[1] + kh * dilation[1]]
                            source = x[n, g * in_per_group + c, max(source_d, 0), max(source_h, 0)]
                            if source_d < 0 or source_h < 0:
                                for j in range(run):
                                    columns[target + j] = 0
                            elif affine_w[kw]:
                                for j in range(run):
                                    columns[target + j] = source[source_w + j * stride[2]]
                            else:
                                for j in range(run):
                                    column = map_w[first_w + j * stride[2]]
                                    columns[target + j] = source[column] if column >= 0 else 0
                            target += run
            gemm(gemm_address, integer, AS_STORED, AS_STORED, out_per_group, width, in_per_group,
                 one, packed[g, tap].ctypes.data, in_per_group, columns.ctypes.data, width,
                 one * 0, products.ctypes.data, width)
            for n in range(batch):
                for o in range(out_per_group):
                    source_index = o * width + n * count
                    for z in range(d0, d1):
                        for y in range(h0, h1):
                            target_row = partial[n, o, z, y]
                            for j in range(run):
                                target_row[w0 + j] += products[source_index + j]
                            source_index += run
        set_local_threads(set_threads_address, previous)


@njit(parallel=True, cache=True)
def _add_partials(partials, bias, has_bias, out):
    """``out[n, o] = sum over chunks of partials[g, chunk, n, o % (C_out/g)]`` in chunk order, then
    plus ``bias[o]``."""
    groups, chunk_count, batch, out_per_group = partials.shape[:4]
    positions = out.shape[2] * out.shape[3] * out.shape[4]
    for unit in prange(batch * groups * out_per_group):
        n, o = unit // (groups * out_per_group), unit % (groups * out_per_group)
        g, local = o // out_per_group, o % out_per_group
        target = out[n, o].reshape(positions)
        for chunk in range(chunk_count):
            source = partials[g, chunk, n, local].reshape(positions)
            if chunk == 0:
                for q in range(positions):
                    target[q] = source[q]
            else:
                for q in range(positions):
                    target[q] += source[q]
        if has_bias:
            for q in range(positions):
                target[q] += bias[o]


def compute(x, weight, bias, has_bias, out, stride, dilation, pad_front, padded, mode, groups):
    """Fill the batched ``out`` from the batched ``x``, one product per tap (see the module's
    docstring); the arguments are the plan's numbers, as :func:`numba_conv3d.cpu.direct.compute`
    takes them."""
    library = blas.openblas()
    kernel = weight.shape[2:]
    maps = [index_map(padded[d], pad_front[d], x.shape[2 + d], mode) for d in range(3)]
    skip = skips_padding(x, weight, padded, mode)
    ranges = [tap_ranges(maps[d], kernel[d], stride[d], dilation[d], out.shape[2 + d], skip)
              for d in range(3)]
    affine_w = reads_evenly(maps[2], ranges[2], stride[2], dilation[2])
    out_per_group = out.shape[1] // groups
    chunks = tap_chunks(int(np.prod(kernel)), out.nbytes)
    partials = np.empty((groups, len(chunks), out.shape[0], out_per_group) + out.shape[2:], x.dtype)
    _tap_partials(x, pack_weights(np.ascontiguousarray(weight), groups), np.array(kernel, np.int64),
                  np.array(stride, np.int64), np.array(dilation, np.int64), *maps, *ranges, affine_w,
                  chunks, partials, x.dtype.type(1), library.gemm_addresses[x.dtype],
                  library.set_local_threads_address, library.integer(0))
    _add_partials(partials, bias, has_bias, out)


def workspace_bytes(plan):
    """Bytes of one task's packed weights, columns and products (the partial outputs are counted by
    the call's allocations)."""
    itemsize = np.dtype(plan.dtype).itemsize
    taps = int(np.prod(plan.kernel_size))
    box = plan.batch * int(np.prod(plan.output_size))
    chunk_taps = -(-taps // TAP_GEMM_MAX_CHUNKS)
    return itemsize * (chunk_taps * plan.out_per_group * plan.in_per_group
                       + (plan.in_per_group + plan.out_per_group) * box)
