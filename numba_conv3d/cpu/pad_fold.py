"""Fold the gradient of a padded input back onto the input, for every padding mode.

Padding is an index map per dimension (``shape_rules.padded_source_index``): padded coordinate ``p``
copies input coordinate ``map[p]``, or is a zero (-1). The gradient flows back along the same map, as
torch's autograd sends it through ``F.pad``: each input element receives the sum of the gradients of
every padded element that copied it (zeros pads receive none: a crop). The map is a product over the
dimensions, so the fold is three one-dimensional folds, D then H then W; each sums its terms in
ascending padded order, one output row per parallel iteration: no atomics, bitwise equal for any
thread count.
"""
import math
import numpy as np
from numba import njit, prange

from .slab import index_map


@njit(parallel=True, cache=True)
def _fold_axis_kernel(source, index, out):
    """``out[a, i, b]`` = sum over ``p`` ascending with ``index[p] == i`` of ``source[a, p, b]``."""
    outer, padded, _ = source.shape
    for a in prange(outer):
        target = out[a]
        target[:] = 0
        for p in range(padded):
            i = index[p]
            if i >= 0:
                row = target[i]
                values = source[a, p]
                for b in range(row.shape[0]):
                    row[b] += values[b]


def _fold_axis(source, axis, pad_front, size, mode):
    """Fold one spatial ``axis`` (2, 3 or 4) of a 5-D C-contiguous gradient back to ``size``."""
    shape = source.shape
    outer, inner = math.prod(shape[:axis]), math.prod(shape[axis + 1:])
    out = np.empty(shape[:axis] + (size,) + shape[axis + 1:], source.dtype)
    index = index_map(shape[axis], pad_front, size, mode)
    _fold_axis_kernel(source.reshape(outer, shape[axis], inner), index, out.reshape(outer, size, inner))
    return out


def fold_padding(padded_grad, pad_front, input_size, mode):
    """Gradient of the input from the gradient of its padded copy.

    Parameters
    ----------
    padded_grad : numpy.ndarray
        C-contiguous (N, C, PD, PH, PW).
    pad_front, input_size : tuple of 3 ints
        Front pads and unpadded extents (D, H, W).
    mode : int
        Padding mode code (``shape_rules.PAD_*``).

    Returns
    -------
    numpy.ndarray
        (N, C, D, H, W); ``padded_grad`` itself where nothing is padded.
    """
    grad = padded_grad
    for axis in range(3):
        if grad.shape[2 + axis] != input_size[axis]:
            grad = _fold_axis(grad, 2 + axis, pad_front[axis], input_size[axis], mode)
    return grad
