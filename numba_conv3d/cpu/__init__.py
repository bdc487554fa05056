"""CPU backend: the table of algorithms the planner chooses from, and the entry that runs a plan."""
from collections import namedtuple

import numpy as np

from . import blocked, direct, row_blocked

Algorithm = namedtuple("Algorithm", "name reason applies workspace_bytes run")
Algorithm.__doc__ = """One row of the CPU algorithm table.

name, reason : str
    What ``ConvPlan.algorithm`` holds, and why the planner picks it (``numba-conv3d plan`` prints it).
applies : callable(ConvPlan) -> bool
    Whether the row serves a plan; the planner takes the first row that does.
workspace_bytes : callable(ConvPlan) -> int
    Scratch bytes per worker thread.
run : callable(ConvPlan, input, weight, bias, output)
    Fills the batched 5-D ``output`` (batch > 0); ``bias`` is always an array, empty without bias.
"""

ALGORITHMS = (
    Algorithm("blocked", "real dtype, >= 4 output channels per group: blocks of 4 channels x 128 "
              "bytes of columns summed in registers (1.4-2.5x the direct kernel where it applies)",
              lambda plan: not plan.is_complex and plan.out_per_group >= blocked.BLOCK_CHANNELS,
              blocked.workspace_bytes, blocked.run),
    Algorithm("row-blocked", "real dtype, < 4 output channels per group (one-channel, depthwise): "
              "blocks of 4 output rows x 128 bytes of columns summed in registers",
              lambda plan: not plan.is_complex, row_blocked.workspace_bytes, row_blocked.run),
    Algorithm("direct", "direct convolution over per-task padded input slabs; serves every argument "
              "(complex, fewer than 4 output channels per group)",
              lambda plan: True, direct.workspace_bytes, direct.run),
)


def run(plan, x, weight, bias, out):
    """Run ``plan`` on the CPU: batched 5-D NumPy ``x`` into the preallocated 5-D ``out``."""
    if plan.batch == 0:
        return
    algorithm = next(a for a in ALGORITHMS if a.name == plan.algorithm)
    bias = np.zeros(0, x.dtype) if bias is None else np.ascontiguousarray(bias)
    algorithm.run(plan, x, weight, bias, out)
