"""Running a CPU plan: its algorithm's row of ``cpu.ALGORITHMS`` on NumPy operands, into a new result."""
import functools

import numpy as np

from ..parallelism import safe_to_run
from ..precision import narrow, widen
from . import ALGORITHMS


@functools.lru_cache(maxsize=256)
def _launch(plan):
    """What running ``plan`` needs beyond its operands, worked out once per plan: the algorithm's row of
    ``ALGORITHMS``, the plan its kernel runs (``plan.rows_merged()``), the batched output shape, the
    input and output shapes as the kernel reads them (rows side by side where the plan merges them)."""
    kernel_plan = plan.rows_merged()
    batched = (plan.batch, plan.out_channels) + plan.output_size
    row = next(a for a in ALGORITHMS if a.name == plan.algorithm)
    return (row, kernel_plan, batched, (plan.batch, plan.in_channels) + kernel_plan.input_size,
            (plan.batch, plan.out_channels) + kernel_plan.output_size)


def reads_flipped(plan):
    """Whether ``plan``'s row runs from the unflipped weight of an input gradient
    (``Algorithm.run_flipped``, :func:`execute_flipped`)."""
    return _launch(plan)[0].run_flipped is not None


def execute(plan, input, weight, bias):
    """Run ``plan`` on NumPy operands; see :func:`numba_conv3d.conv3d` for what it returns.
    float16 and bfloat16 operands are widened to float32 and the float32 result is rounded once; a row
    that reads the input as stored (``Algorithm.operands``) gets its bits instead and rounds its
    float32 sums into the bits of the result (the weight, too, as stored or widened, as it says)."""
    if plan.dtype == plan.compute_dtype:
        return _run(plan, input, weight, bias, plan.dtype)
    operands = _launch(plan)[0].operands
    if operands == "computed" or (operands == "bits" and plan.dtype != "bfloat16"):
        return narrow(execute(plan.computed(), widen(input), widen(weight), widen(bias)), plan.dtype)
    weight = widen(weight) if operands == "bits" else np.ascontiguousarray(weight).view(np.uint16)
    return _run(plan, input.view(np.uint16), weight, widen(bias), plan.dtype)


def execute_flipped(plan, input, weight, bias):
    """Run ``plan``, made for the weight ``gradients.flipped_transpose(weight)`` (the input gradient's
    correlation) with a row that reads it so (:func:`reads_flipped`), on NumPy operands of its dtype with
    ``weight`` unflipped."""
    return _run(plan, input, weight, bias, plan.dtype, flipped=True)


def _run(plan, input, weight, bias, out_dtype, flipped=False):
    """``plan``'s algorithm (its ``run_flipped`` where ``flipped``) on its operands into a new
    ``out_dtype`` result of the caller's rank (a bfloat16 one as its uint16 bits)."""
    row, kernel_plan, batched, input_shape, output_shape = _launch(plan)
    run = row.run_flipped if flipped else row.run
    out = np.empty(batched, out_dtype)
    if plan.batch:
        bias = _NO_BIAS[plan.compute_dtype] if bias is None else np.ascontiguousarray(bias)
        # Like torch, a strided input is first copied into C order: the kernels then compile for
        # C-contiguous inputs only, once per dtype rather than once per dtype and layout.
        x = np.ascontiguousarray(input).reshape(input_shape)
        kernel_out = out.reshape(output_shape)
        with safe_to_run():
            run(kernel_plan, x, weight, bias, kernel_out if out.itemsize != 2 else kernel_out.view(np.uint16))
    return out if plan.batched else out[0]


# The empty bias array the kernels take when a convolution has none, per dtype name (never written).
_NO_BIAS = {name: np.zeros(0, name) for name in ("float32", "float64", "complex64", "complex128")}
