"""FFT convolution on the CPU, for real dtypes at unit stride: large kernels, where a direct convolution's
multiply-adds per output grow with the kernel's volume and an FFT's do not.

Overlap-save over tiles of the output (Zlateski et al., ICS 2019, for the CPU trade-offs): a tile of T
outputs per dimension reads ``N = T + E - 1`` padded input positions (E the dilated kernel extent). A
task takes one tile of one batch item and group: it gathers the tile's padded input of each input
channel through the padding index maps (every padding mode, no padded copy of the volume), takes its
real FFT of size N, multiplies it by the conjugated weight spectrum of each output channel and sums over
the input channels, and takes the inverse FFT per output channel: the circular correlation's first T
outputs per dimension are the tile's outputs (no wrap-around reaches them), plus the bias. The weight
spectra are computed once per call (``weight_spectra``; the kernel's zero rows and planes are skipped).
The tile sizes come from ``tiling``, which minimizes an estimated time within a memory bound; a volume
that fits is a single tile.

The FFTs are DUCC0's (the library behind ``scipy.fft``), called from jitted code through rocket-fft's
low-level interface into buffers the tasks own: no array is allocated per transform, and the
transforms of one task run on ``fft_threads`` threads when there are fewer tasks than threads. Each
output is computed in a fixed order whatever the thread count (a multi-threaded FFT splits the
independent one-dimensional transforms between threads, not their sums), so results are bitwise equal
for any thread count.

Rounding: an FFT convolution's error is normwise, not elementwise: an output's error is within about
``(log2(N0 N1 N2) + C_in/g) * eps * sqrt(sum x^2) * sqrt(sum w^2)`` over its tile's padded input and its
weights, so outputs much smaller than their neighbourhood carry a larger relative error than the
direct sums give them (``algorithm='direct'`` where that matters). Non-finite values: one Inf or NaN
reaches every output of its tile, so ``run`` reports whether every output is finite, and the caller
computes the convolution again directly where one is not (torch's NaN and Inf, exactly).
"""
import functools
import itertools
import math
from math import prod

import numba
import numpy as np
import rocket_fft
from numba import njit, prange

from ..crossovers import (FFT_CALL_SECONDS, FFT_COPY_SECONDS, FFT_MAC_SECONDS, FFT_MAX_WORKSPACE_BYTES,
                          FFT_SECONDS, FFT_TILE_COUNTS)
from ..shape_rules import ceil_div, dilated_extent
from .slab import index_maps, padded_row
from .tasks import thread_count

_ALL_AXES = np.arange(3)
_AXIS = (np.array([0]), np.array([1]), np.array([2]))


@njit(parallel=True, cache=True)
def weight_spectra(weight, dilation, width, spectra, fft_threads):
    """``spectra[o, c]`` = the conjugated FFT (size ``spectra.shape[2:4] x width``) of weight (o, c)
    placed at the origin, dilated: what a correlation multiplies the input's FFT by. Only the kernel's
    rows are transformed along W, and only its planes along H."""
    out_channels, in_per_group = weight.shape[:2]
    extent_d = dilated_extent(weight.shape[2], dilation[0])
    extent_h = dilated_extent(weight.shape[3], dilation[1])
    for pair in prange(out_channels * in_per_group):
        o, c = pair // in_per_group, pair % in_per_group
        rows = np.zeros((extent_d, extent_h, width), weight.dtype)
        for kd in range(weight.shape[2]):
            for kh in range(weight.shape[3]):
                for kw in range(weight.shape[4]):
                    rows[kd * dilation[0], kh * dilation[1], kw * dilation[2]] = weight[o, c, kd, kh, kw]
        spectrum = spectra[o, c]
        spectrum[:] = 0
        rocket_fft.r2c(rows, spectrum[:extent_d, :extent_h], _AXIS[2], True, 1.0, fft_threads)
        rocket_fft.c2c(spectrum[:extent_d], spectrum[:extent_d], _AXIS[1], True, 1.0, fft_threads)
        rocket_fft.c2c(spectrum, spectrum, _AXIS[0], True, 1.0, fft_threads)
        flat = spectrum.reshape(-1)
        for f in range(flat.shape[0]):
            flat[f] = np.conj(flat[f])


@njit(cache=True)
def _gather_tile(x, n, c, maps, origin, rows_d, rows_h, real):
    """``real[:rows_d, :rows_h]`` = the padded input of channel (n, c) from padded position ``origin``
    (zero past the padded extents); the rows past them are left to the FFT's zero padding."""
    map_d, map_h = maps[0], maps[1]
    width = real.shape[2]
    for i in range(rows_d):
        sd = map_d[origin[0] + i]
        for j in range(rows_h):
            sh = map_h[origin[1] + j]
            row = real[i, j]
            if sd < 0 or sh < 0:
                row[:] = 0
            else:
                padded_row(x, n, c, sd, sh, maps, origin[2], width, row)


@njit(cache=True)
def _multiply(inputs, spectra, sums):
    """``sums`` = sum over c < C_in/g of ``inputs[c] * spectra[c]`` (flat spectra). Element by element
    throughout (no array-to-slice assignment, whose shape-error message Numba compiles in about 2 s)."""
    for f in range(sums.shape[0]):
        sums[f] = inputs[0, f] * spectra[0, f]
    for c in range(1, spectra.shape[0]):
        for f in range(sums.shape[0]):
            sums[f] += inputs[c, f] * spectra[c, f]


@njit(cache=True)
def _store_tile(real, out, n, o, origin, counts, bias_value):
    """``out[n, o]`` from ``origin`` = ``real[:counts]`` plus the bias; whether every value is finite."""
    finite = True
    for i in range(counts[0]):
        for j in range(counts[1]):
            source = real[i, j]
            target = out[n, o, origin[0] + i, origin[1] + j]
            for k in range(counts[2]):
                value = source[k] + bias_value
                target[origin[2] + k] = value
                finite &= np.isfinite(value)
    return finite


@njit(cache=True)
def _tile(x, spectra, bias, out, maps, n, g, origin, tile, real, inputs, fft_threads):
    """Fill tile ``origin`` (``tile`` outputs per dimension, fewer at the output's far edges) of batch
    item ``n``, group ``g``, through the task's buffers ``real`` (N0 x N1 x N2) and ``inputs``
    (C_in/g + 1 spectra, the last one the sums); whether every output is finite."""
    in_per_group = spectra.shape[1]
    out_per_group = out.shape[1] // (x.shape[1] // in_per_group)
    rows_d = min(real.shape[0], maps[0].shape[0] - origin[0])
    rows_h = min(real.shape[1], maps[1].shape[0] - origin[1])
    for c in range(in_per_group):
        _gather_tile(x, n, g * in_per_group + c, maps, origin, rows_d, rows_h, real)
        rocket_fft.r2c(real[:rows_d, :rows_h], inputs[c], _ALL_AXES, True, 1.0, fft_threads)
    counts = (min(tile[0], out.shape[2] - origin[0]), min(tile[1], out.shape[3] - origin[1]),
              min(tile[2], out.shape[4] - origin[2]))
    sums = inputs[in_per_group]
    flat_inputs = inputs.reshape(inputs.shape[0], -1)
    scale = 1.0 / (real.shape[0] * real.shape[1] * real.shape[2])
    finite = True
    for lane in range(out_per_group):
        o = g * out_per_group + lane
        _multiply(flat_inputs, spectra[o].reshape(in_per_group, -1), flat_inputs[in_per_group])
        # Back along D everywhere, along H only in the planes kept, along W only in the rows kept.
        rocket_fft.c2c(sums, sums, _AXIS[0], False, 1.0, fft_threads)
        rocket_fft.c2c(sums[:counts[0]], sums[:counts[0]], _AXIS[1], False, 1.0, fft_threads)
        rocket_fft.c2r(sums[:counts[0], :counts[1]], real[:counts[0], :counts[1]], _AXIS[2], False,
                       scale, fft_threads)
        finite &= _store_tile(real, out, n, o, origin, counts,
                              bias[o] if bias.shape[0] else x.dtype.type(0))
    return finite


@njit(parallel=True, cache=True)
def _fft_kernel(x, spectra, bias, out, maps, tile, tiles, reals, inputs, fft_threads, nonfinite):
    """Fill ``out`` tile by tile: lane ``l`` of the buffers ``reals``, ``inputs`` computes tasks ``l``,
    ``l + lanes``, ... of (batch item, group, tile plane, tile row, tile column); ``nonfinite[l]`` is
    set where a lane wrote a NaN or Inf."""
    lanes = reals.shape[0]
    groups = x.shape[1] // spectra.shape[1]
    per_item = tiles[0] * tiles[1] * tiles[2]
    tasks = x.shape[0] * groups * per_item
    for lane in prange(lanes):
        finite = True
        for task in range(lane, tasks, lanes):
            item, t = task // per_item, task % per_item
            origin = (t // (tiles[1] * tiles[2]) * tile[0], t // tiles[2] % tiles[1] * tile[1],
                      t % tiles[2] * tile[2])
            finite &= _tile(x, spectra, bias, out, maps, item // groups, item % groups, origin, tile,
                            reals[lane], inputs[lane], fft_threads)
        nonfinite[lane] = not finite


def _complex(dtype):
    return np.result_type(dtype, np.complex64)


def run(plan, x, weight, bias, out):
    """Fill the batched ``out`` from the batched ``x`` by FFT (a plan ``serves`` takes); ``bias`` is
    empty without one. Returns whether every output is finite (where not, the caller computes it again
    directly)."""
    fft_shape, tile, tiles = tiling(plan)
    threads = thread_count()
    lanes = _lanes(plan, tiles, threads)
    half = fft_shape[:2] + (fft_shape[2] // 2 + 1,)
    spectra = np.empty((plan.out_channels, plan.in_per_group) + half, _complex(x.dtype))
    weight_spectra(weight, plan.dilation, fft_shape[2], spectra,
                   max(1, threads // (plan.out_channels * plan.in_per_group)))
    reals = np.empty((lanes,) + fft_shape, x.dtype)
    inputs = np.empty((lanes, plan.in_per_group + 1) + half, spectra.dtype)
    nonfinite = np.zeros(lanes, np.bool_)
    _fft_kernel(x, spectra, bias, out, index_maps(x, plan.padded_size, plan.pad_front, plan.mode_code),
                tile, tiles, reals, inputs, max(1, threads // lanes), nonfinite)
    return not nonfinite.any()


def serves(plan):
    """Whether the FFT algorithm computes a plan: a real dtype at unit stride (any kernel, dilation,
    padding and groups), with a tiling whose weight spectra and buffers fit ``FFT_MAX_WORKSPACE_BYTES``
    (the shortest FFT lengths ``_lengths`` tries)."""
    if plan.is_complex or plan.stride != (1, 1, 1):
        return False
    shortest = tuple(min(_lengths(o, e).items(), key=lambda pair: pair[1])
                     for o, e in zip(plan.output_size, _extents(plan)))
    fft_shape, tiles = tuple(n for _, n in shortest), tuple(t for t, _ in shortest)
    return _footprint(plan, fft_shape, _lanes(plan, tiles, planning_threads())) <= FFT_MAX_WORKSPACE_BYTES


def _extents(plan):
    return tuple(dilated_extent(k, d) for k, d in zip(plan.kernel_size, plan.dilation))


def _lengths(output, extent):
    """{tile count: FFT length} worth trying along one dimension: the shortest fast length for each
    count in ``FFT_TILE_COUNTS`` (one tile covers the dimension)."""
    pairs = {}
    for count in FFT_TILE_COUNTS:
        if count <= output:
            length = rocket_fft.good_size(ceil_div(output, count) + extent - 1, True)
            pairs[ceil_div(output, length - extent + 1)] = length
    return pairs


def _lanes(plan, tiles, threads):
    """Tasks run at once: one per thread, at most one per tile of each batch item and group (and at
    least one)."""
    return max(1, min(plan.batch * plan.groups * prod(tiles), threads))


def _footprint(plan, fft_shape, lanes):
    """Bytes of the weight spectra and the lanes' buffers (a real tile and C_in/g + 1 spectra each)."""
    itemsize = np.dtype(plan.dtype).itemsize
    spectrum = 2 * itemsize * fft_shape[0] * fft_shape[1] * (fft_shape[2] // 2 + 1)
    return (spectrum * plan.out_channels * plan.in_per_group
            + lanes * (itemsize * prod(fft_shape) + spectrum * (plan.in_per_group + 1)))


def _transform_seconds(points):
    return FFT_SECONDS * points * math.log2(max(2, points)) + FFT_CALL_SECONDS


def _seconds(plan, fft_shape, tiles, threads):
    """Estimated seconds of an FFT convolution tiled as given (``crossovers.FFT_*``): per tile, C_in/g +
    C_out/g transforms and copies of N points and C_in/g x C_out/g products of N/2 spectra, on
    ``_lanes`` tasks at once (the rest of the threads splitting the transforms), plus the weight
    spectra (about half a transform per channel pair: their zero rows and planes are skipped)."""
    points = prod(fft_shape)
    transform = _transform_seconds(points)
    lanes = _lanes(plan, tiles, threads)
    per_tile = ((plan.in_per_group + plan.out_per_group) * (transform * lanes / threads
                                                            + FFT_COPY_SECONDS * points)
                + FFT_MAC_SECONDS * plan.in_per_group * plan.out_per_group * points / 2)
    weights = plan.out_channels * plan.in_per_group * transform / 2 / threads
    return ceil_div(plan.batch * plan.groups * prod(tiles), lanes) * per_tile + weights


def lower_bound_seconds(plan):
    """Seconds that no tiling's estimate (``_seconds``) goes below, cheap to compute: the tiles hold
    at least the output's points, and each at least the kernel's extent."""
    outputs = plan.batch * plan.groups * prod(plan.output_size)
    threads = planning_threads()
    transform = FFT_SECONDS * outputs * math.log2(max(2, prod(_extents(plan))))
    products = FFT_MAC_SECONDS * plan.in_per_group * plan.out_per_group * outputs / 2
    return ((plan.in_per_group + plan.out_per_group) * transform + products) / threads


def planning_threads():
    """The thread count tilings are chosen for: Numba's most (``NUMBA_NUM_THREADS``), so that the
    tiling, and with it every output, is the same whatever ``numba.set_num_threads`` says."""
    return numba.config.NUMBA_NUM_THREADS


@functools.lru_cache(maxsize=256)
def tiling(plan):
    """The fastest estimated tiling within ``FFT_MAX_WORKSPACE_BYTES`` on ``planning_threads``, for a
    plan ``serves`` takes: (FFT shape, outputs per tile, tiles per dimension)."""
    threads = planning_threads()
    best = None
    for (tiles_d, n_d), (tiles_h, n_h), (tiles_w, n_w) in itertools.product(
            *(_lengths(o, e).items() for o, e in zip(plan.output_size, _extents(plan)))):
        fft_shape, tiles = (n_d, n_h, n_w), (tiles_d, tiles_h, tiles_w)
        seconds = _seconds(plan, fft_shape, tiles, threads)
        fits = _footprint(plan, fft_shape, _lanes(plan, tiles, threads)) <= FFT_MAX_WORKSPACE_BYTES
        if fits and (best is None or seconds < best[0]):
            best = (seconds, fft_shape, tiles)
    _, fft_shape, tiles = best
    return fft_shape, tuple(n - e + 1 for n, e in zip(fft_shape, _extents(plan))), tiles


def estimated_seconds(plan):
    """Estimated seconds of the chosen tiling (``tiling``) on ``planning_threads``."""
    fft_shape, _, tiles = tiling(plan)
    return _seconds(plan, fft_shape, tiles, planning_threads())


def workspace_bytes(plan):
    """Scratch bytes of the chosen tiling: the weight spectra and every lane's buffers."""
    fft_shape, _, tiles = tiling(plan)
    return _footprint(plan, fft_shape, _lanes(plan, tiles, planning_threads()))
