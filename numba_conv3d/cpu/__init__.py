"""CPU backend: the table of algorithms the planner chooses from, and the entry that runs a plan."""
import numpy as np

from ..algorithm import Algorithm
from ..parallelism import safe_to_run
from . import blocked, direct, row_blocked

NAME = "cpu"


def _runner(compute):
    """An algorithm's ``run``: its jitted ``compute`` given the plan's numbers."""
    def run(plan, x, weight, bias, out):
        compute(x, weight, bias, plan.has_bias, out, plan.stride, plan.dilation, plan.pad_front,
                plan.padded_size, plan.mode_code, plan.groups)

    return run


ALGORITHMS = (
    Algorithm("blocked", "real dtype, >= 4 output channels per group: blocks of 4 channels x 3 SIMD "
              "vectors of columns summed in registers (float32 dense k3: 80-115 GFLOP/s on 2 cores, "
              "6.5x the direct kernel)",
              lambda plan: blocked.serves(plan.is_complex, plan.out_per_group),
              blocked.workspace_bytes, _runner(blocked.compute)),
    Algorithm("row-blocked", "real dtype, < 4 output channels per group (one-channel, depthwise): "
              "blocks of 4 output rows x 3 SIMD vectors of columns summed in registers (one-channel k7: "
              "2.7x the direct kernel)",
              lambda plan: not plan.is_complex, row_blocked.workspace_bytes,
              _runner(row_blocked.compute)),
    Algorithm("direct", "direct convolution over per-task padded input slabs; serves every argument "
              "(complex, fewer than 4 output channels per group)",
              lambda plan: True, direct.workspace_bytes, _runner(direct.compute)),
)


def execute(plan, input, weight, bias):
    """Run ``plan`` on NumPy operands; see :func:`numba_conv3d.conv3d` for what it returns."""
    x = input if plan.batched else input[np.newaxis]
    out = np.empty((plan.batch, plan.out_channels) + plan.output_size, plan.dtype)
    if plan.batch:
        algorithm = next(a for a in ALGORITHMS if a.name == plan.algorithm)
        bias = np.zeros(0, x.dtype) if bias is None else np.ascontiguousarray(bias)
        with safe_to_run():
            algorithm.run(plan, x, weight, bias, out)
    return out if plan.batched else out[0]
