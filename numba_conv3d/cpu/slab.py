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

from ..shape_rules import ceil_div, dilated_extent, padded_source_index
from .simd_bfloat16 import stored_element
from .tasks import decode_task, split_range
from .unlinked import call_apart


@register_jitable
def slab_shape(channels, kernel_d, dilation_d, stride_d, out_planes, rows, stride_w, columns):
    """Shape of the slab of a task of ``out_planes`` output planes: (channels, input planes, ``rows``,
    W phases, ``columns`` per phase)."""
    return (channels, (out_planes - 1) * stride_d + dilated_extent(kernel_d, dilation_d), rows,
            stride_w, columns)


@register_jitable
def phase_columns(padded_w, stride_w):
    """Columns per phase that hold the whole padded width."""
    return ceil_div(padded_w, stride_w)


@njit(cache=True)
def index_map(padded_extent, pad_front, size, mode):
    """Source index in the input for every padded coordinate (-1 reads a zero)."""
    index = np.empty(padded_extent, np.int64)
    for p in range(padded_extent):
        index[p] = padded_source_index(p, pad_front, size, mode)
    return index


def tap_sources(source_map, taps, outputs, stride, dilation):
    """(taps, outputs) int64: the source index (``source_map``'s, -1 for a zero) that tap k of output j
    reads along one dimension."""
    return source_map[np.arange(outputs)[None, :] * stride
                      + np.arange(taps)[:, None] * dilation].astype(np.int64)


@njit(cache=True)
def gather_slab(x, n, c0, origin, first, stop, row0, maps, slab):
    """Fill ``slab[c, (plane - origin) % Z, row, phase, j]`` with padded input at (c0 + c, plane,
    row0 + row, j * S + phase) for padded planes ``first <= plane < stop``, through ``maps`` (see
    :func:`index_maps`).

    Z is ``slab.shape[1]`` (Z planes from ``origin`` fill the slab in order), S is ``slab.shape[3]``,
    the stride along W; planes, rows and columns past the padded extents read zero, so a kernel may
    compute whole blocks past the output's edges. The columns that read the input itself (not its
    padding) are a plain strided copy of the input row, which LLVM vectorizes; only the few padding
    columns go through the W map.
    """
    if slab.shape[3] == 1:
        _gather_phases(x, n, c0, origin, first, stop, row0, maps, slab, 1)
    elif slab.shape[3] == 2:
        _gather_phases(x, n, c0, origin, first, stop, row0, maps, slab, 2)
    else:
        _gather_phases(x, n, c0, origin, first, stop, row0, maps, slab, slab.shape[3])


@njit(cache=True, inline='always')
def _gather_phases(x, n, c0, origin, first, stop, row0, maps, slab, phases):
    """:func:`gather_slab` for ``phases`` W phases: a constant (1 or 2, the common strides) turns the
    column arithmetic's divisions into shifts and lets LLVM vectorize the copy.

    A phase's columns are cut the same way in every row, so the cuts are made once: columns j below
    cut 0 (padded column j * S + phase before the input's first) go through the W map, then the input
    row itself (a plain strided copy, its indices unsigned so that Numba adds no negative-index
    wraparound, which would make every load a gather), then the map again up to cut 2, then zeros.
    Rows are reached through one view per plane, and the padding columns read through the map in this
    loop's own code: indexing the 5-D arrays per element, and a helper function called per padding
    column (a call that takes an array, even inlined), made a slab 2.5-3.5x as slow (14-28-column rows
    18-26 -> 6-7 ns)."""
    map_d, map_h, map_w, pad_w = maps
    channels, slots, rows, _, columns = slab.shape
    padded_d, padded_h, padded_w, width = map_d.shape[0], map_h.shape[0], map_w.shape[0], x.shape[4]
    cuts = np.empty((phases, 3), np.int64)
    for phase in range(phases):
        cuts[phase, 0] = _first_column(pad_w, phase, phases, columns)
        cuts[phase, 1] = max(cuts[phase, 0], _first_column(pad_w + width, phase, phases, columns))
        cuts[phase, 2] = max(cuts[phase, 1], _first_column(padded_w, phase, phases, columns))
    for c in range(channels):
        for plane in range(first, stop):
            sd = map_d[plane] if plane < padded_d else -1
            target_plane = slab[c, (plane - origin) % slots]
            source_plane = x[n, c0 + c, max(sd, 0)]  # read only where sd is a source (>= 0)
            for row in range(rows):
                sh = map_h[row0 + row] if row0 + row < padded_h else -1
                if sd < 0 or sh < 0:
                    target_plane[row] = 0
                    continue
                source = source_plane[sh]
                for phase in range(phases):
                    target = target_plane[row, phase]
                    inside_first, inside_stop, padding_stop = cuts[phase, 0], cuts[phase, 1], cuts[phase, 2]
                    for side in range(2):  # the padding columns before the input row, then after it
                        for j in range(inside_stop if side else 0, padding_stop if side else inside_first):
                            sw = map_w[j * phases + phase] if j * phases + phase < padded_w else -1
                            target[j] = source[sw] if sw >= 0 else 0
                    shift = phase - pad_w
                    for j in range(inside_first, inside_stop):
                        target[np.uint64(j)] = source[np.uint64(j * phases + shift)]
                    for j in range(padding_stop, columns):
                        target[np.uint64(j)] = 0


@register_jitable
def _first_column(padded_column, phase, phases, columns):
    """First column (of ``columns``) of W phase ``phase`` at or past ``padded_column``."""
    return min(columns, max(0, ceil_div(padded_column - phase, phases)))


@njit(cache=True, inline='always')
def padded_row(x, n, c, sd, sh, maps, first, width, row):
    """``row[:width]`` = padded input columns ``[first, first + width)`` of row (n, c, sd, sh) through
    the W map (zero past it); the columns inside the input are a plain copy, over slices so that LLVM
    knows the extents (indexing the whole arrays took 4-10x as long; the alternatives measured are in
    docs/ARCHITECTURE.md, "Where the time goes"), and the padding columns read in this function's own
    code (through a helper's call, even one never taken, a row took 2.2-3.6x as long). A
    float32 ``row`` from the bfloat16 bits of a uint16 ``x`` holds their float32 values
    (``simd_bfloat16.stored_element``)."""
    map_w, pad_w = maps[2], maps[3]
    source = x[n, c, sd, sh]
    inside_first = min(max(pad_w - first, 0), width)
    inside_stop = max(inside_first, min(pad_w + x.shape[4] - first, width))
    for side in range(2):  # the padding columns before the input row, then after it
        for j in range(inside_stop if side else 0, width if side else inside_first):
            sw = map_w[first + j] if first + j < map_w.shape[0] else -1
            row[j] = stored_element(row, source[sw] if sw >= 0 else source.dtype.type(0))
    inside = source[first + inside_first - pad_w:]
    target = row[inside_first:inside_stop]
    for j in range(inside_stop - inside_first):
        target[j] = stored_element(target, inside[j])


@njit(cache=True)
def index_maps(x, padded, pad_front, mode):
    """The D, H and W index maps of batched input ``x`` for the plan's pads and mode, and the front
    pad along W: padded columns ``[pad, pad + W)`` read input columns ``[0, W)`` in every mode."""
    depth, height, width = x.shape[2:]
    return (index_map(padded[0], pad_front[0], depth, mode),
            index_map(padded[1], pad_front[1], height, mode),
            index_map(padded[2], pad_front[2], width, mode), pad_front[2])


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


@njit(cache=True, inline='always')
def advance_ring(x, n, g, groups, od0, od, oh0, stride, maps, slab):
    """Make the ring ``slab`` of a task from output plane ``od0`` hold the padded planes ``[od *
    stride_d, od * stride_d + Z)`` that output plane ``od`` reads (Z = ``slab.shape[1]``): all of them
    at ``od0``, later those the previous output plane did not read. Returns the slot of the first."""
    first_plane, slots = od * stride[0], slab.shape[1]
    held_stop = first_plane if od == od0 else (od - 1) * stride[0] + slots
    call_apart(gather_slab, x, n, g * (x.shape[1] // groups), od0 * stride[0],
               max(held_stop, first_plane), first_plane + slots, oh0 * stride[1], maps, slab)
    return (od - od0) * stride[0] % slots
