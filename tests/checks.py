"""Comparisons with tolerances tied to the accumulation length, never a blanket rtol."""
import math

import ml_dtypes
import numba
import numpy as np

from numba_conv3d import plan_conv3d
from reference import NUMPY_PAD_MODES, conv3d_reference, reference_pads, transposed_reference


def _abs_or_none(a):
    return None if a is None else np.abs(a)


def rounding_bound(dtype, x, w, b=None, **kwargs):
    """Worst-case rounding error of a dtype-precision convolution, per output element.

    Recursive summation of L products has error at most about L * eps * sum(|x| |w|) (+ |b|); complex
    multiplication at most doubles it. L counts the taps of one output element and the bias.
    """
    w = np.asarray(w)
    length = w.shape[1] * math.prod(w.shape[2:]) + (b is not None)
    eps = np.finfo(dtype).eps
    factor = (length + 2) * eps * (2 if np.dtype(dtype).kind == "c" else 1)
    magnitude = conv3d_reference(np.abs(x), np.abs(w), _abs_or_none(b), **kwargs)
    return factor * magnitude + np.finfo(dtype).tiny


BFLOAT16 = np.dtype(ml_dtypes.bfloat16)


def bfloat16_operands(x_shape, w_shape, bias, seed=0):
    """Random bfloat16 input, weight and bias (None without one) of standard normal values."""
    rng = np.random.default_rng(seed)
    draw = lambda shape: rng.standard_normal(shape).astype(BFLOAT16)  # noqa: E731
    return draw(x_shape), draw(w_shape), draw(w_shape[:1]) if bias else None


def assert_bfloat16_within_bound(out, x, w, b, **kwargs):
    """``out`` is bfloat16 and within the float32 sums' bound plus one rounding of the float64
    reference on the bfloat16 operands (``reduced_bound``)."""
    assert out.dtype == BFLOAT16
    wide = [None if a is None else a.astype(np.float64) for a in (x, w, b)]
    expected = conv3d_reference(*wide, **kwargs)
    assert_close(out.astype(np.float64), expected, reduced_bound(BFLOAT16, expected, *wide, **kwargs))


def has_amx_tiles():
    """Whether the AMX kernel (``cpu/amx_bfloat16.py``) serves bfloat16 plans here."""
    from numba_conv3d.cpu import amx_bfloat16

    return amx_bfloat16.serves(plan_conv3d((1, 2, 3, 3, 3), (2, 2, 1, 1, 1), dtype="bfloat16"))


AMX_TILES_REASON = ("this CPU has no AMX tiles with bfloat16 products (or Linux does not lend them to this "
                    "process)")


def torch_of(torch, array):
    """A float16 or bfloat16 NumPy ``array`` as a torch tensor of its dtype (through float32, exactly:
    torch cannot read ``ml_dtypes`` arrays)."""
    return torch.from_numpy(array.astype(np.float32)).to(getattr(torch, array.dtype.name))


def reduced_bound(dtype, expected, x, w, b=None, **kwargs):
    """Rounding bound of a float16 or bfloat16 convolution summed in float32 and rounded once, per
    output element: the float32 sums' bound, plus half an ulp of the float32 result (relative
    ``eps / 2``), or half the smallest subnormal below the normal range."""
    summed = rounding_bound(np.float32, x, w, b, **kwargs)
    info = ml_dtypes.finfo(dtype)
    return summed + float(info.eps) / 2 * (np.abs(expected) + summed) + float(info.smallest_subnormal) / 2


# By kernel width: |B^T|, |G| and |A^T| of Winograd F(2, 3) (Lavin and Gray 2016) and F(2, 5) (points 0,
# 1, -1, 2, -1/2, infinity), for the magnitudes of its rounding, and the roundings on an output's path
# besides the C_in/g of its sums: F(2, 3) 3 in the input transform (one addition per dimension), 1 in
# the weight points, 6 in the output transform, 1 for the bias (<= 12); F(2, 5) 15 in the input (a
# multiply and 4 additions per dimension), 1, 12 in the output (4 additions per dimension; its
# multipliers are powers of two), 1 (<= 32).
_WINOGRAD = {
    3: (np.array([[1, 0, 1, 0], [0, 1, 1, 0], [0, 1, 1, 0], [0, 1, 0, 1]], float),
        np.array([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0.5], [0, 0, 1]]),
        np.array([[1, 1, 1, 0], [0, 1, 1, 1]], float), 12),
    5: (np.array([[2, 3, 4, 3, 2, 0], [0, 2, 5, 1, 2, 0], [0, 2, 1, 5, 2, 0], [0, 1, 2, 1, 2, 0],
                  [0, 2, 1, 2, 1, 0], [0, 2, 3, 4, 3, 2]], float),
        np.array([[15, 0, 0, 0, 0], [5, 5, 5, 5, 5], [5, 5, 5, 5, 5], [1, 2, 4, 8, 16],
                  [32, 16, 8, 4, 2], [0, 0, 0, 0, 15]]) / 30,
        np.array([[1, 1, 1, 1, 1, 0], [0, 1, 1, 2, 0.5, 1]]), 32),
}
# Stride-2 Winograd's 5 points per 2 outputs: |B^T| of (x0 - x2, x2, x4 - x2, x1, x3), |G| of (w0, w0 +
# w2, w2, w1, w1), |A^T| of (m0 + m1 + m3, m1 + m2 + m4); 3 roundings in the input transform, 1 in the
# weight points, 6 in the output transform, 1 for the bias (11).
_WINOGRAD_STRIDED = (np.array([[1, 0, 1, 0, 0], [0, 0, 1, 0, 0], [0, 0, 1, 0, 1], [0, 1, 0, 0, 0],
                               [0, 0, 0, 1, 0]], float),
                     np.array([[1, 0, 0], [1, 0, 1], [0, 0, 1], [0, 1, 0], [0, 1, 0]], float),
                     np.array([[1, 1, 0, 1, 0], [0, 1, 1, 0, 1]], float), 11)
# F(4, 3) (the same points as F(2, 5), so the same |B^T|), which 1x3x3 kernels may take on wide planes:
# 10 roundings in the input transform and 8 in the output (4 additions per dimension), 1, 1 (<= 32); 3x3x3
# kernels there take it along H and W with F(2, 3) along D: 11 in the input, 10 in the output, 1, 1
# (<= 32).
_WINOGRAD_WIDE = (_WINOGRAD[5][0],
                  np.array([[15, 0, 0], [5, 5, 5], [5, 5, 5], [1, 2, 4], [32, 16, 8], [0, 0, 15]]) / 30,
                  np.array([[1, 1, 1, 1, 1, 0], [0, 1, 1, 2, 0.5, 0], [0, 1, 1, 4, 0.25, 0],
                            [0, 1, 1, 8, 0.125, 1]]), 32)


def winograd_rounding_bound(dtype, x, w, b=None, padding=0, groups=1, padding_mode="zeros"):
    """Rounding bound of Winograd F(2x2x2, KxKxK) (F(2x2, KxK) plane by plane for a 1xKxK kernel), K 3
    or 5, per output element: (C_in/g + R) * eps times ``|A|^T [sum_c |U_c| |V_c|] |A|`` (+ |b|), the
    transforms computed on absolute values from the float64 padded input's patches (unit stride and
    dilation), R the roundings of ``_WINOGRAD`` besides the sums'. For a 1x3x3 kernel, the larger of
    that and F(4x4, 3x3)'s, for a 3x3x3 kernel of that and its 2x4x4 tile's (F(4, 3) along H and W),
    whichever tile it takes. Unlike a direct sum's, it depends on the whole patch under a tile."""
    depth = _WINOGRAD[w.shape[4]][:3]
    wide = [_WINOGRAD_WIDE] if tuple(w.shape[2:]) in ((1, 3, 3), (3, 3, 3)) else []
    variants = [_WINOGRAD[w.shape[4]]] + wide
    return np.maximum.reduce([_winograd_bound(variant, dtype, x, w, b, padding, groups, padding_mode,
                                              depth=depth) for variant in variants])


def winograd_strided_rounding_bound(dtype, x, w, b=None, stride=2, padding=0, groups=1, padding_mode="zeros"):
    """Rounding bound of stride-2 Winograd (``cpu/winograd_strided.py``: 5 points per 2 outputs along H
    and W, and along D for a 3x3x3 kernel) per output element, as ``winograd_rounding_bound`` with its
    transforms, tiles 4 inputs apart."""
    stride = (stride,) * 3 if isinstance(stride, int) else tuple(stride)
    return _winograd_bound(_WINOGRAD_STRIDED, dtype, x, w, b, padding, groups, padding_mode, stride)


def winograd_depth_rounding_bound(dtype, x, w, b=None, padding=0, groups=1, padding_mode="zeros"):
    """Rounding bound of F(2, 3) along D for a 3x1x1 kernel (``cpu/winograd_depth.py``) per output
    element, as ``winograd_rounding_bound`` with F(2, 3)'s transforms along D only: 1 rounding in the
    input points, 1 in the weight points, 2 in the outputs, 1 for the bias (R 5)."""
    return _winograd_bound((*_WINOGRAD[3][:3], 5), dtype, x, w, b, padding, groups, padding_mode)


def winograd_weight_grad_bound(dtype, x, g, weight_shape, padding=0, groups=1, padding_mode="zeros"):
    """Rounding bound of the weight gradient by Winograd F(3, 2) (``cpu/winograd_weight_grad.py``, 3x3x3
    or 1x3x3 kernels at unit stride) per weight element: (T + 8) * eps times ``|G|^T [sum_t |A g_t|
    |B^T x_t|] |G|`` along each transformed dimension, T the tiles summed (batch included), 8 the
    roundings of the two transforms (3 each), the points' sums over passes and the last one; from the
    float64 padded input's patches of the tiles of 2 outputs and the output gradient's tiles (zeros past
    its edges)."""
    b_t, g_matrix, a_t, _ = _WINOGRAD[3]
    x = np.abs(np.asarray(x, np.float64))
    g = np.abs(np.asarray(g, np.float64))
    kernel = tuple(weight_shape[2:])
    along = [(b_t, g_matrix, a_t) if k == 3 else (np.ones((1, 1)),) * 3 for k in kernel]
    patch, tile = [m[0].shape[0] for m in along], [m[2].shape[0] for m in along]
    pads = reference_pads(padding, kernel, (1, 1, 1))
    padded = np.pad(x, [(0, 0), (0, 0)] + pads, mode=NUMPY_PAD_MODES[padding_mode])
    tiles = [-(-n // t) for n, t in zip(g.shape[2:], tile)]
    padded = np.pad(padded, [(0, 0), (0, 0)] + [(0, max(0, (m - 1) * t + p - n)) for m, t, p, n in
                                                 zip(tiles, tile, patch, padded.shape[2:])])
    patches = np.lib.stride_tricks.sliding_window_view(padded, patch, axis=(2, 3, 4))[
        :, :, ::tile[0], ::tile[1], ::tile[2]][:, :, :tiles[0], :tiles[1], :tiles[2]]
    g = np.pad(g, [(0, 0), (0, 0)] + [(0, m * t - n) for m, t, n in zip(tiles, tile, g.shape[2:])])
    g_tiles = g.reshape(g.shape[:2] + tuple(v for m, t in zip(tiles, tile) for v in (m, t)))
    (bd, gd, ad), (bh, gh, ah), (bw, gw, aw) = along
    v = np.einsum("ai,bj,ck,nztuvijk->nztuvabc", bd, bh, bw, patches)
    u = np.einsum("ia,jb,kc,notiujvk->notuvabc", ad, ah, aw, g_tiles)
    in_per_group, out_per_group = weight_shape[1], weight_shape[0] // groups
    sums = np.concatenate([
        np.einsum("notuvabc,nztuvabc->ozabc", u[:, g_ * out_per_group:(g_ + 1) * out_per_group],
                  v[:, g_ * in_per_group:(g_ + 1) * in_per_group]) for g_ in range(groups)])
    weights = np.einsum("ai,bj,ck,ozabc->ozijk", gd, gh, gw, sums)
    terms = x.shape[0] * math.prod(tiles)
    return (terms + 8) * np.finfo(dtype).eps * weights + np.finfo(dtype).tiny


def _winograd_bound(variant, dtype, x, w, b, padding, groups, padding_mode, stride=(1, 1, 1), depth=None):
    """``winograd_rounding_bound`` for one variant of ``_WINOGRAD``: (|B^T|, |G|, |A^T|, roundings)
    along H and W, and along D for a kernel deeper than one plane (or ``depth``'s three matrices there);
    tiles ``tile * stride`` inputs apart."""
    x = np.abs(np.asarray(x, np.float64))
    unbatched = x.ndim == 4
    x = x[None] if unbatched else x
    *transforms, roundings = variant
    matrices = [tuple(depth or transforms)] + [tuple(transforms)] * 2
    if w.shape[2] == 1:
        matrices[0] = (np.ones((1, 1)),) * 3
    if w.shape[3] == 1:
        matrices[1] = matrices[2] = (np.ones((1, 1)),) * 3
    patch = [m[0].shape[0] for m in matrices]
    tile = [m[2].shape[0] for m in matrices]
    steps = [t * s for t, s in zip(tile, stride)]
    pads = reference_pads(padding, w.shape[2:], (1, 1, 1))
    padded = np.pad(x, [(0, 0), (0, 0)] + pads, mode=NUMPY_PAD_MODES[padding_mode])
    out_size = [(n - k) // s + 1 for n, k, s in zip(padded.shape[2:], w.shape[2:], stride)]
    tiles = [-(-n // t) for n, t in zip(out_size, tile)]
    padded = np.pad(padded, [(0, 0), (0, 0)] + [(0, max(0, (m - 1) * step + p - n)) for m, step, p, n in
                                                 zip(tiles, steps, patch, padded.shape[2:])])
    patches = np.lib.stride_tricks.sliding_window_view(padded, patch, axis=(2, 3, 4))[
        :, :, ::steps[0], ::steps[1], ::steps[2]][:, :, :tiles[0], :tiles[1], :tiles[2]]
    (bd, gd, ad), (bh, gh, ah), (bw, gw, aw) = matrices
    v = np.einsum("ai,bj,ck,nztuvijk->nztuvabc", bd, bh, bw, patches)
    u = np.einsum("ai,bj,ck,ozijk->ozabc", gd, gh, gw, np.abs(np.asarray(w, np.float64)))
    in_per_group, out_per_group = w.shape[1], w.shape[0] // groups
    products = np.concatenate([
        np.einsum("nztuvabc,ozabc->notuvabc", v[:, g * in_per_group:(g + 1) * in_per_group],
                  u[g * out_per_group:(g + 1) * out_per_group]) for g in range(groups)], axis=1)
    y = np.einsum("ia,jb,kc,notuvabc->notiujvk", ad, ah, aw, products)
    y = y.reshape(y.shape[:2] + tuple(m * t for m, t in zip(tiles, tile)))
    y = y[:, :, :out_size[0], :out_size[1], :out_size[2]]
    if b is not None:
        y = y + np.abs(np.asarray(b, np.float64))[None, :, None, None, None]
    bound = (in_per_group + roundings) * np.finfo(dtype).eps * y + np.finfo(dtype).tiny
    return bound[0] if unbatched else bound


def fft_rounding_bound(dtype, x, w, b=None, padding=0, dilation=1, groups=1, padding_mode="zeros"):
    """Rounding bound of an FFT convolution (unit stride) per output element (n, o): (3 log2(P) + C_in/g
    + 2) * eps * ||x_n||_2 * ||w_o||_2 (+ eps |b_o|), with ||x_n|| over the float64 padded input of
    o's group and P an upper bound of the points of one FFT (twice the padded extents). Each of the
    three transforms (input, weight, inverse) errs by about log2(P) eps times its operand's norm, which
    by Parseval reaches an output as at most that times the other operand's norm; the sum over input
    channels adds C_in/g roundings. Normwise, unlike the direct sums' bound: an output much smaller
    than its neighbourhood may carry a large relative error."""
    x = np.asarray(x, np.float64)
    unbatched = x.ndim == 4
    x = x[None] if unbatched else x
    w = np.asarray(w, np.float64)
    dilation = tuple(np.broadcast_to(dilation, 3))
    pads = reference_pads(padding, w.shape[2:], dilation)
    padded = np.pad(x, [(0, 0), (0, 0)] + pads, mode=NUMPY_PAD_MODES[padding_mode])
    points = math.prod(2 * n for n in padded.shape[2:])
    in_per_group, out_per_group = w.shape[1], w.shape[0] // groups
    per_group = in_per_group * math.prod(padded.shape[2:])
    input_norms = np.sqrt((padded ** 2).reshape(x.shape[0], groups, per_group).sum(axis=2))
    weight_norms = np.sqrt((w ** 2).reshape(w.shape[0], -1).sum(axis=1))
    factor = (3 * math.log2(points) + in_per_group + 2) * np.finfo(dtype).eps
    bound = factor * np.repeat(input_norms, out_per_group, axis=1) * weight_norms
    if b is not None:
        bound = bound + np.finfo(dtype).eps * np.abs(np.asarray(b, np.float64))
    out_size = [n - d * (k - 1) for n, k, d in zip(padded.shape[2:], w.shape[2:], dilation)]
    bound = np.broadcast_to(bound[:, :, None, None, None] + np.finfo(dtype).tiny,
                            bound.shape + tuple(out_size))
    return bound[0] if unbatched else bound


def assert_close(actual, expected, bound):
    """``actual`` within ``bound`` of ``expected`` where finite; NaN and Inf exactly where ``expected``
    has them."""
    actual = np.asarray(actual)
    expected = np.asarray(expected)
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    expected_nan = np.isnan(expected)
    np.testing.assert_array_equal(np.isnan(actual), expected_nan, err_msg="NaN positions differ")
    finite = np.isfinite(expected)
    np.testing.assert_array_equal(actual[~finite & ~expected_nan], expected[~finite & ~expected_nan],
                                  err_msg="Inf values differ")
    error = np.abs(actual[finite] - expected[finite])
    limit = np.broadcast_to(bound, expected.shape)[finite]
    worst = np.argmax(error - limit) if error.size else None
    assert np.all(error <= limit), (f"error {error[worst]:.3e} exceeds bound {limit[worst]:.3e} "
                                    f"({np.count_nonzero(error > limit)} of {error.size} elements)")


def assert_matches_reference(actual, x, w, b=None, **kwargs):
    """Compare a numba_conv3d result with the float64 oracle under the rounding bound of its dtype."""
    assert actual.dtype == np.asarray(x).dtype
    expected = conv3d_reference(x, w, b, **kwargs)
    assert_close(actual, expected, rounding_bound(actual.dtype, x, w, b, **kwargs))


def gradient_bounds(dtype, w, g, magnitudes, **kwargs):
    """Rounding bounds of the input, weight and bias gradients of a convolution by ``w`` with output
    gradient ``g``: (length + 2) * eps * the gradient of the magnitudes, where length counts the terms one
    element sums (fold terms included). ``magnitudes`` are the float64 input and weight gradients of
    (|x|, |w|, |g|)."""
    eps = np.finfo(dtype).eps * (2 if np.dtype(dtype).kind == "c" else 1)
    gx, gw = magnitudes
    fold = math.prod(max(w.shape[2:]) * d + 1 for d in np.broadcast_to(kwargs.get("dilation", 1), 3))
    input_terms = w.shape[0] // kwargs.get("groups", 1) * math.prod(w.shape[2:]) + fold
    weight_terms = math.prod(g.shape[-3:]) * (g.shape[0] if g.ndim == 5 else 1)
    gb = np.abs(g).astype(np.float64).sum(axis=(0, 2, 3, 4) if g.ndim == 5 else (1, 2, 3))
    return tuple((terms + 2) * eps * magnitude + np.finfo(dtype).tiny
                 for terms, magnitude in ((input_terms, gx), (weight_terms, gw), (weight_terms, gb)))


def random_operands(rng, input_shape, weight_shape, bias, dtype):
    """Standard-normal input, weight and (optional) bias of ``dtype`` (complex: both parts drawn)."""
    def draw(shape):
        values = rng.standard_normal(shape)
        if np.dtype(dtype).kind == "c":
            values = values + 1j * rng.standard_normal(shape)
        return values.astype(dtype)

    return (draw(input_shape), draw(weight_shape),
            draw((weight_shape[0],)) if bias else None)


def flipped_operands(rng, x_shape, w_shape, groups, dtype):
    """Operands of an input gradient's correlation, whose weight (``w_shape``: C_in, C_out / g, K...) is
    the flipped, channel-swapped copy of a forward layer's: the input, that layer's weight (unflipped),
    the copy (``flipped_transpose``) and a bias."""
    from numba_conv3d.cpu.gradients import flipped_transpose

    unflipped_shape = (w_shape[1] * groups, w_shape[0] // groups) + tuple(w_shape[2:])
    x, unflipped, _ = random_operands(rng, x_shape, unflipped_shape, False, dtype)
    b = rng.standard_normal(w_shape[0]).astype(dtype)
    flipped = flipped_transpose(unflipped, groups, False)
    assert flipped.shape == tuple(w_shape)
    return x, unflipped, flipped, b


MODES = ("zeros", "reflect", "replicate", "circular")


def pads_fit(x_shape, kwargs, mode):
    """Whether ``mode`` takes the case's pads (reflect: smaller than the extent), which exist unless
    the mode is zeros."""
    padding = kwargs.get("padding", 0)
    pads = (1, 1, 1) if padding == "same" else np.broadcast_to(padding, 3)
    if mode == "zeros":
        return True
    return any(pads) and (mode != "reflect" or all(p < n for p, n in zip(pads, x_shape[-3:])))


def mode_cases(shapes):
    """(input shape, weight shape, kwargs, mode) for every case of ``shapes`` and padding mode that
    takes its pads (``pads_fit``)."""
    return [(x_shape, w_shape, kwargs, mode) for x_shape, w_shape, kwargs in shapes for mode in MODES
            if pads_fit(x_shape, kwargs, mode)]


def assert_forced_algorithm_within(algorithm, assert_bound, x_shape, w_shape, kwargs, mode, dtype):
    """``algorithm`` forced on random operands of the case, with and without a bias: the reference's
    shape, and values within ``assert_bound(out, x, w, b, **kwargs)``."""
    from numba_conv3d import conv3d

    rng = np.random.default_rng(len(x_shape) + sum(w_shape))
    kwargs = dict(kwargs, padding_mode=mode)
    for bias in (True, False):
        x, w, b = random_operands(rng, x_shape, w_shape, bias, dtype)
        out = conv3d(x, w, b, algorithm=algorithm, **kwargs)
        assert out.shape == conv3d_reference(x, w, b, **kwargs).shape
        assert_bound(out, x, w, b, **kwargs)


def serving_algorithms(x, w, b=None, **kwargs):
    """Names of every CPU algorithm that serves this convolution (the planner's table, in order)."""
    from numba_conv3d.cpu import ALGORITHMS
    from numba_conv3d.planner import plan_for_arrays

    plan = plan_for_arrays(x, w, b, **kwargs)
    return [a.name for a in ALGORITHMS if a.applies(plan)]


def conv3d_with(algorithm, x, w, b=None, **kwargs):
    """conv3d computed by the named algorithm (the planner would pick the first serving one)."""
    from numba_conv3d.api import run_plan
    from numba_conv3d.planner import plan_for_arrays

    return run_plan(plan_for_arrays(x, w, b, algorithm=algorithm, **kwargs), x, w, b)


def assert_every_algorithm_matches_reference(x, w, b=None, **kwargs):
    """Each serving algorithm agrees with the oracle; returns the results by algorithm name."""
    results = {}
    for name in serving_algorithms(x, w, b, **kwargs):
        results[name] = conv3d_with(name, x, w, b, **kwargs)
        if name in TRANSFORM_BOUNDS:
            assert_matches_transform_bound(name, results[name], x, w, b, **kwargs)
        else:
            assert_matches_reference(results[name], x, w, b, **kwargs)
    return results


def assert_matches_transform_bound(algorithm, actual, x, w, b=None, **kwargs):
    """Compare a transform algorithm's result ('winograd', 'fft') with the float64 oracle under its
    rounding bound (``TRANSFORM_BOUNDS``); with a NaN or Inf among the operands, its result is the
    direct sums' (its fallback), under theirs."""
    assert actual.dtype == np.asarray(x).dtype
    if not all(np.isfinite(a).all() for a in (x, w, b) if a is not None):
        assert_matches_reference(actual, x, w, b, **kwargs)
        return
    expected = conv3d_reference(x, w, b, **kwargs)
    bound, arguments = TRANSFORM_BOUNDS[algorithm]
    bound_args = {key: kwargs[key] for key in arguments if key in kwargs}
    assert_close(actual, expected, bound(actual.dtype, x, w, b, **bound_args))


def assert_matches_winograd_bound(actual, x, w, b=None, **kwargs):
    """``assert_matches_transform_bound`` for Winograd."""
    assert_matches_transform_bound("winograd", actual, x, w, b, **kwargs)


def assert_matches_fft_bound(actual, x, w, b=None, **kwargs):
    """``assert_matches_transform_bound`` for FFT convolution."""
    assert_matches_transform_bound("fft", actual, x, w, b, **kwargs)


def weight_grad_operands(rng, x_shape, w_shape, kwargs, dtype):
    """A standard-normal input and an output gradient for the convolution of ``kwargs``."""
    x, _, _ = random_operands(rng, x_shape, w_shape, False, dtype)
    plan = plan_conv3d(x_shape, w_shape, dtype=dtype, **kwargs)
    return x, rng.standard_normal((plan.batch, plan.out_channels) + plan.output_size).astype(dtype)


def route_weight_grad(route, x, g, w_shape, kwargs):
    """``route.weight_grad`` (a CPU weight-gradient module) called with the plan's numbers."""
    plan = plan_conv3d(x.shape, w_shape, dtype=x.dtype, **kwargs)
    return route.weight_grad(x, g, w_shape, plan.stride, plan.dilation, plan.pad_front, plan.padded_size,
                             plan.mode_code, plan.groups)


def spread_dynamic_range(rng, x, w):
    """Scale ``x`` by powers of ten from 1e-12 to 1e12 and ``w`` from 1e-6 to 1e6, element by element
    (in place): adversarial data for the transforms' normwise error."""
    x *= (10.0 ** rng.integers(-12, 13, x.shape)).astype(x.dtype)
    w *= (10.0 ** rng.integers(-6, 7, w.shape)).astype(w.dtype)


def assert_dynamic_range_within_bound(algorithm, w_shape, **kwargs):
    """``algorithm`` forced on float32 operands spread over many decades (``spread_dynamic_range``),
    within its rounding bound: the transforms' error is normwise over a tile."""
    from numba_conv3d import conv3d

    rng = np.random.default_rng(3)
    x, w, b = random_operands(rng, (1, 6, 9, 8, 10), w_shape, True, np.float32)
    spread_dynamic_range(rng, x, w)
    out = conv3d(x, w, b, algorithm=algorithm, **kwargs)
    assert_matches_transform_bound(algorithm, out, x, w, b, **kwargs)


def direct_fallback(x, w, b=None, **kwargs):
    """conv3d by the row the planner takes when the transforms are left out (``cpu.direct_sums``): what
    Winograd and FFT fall back to."""
    from numba_conv3d.cpu import direct_sums
    from numba_conv3d.planner import plan_for_arrays

    return conv3d_with(direct_sums(plan_for_arrays(x, w, b, **kwargs)).name, x, w, b, **kwargs)


def assert_nonfinite_as_direct_sums(algorithm, x, w, b=None, **kwargs):
    """A transform algorithm's result with NaN or Inf operands: NaN and Inf exactly where the oracle
    has them, and bitwise the direct sums' result (its fallback)."""
    from numba_conv3d import conv3d

    out = conv3d(x, w, b, algorithm=algorithm, **kwargs)
    expected = conv3d_reference(x, w, b, **kwargs)
    np.testing.assert_array_equal(np.isnan(out), np.isnan(expected))
    np.testing.assert_array_equal(out[np.isinf(expected)], expected[np.isinf(expected)])
    np.testing.assert_array_equal(out, direct_fallback(x, w, b, **kwargs))


# Each transform algorithm's rounding bound and the convolution arguments it takes.
TRANSFORM_BOUNDS = {
    "winograd": (winograd_rounding_bound, ("padding", "groups", "padding_mode")),
    "winograd-points": (winograd_rounding_bound, ("padding", "groups", "padding_mode")),
    "winograd-strided": (winograd_strided_rounding_bound, ("stride", "padding", "groups", "padding_mode")),
    "winograd-depth": (winograd_depth_rounding_bound, ("padding", "groups", "padding_mode")),
    "fft": (fft_rounding_bound, ("padding", "dilation", "groups", "padding_mode")),
}


def reference_input_gradient(x_shape, w, g, **kwargs):
    """The gradient of <conv3d_reference(x, w), g> with respect to x (of ``x_shape``, batched or not):
    the convolution is linear in x, so each sample's gradient is the reference applied to every unit
    input of one sample (as one batch), dotted with that sample's ``g``."""
    batched = len(x_shape) == 5
    sample_shape = tuple(x_shape[1:]) if batched else tuple(x_shape)
    size = math.prod(sample_shape)
    columns = conv3d_reference(np.eye(size).reshape((size,) + sample_shape), w, **kwargs).reshape(size, -1)
    samples = g if batched else g[np.newaxis]
    result = np.stack([(columns @ sample.reshape(-1)).reshape(sample_shape) for sample in samples])
    return result if batched else result[0]


def assert_bitwise_for_one_and_two_threads(compute):
    """``compute()`` gives bitwise the same array on one and on two of Numba's threads."""
    results = []
    for threads in (1, 2):
        numba.set_num_threads(threads)
        try:
            results.append(compute())
        finally:
            numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
    np.testing.assert_array_equal(results[0], results[1])


def assert_reduced_within_bound(out, expected, magnitude, terms):
    """``out`` (bfloat16) against the float64 ``expected``: float32 sums of ``terms`` terms of
    ``magnitude`` (the sum of their absolute values), rounded once."""
    assert out.dtype == BFLOAT16
    summed = (terms + 2) * np.finfo(np.float32).eps * magnitude
    info = ml_dtypes.finfo(BFLOAT16)
    bound = summed + float(info.eps) / 2 * (np.abs(expected) + summed) + float(info.smallest_subnormal) / 2
    assert np.all(np.abs(out.astype(np.float64) - expected) <= bound)


def assert_transposed_within_bound(out, x, w, b, terms, **kwargs):
    """A bfloat16 ``conv_transpose3d(x, w, b, **kwargs)``'s batched result ``out`` (``x`` batched)
    against the float64 oracle (``reference.transposed_reference``): float32 sums of ``terms`` terms
    rounded once (:func:`assert_reduced_within_bound`)."""
    wide_x, wide_w = x.astype(np.float64), w.astype(np.float64)
    expected = transposed_reference(wide_x, wide_w, **kwargs)
    magnitude = transposed_reference(np.abs(wide_x), np.abs(wide_w), **kwargs)
    if b is not None:
        expected += b.astype(np.float64).reshape(-1, 1, 1, 1)
        magnitude += np.abs(b.astype(np.float64)).reshape(-1, 1, 1, 1)
    assert_reduced_within_bound(out, expected, magnitude, terms)
