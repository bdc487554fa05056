"""Winograd F(2, 3) along D for 3x1x1 kernels (the temporal convolutions of (2+1)-D video networks), as
matrix products of whole planes (real dtypes, OpenBLAS).

A 3x1x1 kernel at unit stride convolves along D only: every output plane is a sum over three input
planes of (C_out/g x C_in/g) weight matrices times (C_in/g x H*W) planes. Two consecutive output planes
(a tile) read four padded input planes ``d0 ... d3``; by F(2, 3) (Lavin and Gray 2016) they are

- input points ``(d0 - d2, d1 + d2, d2 - d1, d1 - d3)``, plane by plane;
- weight points ``(w0, (w0 + w1 + w2) / 2, (w0 - w1 + w2) / 2, w2)``, in float64, rounded once;
- four products ``M_p = U_p @ V_p`` by OpenBLAS's gemm, 4 where the per-plane products
  (``plane_gemm.py``) make 6: 1.5x fewer multiplies;
- outputs ``y0 = M0 + M1 + M2``, ``y1 = M1 - M2 - M3``, plus the bias.

A task is (sample, group, tile, block of plane columns): it transforms its four input planes' columns,
makes the four products on one OpenBLAS thread and writes its two output planes' columns, so each output
is computed by one task in a fixed order: bitwise the same for any thread count. The blocks depend on
the shape alone (``column_blocks``). Planes past the padded input (an odd output depth's last tile)
and zero padding read zeros; the other padding modes read their planes through the index map. Where an
output is not finite (an Inf or NaN in the operands, or an overflow), the caller computes the
convolution again by a direct algorithm.

Rounding: one addition in the input points, one rounding of the weight points, two additions in the
outputs, one for the bias: an output is within ``(C_in/g + 5) eps`` of ``|A|^T [sum_c |U_c| |V_c|]``.
"""
import numpy as np
from numba import njit, prange

from ..shape_rules import ceil_div
from . import blas
from .cblas import AS_STORED, gemm, set_local_threads
from .slab import index_map
from .tasks import even_bounds

# Points of a tile along D, and the output planes it holds.
POINTS = 4
TILE = 2
# Plane columns per task: products of (C_out/g x COLUMNS) keep OpenBLAS efficient, and a 56x56 plane
# gives four tasks per tile.
COLUMNS = 1024


def serves(plan):
    """Whether this algorithm computes ``plan``: a real dtype, NumPy's OpenBLAS found, a 3x1x1 kernel at
    unit stride and dilation, no pads along H and W."""
    return (not plan.is_complex and blas.openblas() is not None and plan.kernel_size == (3, 1, 1)
            and plan.stride == (1, 1, 1) and plan.dilation == (1, 1, 1)
            and plan.padded_size[1:] == plan.input_size[1:])


def column_blocks(plane):
    """(blocks, 2): ``[start, stop)`` of a plane's columns per task, from the shape alone."""
    return even_bounds(plane, max(1, ceil_div(plane, COLUMNS)))


def tasks(plan):
    """The tasks of a call: (sample, group, tile, block of plane columns)."""
    return (plan.batch * plan.groups * ceil_div(plan.output_size[0], TILE)
            * column_blocks(plan.output_size[1] * plan.output_size[2]).shape[0])


@njit(cache=True)
def weight_points(weight, groups):
    """Weights (C_out, C_in/g, 3, 1, 1) -> their points (g, 4, C_out/g, C_in/g), in float64, rounded
    once."""
    out_channels, in_per_group = weight.shape[0], weight.shape[1]
    out_per_group = out_channels // groups
    points = np.empty((groups, POINTS, out_per_group, in_per_group), weight.dtype)
    for o in range(out_channels):
        g, row = o // out_per_group, o % out_per_group
        for c in range(in_per_group):
            w0, w1, w2 = (np.float64(weight[o, c, 0, 0, 0]), np.float64(weight[o, c, 1, 0, 0]),
                          np.float64(weight[o, c, 2, 0, 0]))
            points[g, 0, row, c] = w0
            points[g, 1, row, c] = (w0 + w1 + w2) * 0.5
            points[g, 2, row, c] = (w0 - w1 + w2) * 0.5
            points[g, 3, row, c] = w2
    return points


@njit(cache=True)
def _source(depth_map, padded_plane):
    """The input plane a padded plane reads (-1: zeros, also past the padded input)."""
    return depth_map[padded_plane] if padded_plane < depth_map.shape[0] else -1


@njit(parallel=True, cache=True)
def _kernel(x, points, bias, has_bias, out, depth_map, blocks, one, gemm_address, set_threads_address,
            integer, nonfinite):
    """Fill ``out`` (N, C_out, OD, H, W) from ``x`` and the weight ``points``, task by task (see the
    module's docstring); ``nonfinite[task]`` is set where a task wrote a NaN or Inf."""
    out_depth = out.shape[2]
    plane = out.shape[3] * out.shape[4]
    groups, _, out_per_group, in_per_group = points.shape
    depth = x.shape[2]
    tiles = ceil_div(out_depth, TILE)
    block_count = blocks.shape[0]
    for task in prange(nonfinite.shape[0]):
        n, rest = task // (groups * tiles * block_count), task % (groups * tiles * block_count)
        g, rest = rest // (tiles * block_count), rest % (tiles * block_count)
        t, block = rest // block_count, rest % block_count
        first, stop = blocks[block, 0], blocks[block, 1]
        columns = stop - first
        inputs = np.empty((POINTS, in_per_group, columns), x.dtype)
        products = np.empty((POINTS, out_per_group, columns), x.dtype)
        zeros = np.zeros(columns, x.dtype)
        source = x[n, g * in_per_group:(g + 1) * in_per_group].reshape(in_per_group, depth * plane)
        s0, s1 = _source(depth_map, TILE * t), _source(depth_map, TILE * t + 1)
        s2, s3 = _source(depth_map, TILE * t + 2), _source(depth_map, TILE * t + 3)
        for c in range(in_per_group):
            d0 = source[c, s0 * plane + first:s0 * plane + stop] if s0 >= 0 else zeros
            d1 = source[c, s1 * plane + first:s1 * plane + stop] if s1 >= 0 else zeros
            d2 = source[c, s2 * plane + first:s2 * plane + stop] if s2 >= 0 else zeros
            d3 = source[c, s3 * plane + first:s3 * plane + stop] if s3 >= 0 else zeros
            v0, v1, v2, v3 = inputs[0, c], inputs[1, c], inputs[2, c], inputs[3, c]
            for q in range(columns):
                v0[q] = d0[q] - d2[q]
                v1[q] = d1[q] + d2[q]
                v2[q] = d2[q] - d1[q]
                v3[q] = d1[q] - d3[q]
        set_local_threads(set_threads_address, 1)
        for p in range(POINTS):
            gemm(gemm_address, integer, AS_STORED, AS_STORED, out_per_group, columns, in_per_group, one,
                 points[g, p].ctypes.data, in_per_group, inputs[p].ctypes.data, columns, one * 0,
                 products[p].ctypes.data, columns)
        target = out[n, g * out_per_group:(g + 1) * out_per_group].reshape(out_per_group, out_depth * plane)
        both = TILE * t + 1 < out_depth
        finite = True
        for o in range(out_per_group):
            bias_value = bias[g * out_per_group + o] if has_bias else one * 0
            m0, m1, m2, m3 = products[0, o], products[1, o], products[2, o], products[3, o]
            y0 = target[o, TILE * t * plane + first:TILE * t * plane + stop]
            for q in range(columns):
                y0[q] = m0[q] + m1[q] + m2[q] + bias_value
                finite &= np.isfinite(y0[q])
            if both:
                y1 = target[o, (TILE * t + 1) * plane + first:(TILE * t + 1) * plane + stop]
                for q in range(columns):
                    y1[q] = m1[q] - m2[q] - m3[q] + bias_value
                    finite &= np.isfinite(y1[q])
        nonfinite[task] = not finite


def compute(x, weight, bias, has_bias, out, stride, dilation, pad_front, padded, mode, groups):
    """Fill the batched ``out`` from the batched ``x`` (C-contiguous) by F(2, 3) along D (a plan
    ``serves`` takes). Returns whether every output is finite (where not, the caller computes it again
    directly).

    The arguments are the plan's numbers, as :func:`numba_conv3d.cpu.direct.compute` takes them.
    """
    depth_map = index_map(padded[0], pad_front[0], x.shape[2], mode)
    blocks = column_blocks(out.shape[3] * out.shape[4])
    nonfinite = np.zeros(out.shape[0] * groups * ceil_div(out.shape[2], TILE) * blocks.shape[0], np.bool_)
    library = blas.openblas()
    with blas.one_thread(library):
        _kernel(x, weight_points(np.ascontiguousarray(weight), groups), bias, has_bias, out, depth_map,
                blocks, x.dtype.type(1), library.gemm_addresses[x.dtype], library.set_local_threads_address,
                library.integer(0), nonfinite)
    return not nonfinite.any()


def workspace_bytes(plan):
    """Scratch bytes one worker thread holds: a task's input points, products and zero row."""
    blocks = column_blocks(plan.output_size[1] * plan.output_size[2])
    columns = int((blocks[:, 1] - blocks[:, 0]).max())
    return (np.dtype(plan.dtype).itemsize * columns
            * (POINTS * (plan.in_per_group + plan.out_per_group) + 1))


def call_bytes(plan):
    """Bytes a call holds once: the weight points."""
    return np.dtype(plan.dtype).itemsize * POINTS * plan.out_channels * plan.in_per_group
