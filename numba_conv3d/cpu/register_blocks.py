"""What the register-blocked CPU kernels (``blocked.py``, ``row_blocked.py``, ``channel_vectorized.py``)
share: how a convolution is cut into tasks (``task_grid``) and a task's ring slab of padded input planes
sized and entered plane by plane, the taps' offsets in it, how an output row is cut into register blocks
(``row_blocks``), and how a block reaches the output (``store_output``: vector stores when whole, else
through a stack buffer)."""
import math
import numba
import numpy as np
from numba import njit
from numba.extending import register_jitable

from ..config import (BLOCK_CHANNELS, BLOCK_ROWS, BLOCK_VECTORS, SLAB_BYTES, STATIONARY_SLAB_BYTES,
                      TASKS_PER_THREAD, VECTOR_BYTES)
from ..shape_rules import PAD_ZEROS, ceil_div, dilated_extent, round_up
from .pointers import element_pointer, stack_buffer
from .simd import store_block, store_rows, vector_lanes
from .simd_bfloat16 import stored_element
from .slab import advance_ring, index_maps, slab_shape
from .tasks import balanced, channel_splits, tasks_wanted, thread_count

# Vectors per row of the narrower blocks that end a row.
NARROW_VECTORS = BLOCK_VECTORS - 1
# Elements of the stack buffer a partial block passes through on its way to the output: the largest
# block, BLOCK_CHANNELS channels (or BLOCK_ROWS rows) x BLOCK_VECTORS vectors (of float32) in any
# arrangement.
STACK_ITEMS = max(BLOCK_CHANNELS, BLOCK_ROWS) * BLOCK_VECTORS * VECTOR_BYTES // 4


@register_jitable
def tap_columns(kernel, dilation, stride):
    """Columns (per W phase) past an output block's own that its furthest tap along W reads."""
    return (kernel[2] - 1) * dilation[2] // stride[2]


@register_jitable
def slab_columns(kernel, dilation, stride, out_width, itemsize):
    """Columns per phase of a register-blocked kernel's slab rows: the output width rounded up to
    whole vectors plus the furthest tap's offset, rounded up to whole vectors so that every row
    starts on a vector boundary."""
    lanes = VECTOR_BYTES // itemsize
    return round_up(round_up(out_width, lanes) + tap_columns(kernel, dilation, stride), lanes)


@register_jitable
def _row_tiling(out_height, out_width, itemsize, in_per_group, kernel, stride, dilation, multiple):
    """Output rows per task (a multiple of ``multiple``) and tiles of them per plane, so that the
    slab of one output plane stays within ``SLAB_BYTES`` (unless one output row needs more); and the
    bytes of one input plane of a task's slab."""
    row_bytes = _slab_row_bytes(out_width, itemsize, kernel, stride, dilation)
    kernel_planes, kernel_rows = dilated_extent(kernel[0], dilation[0]), dilated_extent(kernel[1],
                                                                                      dilation[1])
    plane_rows = SLAB_BYTES // (in_per_group * kernel_planes * row_bytes)
    rows, row_tiles = balanced(out_height, (plane_rows - kernel_rows) // stride[1] + 1, multiple)
    return rows, row_tiles, _input_plane_bytes(rows, out_width, itemsize, in_per_group, kernel, stride,
                                               dilation)


@register_jitable
def _slab_row_bytes(out_width, itemsize, kernel, stride, dilation):
    """Bytes of one input row of a register-blocked kernel's slab, all its W phases."""
    return stride[2] * slab_columns(kernel, dilation, stride, out_width, itemsize) * itemsize


@register_jitable
def _input_plane_bytes(rows, out_width, itemsize, in_per_group, kernel, stride, dilation):
    """Bytes of the input plane of a slab whose tasks compute ``rows`` output rows."""
    return (in_per_group * ((rows - 1) * stride[1] + dilated_extent(kernel[1], dilation[1]))
            * _slab_row_bytes(out_width, itemsize, kernel, stride, dilation))


@register_jitable
def task_grid(batch, out_size, itemsize, in_per_group, kernel, stride, dilation, units, groups,
              multiple):
    """How a register-blocked kernel cuts its output into tasks (a grid, see ``tasks.py``): tiles of
    output rows (a multiple of ``multiple``) where the slab one output plane reads would exceed
    ``SLAB_BYTES`` (unless one output row needs more); several output planes per task, as many as
    leave ``tasks_wanted()`` tasks. A task computes its planes in turn over a ring slab, so that each
    input plane is gathered once per task rather than once per output plane that reads it."""
    out_depth, out_height, out_width = out_size
    rows, row_tiles, _ = _row_tiling(out_height, out_width, itemsize, in_per_group, kernel, stride,
                                     dilation, multiple)
    volumes = max(1, batch * groups * row_tiles)
    planes, plane_tiles = balanced(out_depth, out_depth // ceil_div(tasks_wanted(), volumes), 1)
    splits = channel_splits(units, volumes * plane_tiles)
    return planes, plane_tiles, rows, row_tiles, splits


@register_jitable
def _even_splits(units, pieces):
    """Splits of ``units`` for about ``pieces`` (at least one), none left empty (``split_range`` sizes
    them ``ceil(units / splits)``)."""
    return ceil_div(units, ceil_div(units, max(1, min(units, pieces))))


@register_jitable
def _stationary_split(wanted, volumes, units, out_depth, fitting, channels_first):
    """(splits of the units, planes per task, plane tiles) that cut ``volumes`` into about ``wanted``
    tasks: the units first, then the planes (``channels_first``), or the other way round."""
    if channels_first:
        splits = _even_splits(units, ceil_div(wanted, volumes))
        most = out_depth // ceil_div(wanted, volumes * splits)
        planes, plane_tiles = balanced(out_depth, min(fitting, most), 1)
        return splits, planes, plane_tiles
    planes, plane_tiles = balanced(out_depth, min(fitting, out_depth // ceil_div(wanted, volumes)), 1)
    return _even_splits(units, ceil_div(wanted, volumes * plane_tiles)), planes, plane_tiles


@register_jitable
def slowest_thread_work(threads, volumes, units, splits, planes, plane_tiles):
    """Units x planes that the busiest of ``threads`` threads computes, its tasks taken in rounds of
    ``threads`` (equal tasks: at most ``ceil(units / splits)`` units and ``planes`` planes each)."""
    return ceil_div(volumes * splits * plane_tiles, threads) * ceil_div(units, splits) * planes


@register_jitable
def stationary_grid(batch, out_size, itemsize, in_per_group, kernel, stride, dilation, units, groups,
                    multiple, weight_bytes):
    """The grid of a kernel whose task gathers the input of all its output planes at once
    (``channel_vectorized.py``): rows tiled as ``task_grid`` tiles them, unless whole planes leave
    the busiest thread no more strips of rows (``_stationary_rows``; on a tie each task of whole planes
    reads the weights once, not once per row tile: float32 2x7x7 with 512 channels 9.1 -> 6.0 ms),
    at most as many planes per task as
    keep its slab within ``STATIONARY_SLAB_BYTES``. The slab's bytes are counted with rows of whole
    vectors, as the blocked kernels' slabs hold them: an upper bound of this kernel's narrower rows,
    kept because its crossovers were measured with it. Where a group's weights
    (``weight_bytes``) outweigh its input (the deep layers' small volumes), the output channels
    (``units``) are split over tasks first, then the planes, so that each weight is read once per
    task; else the planes first, as ``task_grid`` splits them, so that each input plane is gathered
    once per task. Each task gathers its slab anew (the whole input, where the channels are split),
    so the grid aims at few tasks: as many as the independent pieces (samples, groups, row tiles)
    rounded up to a multiple of the threads, unless ``tasks_wanted()`` tasks leave the busiest thread
    less work (``stationary_tasks``)."""
    rows, row_tiles, input_plane_bytes = _row_tiling(out_size[1], out_size[2], itemsize, in_per_group,
                                                     kernel, stride, dilation, multiple)
    grid, work = _stationary_rows(batch, out_size, in_per_group, kernel, stride, dilation, units, groups,
                                  multiple, weight_bytes, rows, row_tiles, input_plane_bytes)
    whole_rows = round_up(out_size[1], multiple)
    whole_plane_bytes = _input_plane_bytes(whole_rows, out_size[2], itemsize, in_per_group, kernel, stride,
                                           dilation)
    if row_tiles == 1 or STATIONARY_SLAB_BYTES < whole_plane_bytes * dilated_extent(kernel[0], dilation[0]):
        return grid
    whole, whole_work = _stationary_rows(batch, out_size, in_per_group, kernel, stride, dilation, units,
                                         groups, multiple, weight_bytes, whole_rows, 1, whole_plane_bytes)
    return whole if whole_work <= work else grid


@register_jitable
def _stationary_rows(batch, out_size, in_per_group, kernel, stride, dilation, units, groups, multiple,
                     weight_bytes, rows, row_tiles, input_plane_bytes):
    """:func:`stationary_grid` for its output rows cut into ``row_tiles`` tiles of ``rows`` rows, each
    plane of a task's slab ``input_plane_bytes``; and the work of its busiest thread (units x planes x
    strips of ``multiple`` rows, see ``slowest_thread_work``)."""
    volumes = max(1, batch * groups * row_tiles)
    kernel_planes = dilated_extent(kernel[0], dilation[0])
    fitting = (STATIONARY_SLAB_BYTES // input_plane_bytes - kernel_planes) // stride[0] + 1
    channels_first = weight_bytes >= input_plane_bytes * ((out_size[0] - 1) * stride[0] + kernel_planes)
    threads = thread_count()
    splits, planes, plane_tiles = stationary_tasks(threads, volumes, units, out_size[0], fitting,
                                                   channels_first)
    work = (slowest_thread_work(threads, volumes, units, splits, planes, plane_tiles)
            * ceil_div(rows, multiple))
    return (planes, plane_tiles, rows, row_tiles, splits), work


@register_jitable
def stationary_tasks(threads, volumes, units, out_depth, fitting, channels_first):
    """(splits, planes per task, plane tiles) of :func:`stationary_grid` for ``threads`` threads: the
    few tasks unless ``TASKS_PER_THREAD`` per thread leave the busiest thread less work."""
    few = _stationary_split(round_up(volumes, threads), volumes, units, out_depth, fitting, channels_first)
    many = _stationary_split(TASKS_PER_THREAD * threads, volumes, units, out_depth, fitting, channels_first)
    if (slowest_thread_work(threads, volumes, units, many[0], many[1], many[2])
            < slowest_thread_work(threads, volumes, units, few[0], few[1], few[2])):
        return many
    return few


@register_jitable
def blocked_slab_shape(in_per_group, kernel, dilation, stride, out_width, itemsize, grid, out_planes):
    """Slab of a register-blocked kernel's task of ``grid``: the input planes of ``out_planes`` output
    planes (one for a ring slab)."""
    return slab_shape(in_per_group, kernel[0], dilation[0], stride[0], out_planes,
                      (grid[2] - 1) * stride[1] + dilated_extent(kernel[1], dilation[1]), stride[2],
                      slab_columns(kernel, dilation, stride, out_width, itemsize))


def blocked_workspace_bytes(plan, units, multiple, columns_multiple=1):
    """Scratch bytes one worker thread of a register-blocked kernel holds: its slab (the stack
    block is negligible); its grid splits ``units`` and tiles rows by ``multiple``, and its blocks
    cover the output rows' width rounded up to ``columns_multiple``."""
    itemsize = np.dtype(plan.dtype).itemsize
    width = round_up(plan.output_size[2], columns_multiple)
    grid = task_grid(plan.batch, plan.output_size[:2] + (width,), itemsize, plan.in_per_group,
                     plan.kernel_size, plan.stride, plan.dilation, units, plan.groups, multiple)
    slab = blocked_slab_shape(plan.in_per_group, plan.kernel_size, plan.dilation, plan.stride, width,
                              itemsize, grid, 1)
    return math.prod(slab) * itemsize


@register_jitable
def fill_tap_offsets(offsets, kernel, dilation, slab_dims, first_slot):
    """``offsets[t]`` = flat slab offset of tap t = (kd, kh, kw) relative to its output block's first
    element, the block's first input plane being in slot ``first_slot`` of the slab's ring of
    planes."""
    _, slots, rows, phases, columns = slab_dims
    t = 0
    for kz in range(kernel[0]):
        slot = (first_slot + kz * dilation[0]) % slots
        for ky in range(kernel[1]):
            for kx in range(kernel[2]):
                col = kx * dilation[2]
                offsets[t] = (((slot * rows + ky * dilation[1]) * phases + col % phases) * columns
                              + col // phases)
                t += 1


@register_jitable
def reading_offsets(index_map, origin, outputs, output_step, extent, dilation):
    """``(first, stop)``: the smallest range of kernel offsets k in ``[0, extent)`` that holds every k
    at which at least one of ``outputs`` outputs, ``output_step`` apart from padded coordinate
    ``origin``, reads the input through ``index_map`` rather than a zero of the padding (or past the
    padded extent); empty if ``first >= stop``. Zero padding lies only at the ends, so one output's
    offsets are consecutive; several outputs far apart on a small input may leave offsets inside the
    range at which none reads the input, and those add zeros."""
    first, stop = extent, 0
    for k in range(extent):
        for r in range(outputs):
            at = origin + r * output_step + k * dilation
            if at < index_map.shape[0] and index_map[at] >= 0:
                first, stop = min(first, k), k + 1
                break
    return first, stop


@register_jitable
def pads_with_zeros(x, padded, mode):
    """Whether the batched input ``x`` is padded with zeros to ``padded`` (some of it)."""
    pads = padded[0] != x.shape[2] or padded[1] != x.shape[3] or padded[2] != x.shape[4]
    return mode == PAD_ZEROS and pads


@register_jitable
def skips_padding(x, weight, padded, mode):
    """Whether the kernels skip the taps that read only zero padding (``fill_tap_runs``): where the
    batched input ``x`` is padded with zeros to ``padded`` and every weight is finite (an Inf or NaN
    weight times those zeros is NaN). The finiteness pass over the weights runs only then."""
    return pads_with_zeros(x, padded, mode) and np.isfinite(weight).all()


@register_jitable
def fill_tap_runs(runs, kernel, stride, dilation, maps, od, oh, rows, skip_padding):
    """Fill ``runs`` (2 x KD entries) with the runs ``[runs[2 i], runs[2 i + 1])`` of taps (numbered
    as ``fill_tap_offsets`` numbers them, kd, kh, kw) that output plane ``od`` reads in the input
    rather than in zero padding, for a block of ``rows`` output rows from ``oh`` (``reading_offsets``
    along D and H); return how many.
    Skipping the others leaves out products with zero: a deep layer's 4x8x8 output reads zero padding
    at a quarter of its taps or more. Without ``skip_padding`` (a weight is Inf or NaN, whose product
    with a zero padding is NaN, as in torch), one run of every tap."""
    if not skip_padding:
        runs[0], runs[1] = 0, kernel[0] * kernel[1] * kernel[2]
        return 1
    kd_first, kd_stop = reading_offsets(maps[0], od * stride[0], 1, 0, kernel[0], dilation[0])
    kh_first, kh_stop = reading_offsets(maps[1], oh * stride[1], rows, stride[1], kernel[1],
                                        dilation[1])
    plane = kernel[1] * kernel[2]
    count = 0
    for kd in range(kd_first, kd_stop):
        first, stop = kd * plane + kh_first * kernel[2], kd * plane + kh_stop * kernel[2]
        if first >= stop:
            continue
        if count and runs[2 * count - 1] == first:
            runs[2 * count - 1] = stop
        else:
            runs[2 * count], runs[2 * count + 1] = first, stop
            count += 1
    return count


@njit(cache=True)
def tap_offsets(kernel, dilation, slab_dims):
    """Flat slab offset of every tap (kd, kh, kw) relative to its output block's first element, the
    slab's planes in order."""
    offsets = np.empty(kernel[0] * kernel[1] * kernel[2], np.int64)
    fill_tap_offsets(offsets, kernel, dilation, slab_dims, 0)
    return offsets


@njit(cache=True)
def blocked_setup(x, in_per_group, kernel, stride, dilation, pad_front, padded, mode, out_width,
                  grid):
    """What a register-blocked kernel computes once per call: the index maps and the shape of the
    ring slab of a task of ``grid``."""
    maps = index_maps(x, padded, pad_front, mode)
    return maps, blocked_slab_shape(in_per_group, kernel, dilation, stride, out_width, x.itemsize,
                                    grid, 1)


@njit(cache=True, inline='always')
def enter_plane(x, n, g, groups, od0, od, oh0, stride, dilation, kernel, maps, slab, taps):
    """Ready a task from output plane ``od0`` for output plane ``od`` (planes in turn): its ring
    ``slab`` gathers the input planes it lacks, and ``taps`` gets the taps' offsets for the plane."""
    fill_tap_offsets(taps, kernel, dilation, slab.shape,
                     advance_ring(x, n, g, groups, od0, od, oh0, stride, maps, slab))


@njit(cache=True, inline='always')
def store_output(block, out, start, channel_step, valid_channels, valid_rows, width, rows, vectors,
                 sums_dtype):
    """Write the first ``valid_channels`` x ``valid_rows`` x ``width`` columns of ``block`` (``rows x
    vectors`` per channel of ``sums_dtype``) to the C-contiguous ``out`` from flat element ``start``,
    channels ``channel_step`` apart and rows an output row apart (to a uint16 ``out`` as bfloat16 bits,
    ``simd_bfloat16.stored_element``): vector stores when the block is whole, else through a stack buffer."""
    lanes = vector_lanes(block)
    channels = len(block) // (rows * vectors)
    if valid_channels == channels and valid_rows == rows and width == vectors * lanes:
        store_rows(block, out, start, channel_step, out.shape[4], rows, vectors)
        return
    buffer = numba.carray(stack_buffer(STACK_ITEMS, sums_dtype), (channels, rows, vectors * lanes))
    store_block(block, buffer, 0)
    for c in range(valid_channels):
        for r in range(valid_rows):
            target = numba.carray(element_pointer(out, start + c * channel_step + r * out.shape[4]),
                                  width)
            for j in range(width):
                target[j] = stored_element(out, buffer[c, r, j])


@register_jitable
def output_offset(out, n, channel, od, oh, col):
    """Flat element offset of ``out[n, channel, od, oh, col]`` (C-contiguous)."""
    return (((n * out.shape[1] + channel) * out.shape[2] + od) * out.shape[3] + oh) * out.shape[4] + col


@register_jitable
def row_blocks(out_width, lanes):
    """How a row of ``out_width`` output columns is cut into register blocks: the numbers of blocks
    of ``BLOCK_VECTORS``, of ``NARROW_VECTORS`` and of 1 vectors, in that order along the row (the
    last vector may be partial). A row of 4 vectors is two blocks of 2 rather than 3 + 1: a block of
    one vector per row keeps too few sums in flight to hide the multiply-add latency."""
    vectors = ceil_div(out_width, lanes)
    whole, rest = divmod(vectors, BLOCK_VECTORS)
    if rest == 0 or vectors == 1:
        return whole, 0, rest
    if rest == NARROW_VECTORS:
        return whole, 1, 0
    return whole - 1, 2, 0


@register_jitable
def slab_offset(slab, row, col, stride):
    """Flat offset in a ring slab of output (row, col), the row relative to the task's first: where
    the block there reads its first tap, before the tap's offset."""
    return row * stride[1] * slab.shape[3] * slab.shape[4] + col
