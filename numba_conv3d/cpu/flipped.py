"""The input gradient's weight: each group's channels swapped and every kernel flipped, as a copy (the
rows that read the weight unflipped, ``Algorithm.run_flipped``, need none)."""
import numpy as np
from numba import njit, prange

from ..parallelism import safe_to_run


def flipped_transpose(weight, groups, conjugate, taps=None):
    """(C_out, C_in / g, K...) -> (C_in, C_out / g, K...), each group's channels swapped and every kernel
    flipped in D, H and W (and conjugated if ``conjugate``): the weight of the full correlation that is
    the input gradient. With ``taps`` (per dimension, the kernel taps to keep, ascending), only those
    taps, flipped: the sub-kernel of one stride phase."""
    if taps is None:
        taps = tuple(range(k) for k in weight.shape[2:])
    kept = tuple(np.asarray(t, np.int64)[::-1] for t in taps)
    sources = np.ravel_multi_index(np.meshgrid(*kept, indexing="ij"), weight.shape[2:]).reshape(-1)
    out_channels, in_per_group = weight.shape[:2]
    out = np.empty((in_per_group * groups, out_channels // groups) + tuple(t.size for t in kept),
                   weight.dtype)
    source = np.ascontiguousarray(weight).reshape(out_channels, in_per_group, -1)
    with safe_to_run():
        _gather_flipped(source, groups, sources, out.reshape(out.shape[:2] + (-1,)))
    return np.conj(out, out=out) if conjugate and np.iscomplexobj(out) else out


# Channels per side of the tiles in which ``_gather_flipped`` transposes: a tile's rows of the weight
# (TILE output channels x TILE input channels x taps) stay in L1 while its transposed rows are written.
_TILE = 16


@njit(parallel=True, cache=True)
def _gather_flipped(weight, groups, sources, out):
    """``out[c, o, t] = weight[g * O + o, c % I, sources[t]]`` for input channel c of group g (O, I:
    output and input channels per group; taps flattened), in tiles of channels."""
    out_per_group, in_per_group = out.shape[1], weight.shape[1]
    for tile in prange((out.shape[0] + _TILE - 1) // _TILE):
        for o0 in range(0, out_per_group, _TILE):
            for c in range(tile * _TILE, min(out.shape[0], (tile + 1) * _TILE)):
                g, i = c // in_per_group, c % in_per_group
                for o in range(o0, min(out_per_group, o0 + _TILE)):
                    source = weight[g * out_per_group + o, i]
                    target = out[c, o]
                    for t in range(sources.size):
                        target[t] = source[sources[t]]
