"""An independent float64 oracle for 3-D convolution, written plainly from torch's documentation.

It shares nothing with numba_conv3d: its own argument handling, ``np.pad`` for every padding mode, and
one ``einsum`` per kernel tap. Slow, simple and exact to float64 (complex128) rounding.
"""
import numpy as np

NUMPY_PAD_MODES = {"zeros": "constant", "reflect": "reflect", "replicate": "edge", "circular": "wrap"}


def _three(value):
    return tuple(value) if isinstance(value, (tuple, list)) else (value, value, value)


def reference_pads(padding, kernel, dilation):
    """(front, back) pads per dimension for an int, a 3-tuple, 'valid' or 'same' (extra at the back)."""
    if padding == "valid":
        return [(0, 0)] * 3
    if padding == "same":
        totals = [d * (k - 1) for k, d in zip(kernel, dilation)]
        return [(t // 2, t - t // 2) for t in totals]
    return [(p, p) for p in _three(padding)]


def conv3d_reference(x, w, b=None, stride=1, padding=0, dilation=1, groups=1, padding_mode="zeros"):
    """torch.nn.Conv3d's forward in float64 (complex128 for complex operands).

    Parameters
    ----------
    x : array_like
        (N, C, D, H, W) or (C, D, H, W).
    w : array_like
        (O, C / groups, KD, KH, KW).
    b : array_like or None
        (O,).
    stride, padding, dilation, groups, padding_mode
        As torch.nn.Conv3d takes them.

    Returns
    -------
    numpy.ndarray
        float64 or complex128 result of the caller's rank.
    """
    work = np.complex128 if np.iscomplexobj(x) or np.iscomplexobj(w) else np.float64
    x = np.asarray(x, dtype=work)
    w = np.asarray(w, dtype=work)
    unbatched = x.ndim == 4
    if unbatched:
        x = x[None]
    stride, dilation = _three(stride), _three(dilation)
    kernel = w.shape[2:]
    pads = reference_pads(padding, kernel, dilation)
    xp = np.pad(x, [(0, 0), (0, 0)] + pads, mode=NUMPY_PAD_MODES[padding_mode])
    out_size = [(n - d * (k - 1) - 1) // s + 1
                for n, k, s, d in zip(xp.shape[2:], kernel, stride, dilation)]
    out = np.zeros((x.shape[0], w.shape[0], *out_size), dtype=work)
    with np.errstate(invalid="ignore"):  # Inf - Inf is NaN, as in torch
        _accumulate_taps(out, xp, w, groups, kernel, stride, dilation, out_size)
    if b is not None:
        out += np.asarray(b, dtype=work)[None, :, None, None, None]
    return out[0] if unbatched else out


def _accumulate_taps(out, xp, w, groups, kernel, stride, dilation, out_size):
    for g in range(groups):
        cin_g, cout_g = xp.shape[1] // groups, w.shape[0] // groups
        xg = xp[:, g * cin_g:(g + 1) * cin_g]
        wg = w[g * cout_g:(g + 1) * cout_g]
        for kd in range(kernel[0]):
            for kh in range(kernel[1]):
                for kw in range(kernel[2]):
                    starts = (kd * dilation[0], kh * dilation[1], kw * dilation[2])
                    window = tuple(slice(s0, s0 + st * (n - 1) + 1, st)
                                   for s0, st, n in zip(starts, stride, out_size))
                    patch = xg[(slice(None), slice(None)) + window]
                    out[:, g * cout_g:(g + 1) * cout_g] += np.einsum(
                        "ncdhw,oc->nodhw", patch, wg[:, :, kd, kh, kw])


def weight_gradient_reference(x, weight_shape, g, stride=1, padding=0, dilation=1, groups=1,
                              padding_mode="zeros"):
    """The gradient of <conv3d_reference(x, w), g> with respect to w (of ``weight_shape``), float64:
    per group and kernel tap, the output gradient dotted with the padded input that tap reads."""
    x, g = np.asarray(x, np.float64), np.asarray(g, np.float64)
    stride, dilation = _three(stride), _three(dilation)
    kernel = tuple(weight_shape[2:])
    xp = np.pad(x, [(0, 0), (0, 0)] + reference_pads(padding, kernel, dilation),
                mode=NUMPY_PAD_MODES[padding_mode])
    out = np.zeros(weight_shape)
    cin_g, cout_g = weight_shape[1], weight_shape[0] // groups
    for group in range(groups):
        xg = xp[:, group * cin_g:(group + 1) * cin_g]
        gg = g[:, group * cout_g:(group + 1) * cout_g]
        for tap in np.ndindex(*kernel):
            window = tuple(slice(t * d, t * d + s * (n - 1) + 1, s)
                           for t, d, s, n in zip(tap, dilation, stride, g.shape[2:]))
            with np.errstate(invalid="ignore"):
                out[(slice(group * cout_g, (group + 1) * cout_g), slice(None)) + tap] = np.einsum(
                    "ncdhw,nodhw->oc", xg[(slice(None), slice(None)) + window], gg)
    return out


def transposed_reference(x, w, stride, padding=0, output_padding=0, groups=1, dilation=1):
    """float64 ``conv_transpose3d`` of batched ``x`` by ``w`` (C_in, C_out / groups, K...), written
    plainly: each tap's products added at ``stride * i + dilation * k``, then the padding cropped."""
    stride, padding, output_padding, dilation = (np.broadcast_to(v, 3) for v in (stride, padding,
                                                                                   output_padding, dilation))
    kernel = w.shape[2:]
    full = [(n - 1) * s + d * (k - 1) + 1 + p for n, s, d, k, p in zip(x.shape[2:], stride, dilation, kernel,
                                                                        output_padding)]
    in_per_group, out_per_group = x.shape[1] // groups, w.shape[1]
    out = np.zeros((x.shape[0], out_per_group * groups, *full))
    for g in range(groups):
        xg = x[:, g * in_per_group:(g + 1) * in_per_group]
        wg = w[g * in_per_group:(g + 1) * in_per_group]
        for taps in np.ndindex(*kernel):
            products = np.einsum("ncdhw,co->nodhw", xg, wg[(slice(None), slice(None)) + taps])
            window = tuple(slice(d * k, d * k + s * (n - 1) + 1, s)
                           for d, k, s, n in zip(dilation, taps, stride, x.shape[2:]))
            out[(slice(None), slice(g * out_per_group, (g + 1) * out_per_group)) + window] += products
    return out[(slice(None), slice(None)) + tuple(slice(p, n - p) for p, n in zip(padding, full))]
