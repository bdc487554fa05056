"""How the output is cut into parallel tasks: (batch item, group, output plane, tile of output rows,
split of the output channels), with enough splits that every thread stays busy."""
import numba
from numba.extending import register_jitable

from ..config import TASKS_PER_THREAD


@register_jitable
def channel_splits(units, tasks):
    """Split ``units`` (output channels or channel blocks) of each of ``tasks`` independent tasks into
    enough pieces for ``TASKS_PER_THREAD`` tasks per thread; never more pieces than units."""
    wanted = TASKS_PER_THREAD * numba.get_num_threads()
    return max(1, min(units, (wanted + max(tasks, 1) - 1) // max(tasks, 1)))


@register_jitable
def decode_task(task, splits, tiles, out_depth, groups):
    """Task number -> (batch item, group, output plane, row tile, split), the split varying fastest."""
    split = task % splits
    rest = task // splits
    tile = rest % tiles
    rest //= tiles
    od = rest % out_depth
    rest //= out_depth
    return rest // groups, rest % groups, od, tile, split


@register_jitable
def split_range(split, units, splits):
    """The units (channels or channel blocks) that piece ``split`` of ``splits`` covers."""
    size = (units + splits - 1) // splits
    return split * size, min(units, (split + 1) * size)
