"""Padded input slabs, shared by the CPU kernels.

A task reads a few input planes; it gathers them into a small padded slab through one index map per
dimension (every padding mode is an index map, so no padded copy of the whole volume exists). Each row
is split into ``stride_w`` phases, so that a kernel's innermost loop walks contiguous memory whatever
the stride: padded column ``j * stride_w + phase`` lands at ``slab[c, z, row, phase, j]``.

A slab may be a ring of planes: a task that computes several output planes one after another keeps
the planes they share and gathers only the new ones, plane p into slot ``(p - first) % slots`` where
``first`` is the task's first padded plane.
"""
import numpy as np
from numba import njit
from numba.extending import register_jitable

from ..shape_rules import dilated_extent, padded_source_index
from .tasks import decode_task, split_range


@register_jitable
def slab_shape(channels, kernel_d, dilation_d, stride_d, out_planes, rows, stride_w, columns):
    """Shape of the slab of a task of ``out_planes`` output planes: (channels, input planes, ``rows``,
    W phases, ``columns`` per phase)."""
    return (channels, (out_planes - 1) * stride_d + dilated_extent(kernel_d, dilation_d), rows,
            stride_w, columns)


@register_jitable
def phase_columns(padded_w, stride_w):
    """Columns per phase that hold the whole padded width."""
    return (padded_w + stride_w - 1) // stride_w


@njit(cache=True)
def index_map(padded_extent, pad_front, size, mode):
    """Source index in the input for every padded coordinate (-1 reads a zero)."""
    index = np.empty(padded_extent, np.int64)
    for p in range(padded_extent):
        index[p] = padded_source_index(p, pad_front, size, mode)
    return index


@njit(cache=True)
def gather_slab(x, n, c0, origin, first, stop, row0, map_d, map_h, map_w, slab):
    """Fill ``slab[c, (plane - origin) % Z, row, phase, j]`` with padded input at (c0 + c, plane,
    row0 + row, j * S + phase) for padded planes ``first <= plane < stop``.

    Z is ``slab.shape[1]`` (Z planes from ``origin`` fill the slab in order), S is ``slab.shape[3]``,
    the stride along W; planes, rows and columns past the padded extents read zero, so a kernel may
    compute whole blocks past the output's edges.
    """
    channels, slots, rows, phases, columns = slab.shape
    padded_d, padded_h, padded_w = map_d.shape[0], map_h.shape[0], map_w.shape[0]
    for c in range(channels):
        for plane in range(first, stop):
            z = (plane - origin) % slots
            sd = map_d[plane] if plane < padded_d else -1
            for row in range(rows):
                sh = map_h[row0 + row] if row0 + row < padded_h else -1
                for phase in range(phases):
                    for j in range(columns):
                        col = j * phases + phase
                        sw = map_w[col] if col < padded_w else -1
                        if sd < 0 or sh < 0 or sw < 0:
                            slab[c, z, row, phase, j] = 0
                        else:
                            slab[c, z, row, phase, j] = x[n, c0 + c, sd, sh, sw]


@njit(cache=True)
def index_maps(x, padded, pad_front, mode):
    """The D, H and W index maps of batched input ``x`` for the plan's pads and mode."""
    depth, height, width = x.shape[2:]
    return (index_map(padded[0], pad_front[0], depth, mode),
            index_map(padded[1], pad_front[1], height, mode),
            index_map(padded[2], pad_front[2], width, mode))


@register_jitable
def task_start(x, task, grid, units, groups, slab_dims):
    """What every kernel's task starts with: its coordinates, its share of the ``units`` (output
    channels or channel blocks) and an empty slab.

    A task of ``grid`` (see ``tasks.py``) computes output planes ``[od0, od0 + planes)`` and rows
    ``[oh0, oh0 + rows)`` (clipped to the output).

    Returns
    -------
    n, g, od0, oh0, first, stop, slab
        Batch item, group, first output plane and row, the units ``[first, stop)``, the slab.
    """
    n, g, od0, oh0, split = decode_task(task, grid, groups)
    first, stop = split_range(split, units, grid[4])
    return n, g, od0, oh0, first, stop, np.empty(slab_dims, x.dtype)


@register_jitable
def task_slab(x, task, grid, units, groups, stride, maps, slab_dims):
    """:func:`task_start`, with the slab gathered: the input planes and rows of the task, from padded
    input plane ``od0 * stride_d`` and row ``oh0 * stride_h``."""
    n, g, od0, oh0, first, stop, slab = task_start(x, task, grid, units, groups, slab_dims)
    advance_ring(x, n, g, groups, od0, od0, oh0, stride, maps, slab)
    return n, g, od0, oh0, first, stop, slab


@register_jitable
def advance_ring(x, n, g, groups, od0, od, oh0, stride, maps, slab):
    """Make the ring ``slab`` of a task from output plane ``od0`` hold the padded planes ``[od *
    stride_d, od * stride_d + Z)`` that output plane ``od`` reads (Z = ``slab.shape[1]``): all of them
    at ``od0``, later those the previous output plane did not read. Returns the slot of the first."""
    first_plane, slots = od * stride[0], slab.shape[1]
    held_stop = first_plane if od == od0 else (od - 1) * stride[0] + slots
    gather_slab(x, n, g * (x.shape[1] // groups), od0 * stride[0], max(held_stop, first_plane),
                first_plane + slots, oh0 * stride[1], maps[0], maps[1], maps[2], slab)
    return (od - od0) * stride[0] % slots
