"""Convolution by kernels one element wide in H and W (KDx1x1: the temporal layers of (2+1)-D video
networks) as matrix products straight on the input, for real dtypes (OpenBLAS).

With a KDx1x1 kernel, unit stride along H and W and no pads there, tap ``kd`` of output plane ``z``
reads the whole input plane ``map_d[z * sd + kd * dd]`` (``slab.index_map``; -1: zero padding): per
group, ``out[:, z] += W_kd @ x[:, that plane]``, a product of the tap's weights (C_out/g x C_in/g)
and the plane's (C_in/g x H*W) as they lie in memory. Planes whose sources follow one another are one
product (at unit depth stride, every plane that reads the input), so nothing is gathered or copied but
the weights, tap by tap (``pack_taps``). A zero-padding plane is skipped where every weight is finite;
otherwise it is a product with a zero plane, as torch gives NaN for an Inf weight times padding.

The output is cut into pieces of columns (flattened planes x rows x columns: ``piece_bounds``, from
the shape alone); a piece is one thread's: it starts from the bias, then adds each tap's products in
tap order (``cblas_?gemm`` with beta 1). Each output element is, tap by tap, a BLAS dot product over
the input channels added to the sum so far: bitwise the same for any thread count.
"""
import numpy as np
from numba import njit, prange

from . import blas
from .cblas import AS_STORED, gemm, set_local_threads
from .register_blocks import skips_padding
from .slab import index_map, tap_sources
from .tasks import even_bounds


def serves(plan):
    """Whether this algorithm computes ``plan``: a real dtype, NumPy's OpenBLAS found, a kernel one
    element wide in H and W, unit stride and no pads along them."""
    return (not plan.is_complex and blas.openblas() is not None and plan.kernel_size[1:] == (1, 1)
            and plan.stride[1:] == (1, 1) and plan.padded_size[1:] == plan.input_size[1:])


@njit(cache=True)
def pack_taps(weight, groups):
    """Weights (C_out, C_in/g, KD, 1, 1) -> (g, KD, C_out/g, C_in/g), each tap's weights a matrix."""
    out_channels, in_per_group, taps = weight.shape[0], weight.shape[1], weight.shape[2]
    out_per_group = out_channels // groups
    packed = np.empty((groups, taps, out_per_group, in_per_group), weight.dtype)
    for o in range(out_channels):
        for c in range(in_per_group):
            for kd in range(taps):
                packed[o // out_per_group, kd, o % out_per_group, c] = weight[o, c, kd, 0, 0]
    return packed


def piece_bounds(columns):
    """(pieces, 2): ``[start, stop)`` of the output columns (of a sample and group) that each task adds,
    from the shape alone: up to ``blas.MAX_PIECES`` pieces of at least ``blas.MIN_PIECE_EXTENT``."""
    return even_bounds(columns, max(1, min(blas.MAX_PIECES, columns // blas.MIN_PIECE_EXTENT)))


@njit(parallel=True, cache=True)
def _products(x, packed, bias, has_bias, out, sources, zeros, pieces, one, gemm_address,
              set_threads_address, integer):
    """Fill ``out`` (N, C_out, OD, H, W): task (sample, group, piece of columns) starts from the bias
    and adds, tap by tap, the products of the tap's weights and the input planes ``sources[kd, z]``
    (-1: the planes of ``zeros``, or skipped where ``zeros`` is empty) over the piece's columns."""
    batch, out_channels, out_depth = out.shape[:3]
    plane = out.shape[3] * out.shape[4]
    groups, taps, out_per_group, in_per_group = packed.shape
    depth = x.shape[2]
    piece_count = pieces.shape[0]
    for task in prange(batch * groups * piece_count):
        n, g, piece = task // (groups * piece_count), task // piece_count % groups, task % piece_count
        first, stop = pieces[piece, 0], pieces[piece, 1]
        target = out[n, g * out_per_group:(g + 1) * out_per_group].reshape(out_per_group, out_depth * plane)
        for o in range(out_per_group):
            value = bias[g * out_per_group + o] if has_bias else one * 0
            for q in range(first, stop):
                target[o, q] = value
        source_channels = x[n, g * in_per_group:(g + 1) * in_per_group].reshape(in_per_group, depth * plane)
        set_local_threads(set_threads_address, 1)
        for kd in range(taps):
            weights = packed[g, kd]
            q = first
            while q < stop:
                z = q // plane
                # A run of output planes whose sources follow one another (or one zero plane).
                end_z = z + 1
                while (end_z * plane < stop and sources[kd, z] >= 0
                       and sources[kd, end_z] == sources[kd, z] + (end_z - z)):
                    end_z += 1
                end = min(stop, end_z * plane)
                if sources[kd, z] >= 0:
                    start_at = source_channels[:, sources[kd, z] * plane + q - z * plane:].ctypes.data
                    gemm(gemm_address, integer, AS_STORED, AS_STORED, out_per_group, end - q, in_per_group,
                         one, weights.ctypes.data, in_per_group, start_at, depth * plane, one,
                         target[:, q:].ctypes.data, out_depth * plane)
                elif zeros.size:
                    gemm(gemm_address, integer, AS_STORED, AS_STORED, out_per_group, end - q, in_per_group,
                         one, weights.ctypes.data, in_per_group, zeros.ctypes.data, plane, one,
                         target[:, q:].ctypes.data, out_depth * plane)
                q = end


def compute(x, weight, bias, has_bias, out, stride, dilation, pad_front, padded, mode, groups):
    """Fill the batched ``out`` from the batched ``x`` (C-contiguous), one product per tap and run of
    planes (see the module's docstring); the arguments are the plan's numbers, as
    :func:`numba_conv3d.cpu.direct.compute` takes them."""
    taps = weight.shape[2]
    depth_map = index_map(padded[0], pad_front[0], x.shape[2], mode)
    sources = tap_sources(depth_map, taps, out.shape[2], stride[0], dilation[0])
    plane = out.shape[3] * out.shape[4]
    skip = skips_padding(x, weight, padded, mode)
    zeros = np.zeros((0 if skip else weight.shape[1], plane), x.dtype)
    library = blas.openblas()
    with blas.one_thread(library):
        _products(x, pack_taps(np.ascontiguousarray(weight), groups), bias, has_bias, out, sources, zeros,
                  piece_bounds(out.shape[2] * plane), x.dtype.type(1),
                  library.gemm_addresses[x.dtype], library.set_local_threads_address, library.integer(0))


def workspace_bytes(plan):
    """Bytes of scratch: the packed weights (counted apart by the planner) and, where padding must be
    multiplied, one zero plane per input channel."""
    return plan.in_per_group * plan.input_size[1] * plan.input_size[2] * np.dtype(plan.dtype).itemsize
