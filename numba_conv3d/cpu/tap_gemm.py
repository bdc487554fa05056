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
import math
import numpy as np
from numba import njit, prange
from numba.extending import register_jitable

from ..config import TAP_GEMM_MAX_CHUNKS, TAP_GEMM_PARTIAL_BYTES
from ..grad_crossovers import (TAP_WEIGHT_GRAD_MAX_SHARE, TAP_WEIGHT_GRAD_MIN_CHANNELS,
                               TAP_WEIGHT_GRAD_POSITIONS)
from . import blas
from .cblas import AS_STORED, TRANSPOSED, gemm, set_local_threads
from .register_blocks import skips_padding
from .slab import index_map, tap_sources


def serves(plan):
    """Whether this algorithm computes ``plan``: a real dtype, with NumPy's OpenBLAS found."""
    return not plan.is_complex and blas.openblas() is not None


def prefers_weight_grad(plan):
    """Whether the weight gradient of ``plan`` (a forward plan) is computed tap by tap
    (:func:`weight_grad`) where the kernel vectorized over output channels is not taken: where the
    forward plan takes the tap-by-tap products, or with many channels over a few hundred output
    positions (``grad_crossovers.TAP_WEIGHT_GRAD_*``, measured against GEMM)."""
    if not serves(plan):
        return False
    positions = plan.batch * math.prod(plan.output_size)
    fewest, most = TAP_WEIGHT_GRAD_POSITIONS
    return plan.algorithm == "tap-gemm" or (
        min(plan.in_per_group, plan.out_per_group) >= TAP_WEIGHT_GRAD_MIN_CHANNELS
        and fewest <= positions <= most and read_share(plan) <= TAP_WEIGHT_GRAD_MAX_SHARE)


def tap_ranges(source_map, taps, stride, dilation, outputs, skip_padding=True):
    """(taps, 2): for each tap along one dimension, the range ``[first, stop)`` of outputs whose tap
    reads inside the input (``source_map``: a padded coordinate's source index, -1 for a zero), or of
    every output without ``skip_padding``; empty ranges as ``[0, 0)``. Padding lies at the ends, so
    each range is contiguous."""
    ranges = np.zeros((taps, 2), np.int64)
    sources = tap_sources(source_map, taps, outputs, stride, dilation)
    for tap in range(taps):
        reads = np.flatnonzero(sources[tap] >= -int(not skip_padding))
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


@register_jitable
def _tap_box(tap, kernel, ranges_d, ranges_h, ranges_w):
    """Tap ``tap`` (flattened over the kernel) as (kd, kh, kw) and its box of outputs: first and stop
    along D, H and W."""
    kd, kh, kw = tap // (kernel[1] * kernel[2]), tap // kernel[2] % kernel[1], tap % kernel[2]
    return (kd, kh, kw, ranges_d[kd, 0], ranges_d[kd, 1], ranges_h[kh, 0], ranges_h[kh, 1],
            ranges_w[kw, 0], ranges_w[kw, 1])


@register_jitable
def _gather_input(x, g, box, stride, dilation, map_d, map_h, map_w, affine_w, columns):
    """Fill ``columns`` (C_in/g rows of N x the box's outputs) with the input that tap ``box`` (as
    ``_tap_box`` gives it) reads for group ``g``: zeros where it reads padding. Where ``affine_w[kw]``,
    the columns a tap reads along W step evenly through the input (a plain strided copy)."""
    kd, kh, kw, d0, d1, h0, h1, w0, w1 = box
    batch, in_per_group = x.shape[0], columns.shape[0]
    run, first_w = w1 - w0, w0 * stride[2] + kw * dilation[2]
    source_w = map_w[first_w]
    for c in range(in_per_group):
        target = 0
        row = columns[c]
        for n in range(batch):
            for z in range(d0, d1):
                source_d = map_d[z * stride[0] + kd * dilation[0]]
                for y in range(h0, h1):
                    source_h = map_h[y * stride[1] + kh * dilation[1]]
                    source = x[n, g * in_per_group + c, max(source_d, 0), max(source_h, 0)]
                    if source_d < 0 or source_h < 0:
                        for j in range(run):
                            row[target + j] = 0
                    elif affine_w[kw]:
                        for j in range(run):
                            row[target + j] = source[source_w + j * stride[2]]
                    else:
                        for j in range(run):
                            column = map_w[first_w + j * stride[2]]
                            row[target + j] = source[column] if column >= 0 else 0
                    target += run


@njit(parallel=True, cache=True)
def _tap_partials(x, packed, flipped, kernel, stride, dilation, map_d, map_h, map_w, ranges_d, ranges_h,
                  ranges_w, affine_w, chunks, partials, one, gemm_address, set_threads_address, integer):
    """Fill ``partials[g, chunk]`` (N, C_out/g, OD, OH, OW) with the products of the chunk's taps of
    group ``g`` (see the module's docstring), tap by tap: gathers the columns (``_gather_input``),
    multiplies them by the tap's packed weights (``pack_weights``; where ``flipped``, those of the
    mirrored tap, transposed) and adds the products (``one``: 1 of the dtype)."""
    groups, chunk_count, batch, out_per_group = partials.shape[:4]
    out_depth, out_height, out_width = partials.shape[4:]
    in_per_group = x.shape[1] // groups
    taps = packed.shape[1]
    order = TRANSPOSED if flipped else AS_STORED
    box_limit = out_depth * out_height * out_width * batch
    for task in prange(groups * chunk_count):
        g, chunk = task // chunk_count, task % chunk_count
        partial = partials[g, chunk]
        flat = partial.reshape(partial.size)
        for q in range(flat.size):
            flat[q] = 0
        buffer = np.empty(in_per_group * box_limit, x.dtype)
        products = np.empty(out_per_group * box_limit, x.dtype)
        set_local_threads(set_threads_address, 1)
        for tap in range(chunks[chunk, 0], chunks[chunk, 1]):
            box = _tap_box(tap, kernel, ranges_d, ranges_h, ranges_w)
            d0, d1, h0, h1, w0, w1 = box[3:]
            count = (d1 - d0) * (h1 - h0) * (w1 - w0)
            if count == 0:
                continue
            width = batch * count
            columns = buffer[:in_per_group * width].reshape(in_per_group, width)
            _gather_input(x, g, box, stride, dilation, map_d, map_h, map_w, affine_w, columns)
            weights = packed[g, taps - 1 - tap] if flipped else packed[g, tap]
            gemm(gemm_address, integer, order, AS_STORED, out_per_group, width, in_per_group,
                 one, weights.ctypes.data, packed.shape[3], columns.ctypes.data, width,
                 one * 0, products.ctypes.data, width)
            for o in range(out_per_group):
                source_index = o * width
                for n in range(batch):
                    for z in range(d0, d1):
                        for y in range(h0, h1):
                            target_row = partial[n, o, z, y]
                            for j in range(w1 - w0):
                                target_row[w0 + j] += products[source_index + j]
                            source_index += w1 - w0


@njit(parallel=True, cache=True)
def _tap_weight_grads(x, grad, kernel, stride, dilation, map_d, map_h, map_w, ranges_d, ranges_h,
                      ranges_w, affine_w, result, one, gemm_address, set_threads_address, integer):
    """Fill ``result[g, tap]`` (C_out/g x C_in/g) with the weight gradient of group ``g``'s tap: the
    output gradient over the tap's box of outputs (C_out/g x N x the box) times the input the tap
    reads there (``_gather_input``), transposed; one task per (group, tap)."""
    groups, taps, out_per_group, in_per_group = result.shape
    for task in prange(groups * taps):
        g, tap = task // taps, task % taps
        target = result[g, tap]
        box = _tap_box(tap, kernel, ranges_d, ranges_h, ranges_w)
        d0, d1, h0, h1, w0, w1 = box[3:]
        width = x.shape[0] * (d1 - d0) * (h1 - h0) * (w1 - w0)
        if width == 0:
            for o in range(out_per_group):
                for c in range(in_per_group):
                    target[o, c] = 0
            continue
        columns = np.empty((in_per_group, width), x.dtype)
        _gather_input(x, g, box, stride, dilation, map_d, map_h, map_w, affine_w, columns)
        outputs = np.empty((out_per_group, width), x.dtype)
        for o in range(out_per_group):
            index = 0
            for n in range(x.shape[0]):
                for z in range(d0, d1):
                    for y in range(h0, h1):
                        source = grad[n, g * out_per_group + o, z, y]
                        for j in range(w1 - w0):
                            outputs[o, index + j] = source[w0 + j]
                        index += w1 - w0
        set_local_threads(set_threads_address, 1)
        gemm(gemm_address, integer, AS_STORED, TRANSPOSED, out_per_group, in_per_group, width, one,
             outputs.ctypes.data, width, columns.ctypes.data, width, one * 0, target.ctypes.data,
             in_per_group)


@njit(parallel=True, cache=True)
def _unpack_weights(packed, out):
    """``pack_weights`` undone: (g, taps, C_out/g, C_in/g) -> ``out`` (C_out, C_in/g, taps)."""
    groups, taps, out_per_group, in_per_group = packed.shape
    for o in prange(groups * out_per_group):
        g, local = o // out_per_group, o % out_per_group
        target = out[o]
        for tap in range(taps):
            source = packed[g, tap, local]
            for c in range(in_per_group):
                target[c, tap] = source[c]


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


def _geometry(x, output_size, kernel, stride, dilation, pad_front, padded, mode, skip):
    """The index maps, each tap's range of outputs per dimension (every output unless ``skip``), and
    whether each W tap reads evenly, as the jitted tasks take them."""
    maps = [index_map(padded[d], pad_front[d], x.shape[2 + d], mode) for d in range(3)]
    ranges = [tap_ranges(maps[d], kernel[d], stride[d], dilation[d], output_size[d], skip)
              for d in range(3)]
    return (np.array(kernel, np.int64), np.array(stride, np.int64), np.array(dilation, np.int64), *maps,
            *ranges, reads_evenly(maps[2], ranges[2], stride[2], dilation[2]))


def _library_arguments(dtype):
    """What the jitted tasks take to call OpenBLAS: 1 of ``dtype``, the addresses of its gemm and of
    the thread-count setter (each task sets its count to 1; the caller puts its own back, as
    ``blas.one_thread`` does), a zero of its integer type."""
    library = blas.openblas()
    return (dtype.type(1), library.gemm_addresses[dtype], library.set_local_threads_address,
            library.integer(0))


def _products(x, weight, flipped, bias, has_bias, out, stride, dilation, pad_front, padded, mode, groups):
    """Fill the batched ``out`` from the batched ``x``, one product per tap, with ``weight`` as given or,
    where ``flipped``, with ``weight`` flipped and channel-swapped (as ``gradients.flipped_transpose``
    makes it) read from its packing without that copy."""
    geometry = _geometry(x, out.shape[2:], weight.shape[2:], stride, dilation, pad_front, padded, mode,
                         skips_padding(x, weight, padded, mode))
    out_per_group = out.shape[1] // groups
    chunks = tap_chunks(math.prod(weight.shape[2:]), out.nbytes)
    partials = np.empty((groups, len(chunks), out.shape[0], out_per_group) + out.shape[2:], x.dtype)
    with blas.one_thread(blas.openblas()):
        _tap_partials(x, pack_weights(np.ascontiguousarray(weight), groups), flipped, *geometry, chunks,
                      partials, *_library_arguments(x.dtype))
    _add_partials(partials, bias, has_bias, out)


def compute(x, weight, bias, has_bias, out, stride, dilation, pad_front, padded, mode, groups):
    """Fill the batched ``out`` from the batched ``x``, one product per tap (see the module's
    docstring); the arguments are the plan's numbers, as :func:`numba_conv3d.cpu.direct.compute`
    takes them."""
    _products(x, weight, False, bias, has_bias, out, stride, dilation, pad_front, padded, mode, groups)


def correlate_flipped(x, weight, bias, has_bias, out, stride, dilation, pad_front, padded, mode, groups):
    """:func:`compute` with the weight ``gradients.flipped_transpose(weight, groups, False)``, given
    ``weight`` (C_out, C_in/g, K...) unflipped: the input gradient's correlation, where each tap's
    product takes the mirrored tap's packed weights transposed (a deep layer's flipped copy cost as
    much as a quarter of its products)."""
    _products(x, weight, True, bias, has_bias, out, stride, dilation, pad_front, padded, mode, groups)


def weight_grad(x, grad, weight_shape, stride, dilation, pad_front, padded, mode, groups):
    """The weight's gradient (``weight_shape``) from the batched input ``x`` and output gradient
    ``grad`` (C-contiguous), one product per tap over the outputs whose tap reads the input (every
    output where ``grad`` holds an Inf or NaN, whose product with padding's zero is NaN)."""
    kernel = weight_shape[2:]
    geometry = _geometry(x, grad.shape[2:], kernel, stride, dilation, pad_front, padded, mode,
                         skips_padding(x, grad, padded, mode))
    out_per_group = weight_shape[0] // groups
    taps = math.prod(kernel)
    per_tap = np.empty((groups, taps, out_per_group, weight_shape[1]), x.dtype)
    with blas.one_thread(blas.openblas()):
        _tap_weight_grads(x, grad, *geometry, per_tap, *_library_arguments(x.dtype))
    result = np.empty((weight_shape[0], weight_shape[1], taps), x.dtype)
    _unpack_weights(per_tap, result)
    return result.reshape(weight_shape)


def workspace_bytes(plan):
    """Bytes of one task's columns and products, plus the call's partial outputs (allocated once per
    call, counted here per thread: an overestimate). The packed weights are the working copy of the
    weights that the planner counts apart."""
    itemsize = np.dtype(plan.dtype).itemsize
    taps = math.prod(plan.kernel_size)
    positions = plan.batch * math.prod(plan.output_size)
    output_bytes = plan.out_channels * positions * itemsize
    partials = len(tap_chunks(taps, output_bytes)) * output_bytes
    return itemsize * (plan.in_per_group + plan.out_per_group) * positions + partials
