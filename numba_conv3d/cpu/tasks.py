"""How many pieces the output channels of a task are split into, so both cores stay busy."""
import numba

from ..config import TASKS_PER_THREAD


def channel_splits(units, tasks):
    """Split ``units`` (output channels or channel blocks) of each of ``tasks`` independent tasks into
    enough pieces for ``TASKS_PER_THREAD`` tasks per thread; never more pieces than units."""
    wanted = TASKS_PER_THREAD * numba.get_num_threads()
    return max(1, min(units, -(-wanted // max(tasks, 1))))
