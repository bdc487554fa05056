"""How the output is cut into parallel tasks: (batch item, group, tile of output planes, tile of
output rows, split of the output channels), with enough splits that every thread stays busy.

A task grid is the tuple ``(planes, plane_tiles, rows, row_tiles, splits)``: output planes and rows
per task, tiles of them per volume, and splits of the channels (or channel blocks).
"""
import numba
import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.core.typed_passes import _reload_parfors
from numba.extending import intrinsic, overload, register_jitable

from ..config import TASKS_PER_THREAD
from ..shape_rules import ceil_div, round_up


def thread_count():
    """``numba.get_num_threads()``, also in jitted code that is cached on disk."""
    return numba.get_num_threads()


@intrinsic
def _threading_layer_thread_count(typingctx):
    # Numba's own overload of get_num_threads calls the threading layer through a ctypes pointer, an
    # address that Numba refuses to cache. The layer also gives the function to LLVM by name, as parallel
    # loops call it; like theirs, a function that calls it starts the threading layer when it is loaded
    # from the cache (Numba's reload hook of parallel functions), so that the name resolves.
    _reload_parfors()

    def codegen(context, builder, signature, args):
        context.active_code_library._reload_init.add(_reload_parfors)
        function = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(ir.IntType(types.intp.bitwidth), []), "get_num_threads")
        return builder.call(function, [])

    return types.intp(), codegen


@overload(thread_count)
def _thread_count():
    return lambda: _threading_layer_thread_count()


@register_jitable
def tasks_wanted():
    """Parallel tasks that keep every thread busy: ``TASKS_PER_THREAD`` per thread."""
    return TASKS_PER_THREAD * thread_count()


@register_jitable
def channel_splits(units, tasks):
    """Split ``units`` (output channels or channel blocks) of each of ``tasks`` independent tasks into
    enough pieces for ``tasks_wanted()`` tasks; never more pieces than units."""
    return max(1, min(units, ceil_div(tasks_wanted(), max(tasks, 1))))


@register_jitable
def balanced(extent, most, multiple):
    """Tiles of at most ``most`` (rounded down to ``multiple``, at least ``multiple``) covering
    ``extent``, made as even as possible: (size of a tile, a multiple of ``multiple``; tiles)."""
    most = max(multiple, most // multiple * multiple)
    tiles = max(1, ceil_div(extent, most))
    return round_up(ceil_div(extent, tiles), multiple), tiles


@register_jitable
def task_count(batch, groups, grid):
    """Tasks of a grid."""
    return batch * groups * grid[1] * grid[3] * grid[4]


@register_jitable
def decode_task(task, grid, groups):
    """Task number -> (batch item, group, first output plane, first output row, split), the split
    varying fastest."""
    planes, plane_tiles, rows, row_tiles, splits = grid
    split = task % splits
    rest = task // splits
    row_tile = rest % row_tiles
    rest //= row_tiles
    plane_tile = rest % plane_tiles
    rest //= plane_tiles
    return rest // groups, rest % groups, plane_tile * planes, row_tile * rows, split


@register_jitable
def split_range(split, units, splits):
    """The units (channels or channel blocks) that piece ``split`` of ``splits`` covers: ``[first,
    stop)``, empty (``first == stop``) for the last pieces when ``splits`` does not divide evenly."""
    size = ceil_div(units, splits)
    return min(units, split * size), min(units, (split + 1) * size)


def even_bounds(extent, count):
    """(``count``, 2): ``[start, stop)`` of ``count`` nearly equal pieces of ``extent``, from the numbers
    alone."""
    bounds = [extent * piece // count for piece in range(count + 1)]
    return np.array(list(zip(bounds[:-1], bounds[1:])), np.int64)
