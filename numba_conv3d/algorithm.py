"""The row type of the backends' algorithm tables (``cpu.ALGORITHMS``, ``cuda.ALGORITHMS``)."""
from collections import namedtuple


def _always(plan):
    return True


def _nothing(plan):
    return 0


Algorithm = namedtuple("Algorithm", "name reason applies workspace_bytes run prefers operands call_bytes "
                       "run_flipped", defaults=(_always, "computed", _nothing, None))
Algorithm.__doc__ = """One row of a backend's algorithm table; the planner takes the first row that applies
and prefers the plan (a forced algorithm needs only to apply).

name, reason : str
    What ``ConvPlan.algorithm`` holds, and why the planner picks it (``numba-conv3d plan`` prints it).
applies : callable(ConvPlan) -> bool
    Whether the row serves a plan.
workspace_bytes : callable(ConvPlan) -> int
    Scratch bytes per worker (a CPU thread, a CUDA thread block's shared memory).
run : callable
    CPU rows: ``run(plan, input, weight, bias, output)`` fills the batched 5-D ``output`` (batch > 0;
    ``bias`` is always an array, empty without bias). CUDA rows: ``run(plan, input, weight, bias)``
    returns the result, as ``conv3d`` does.
prefers : callable(ConvPlan) -> bool, optional
    Whether the planner takes the row for a plan it applies to (by default, always); a row that
    serves more plans than it is fastest on says here where it is.
operands : {'computed', 'stored', 'bits'}, optional
    What the row takes for a float16 or bfloat16 plan. 'computed' (default): ``applies``, ``prefers``
    and ``workspace_bytes`` see the float32 plan (``ConvPlan.computed``), and ``run`` takes it and
    float32 operands (the backend widens them, then rounds the result). 'stored': they see the plan
    itself, and ``run`` takes the input and weight as stored (their bits, ``uint16``, the weight
    C-contiguous), a float32 bias, and the output's bits (``uint16``), into which it rounds its float32
    sums. 'bits': as 'computed' for float16; for bfloat16, the rules see the float32 plan and ``run``
    takes the plan, the input's bits, the weight and bias widened to float32, and the output's bits (a
    float32 kernel that widens what it reads and rounds what it writes).
call_bytes : callable(ConvPlan) -> int, optional
    Scratch bytes a CPU call holds once, whatever its number of workers (Winograd's weight points, the
    point-by-point kernel's transformed input and products); none by default.
run_flipped : callable, optional
    CPU rows that read the input gradient's weight in place: ``run_flipped(plan, input, weight, bias,
    output)`` as ``run``, for a plan made for ``gradients.flipped_transpose(weight)`` (the input
    gradient's correlation), given ``weight`` unflipped; None (default) where the row needs the copy.
"""
