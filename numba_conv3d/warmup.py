"""Compile (or load from Numba's on-disk cache) the CPU kernels of the common signatures ahead of use."""
import time

import numpy as np

from .api import run_plan
from .cpu import ALGORITHMS
from .jit_kernels import ensure_compiled
from .planner import plan_conv3d
from .precision import REDUCED_DTYPES

# Tiny problems that every CPU algorithm serves: (input, weight, groups, stride) with 4 output channels
# per group (the channel-vectorized and blocked kernels), 1 per group with groups=4 (depthwise, row-blocked,
# direct), a 3x3x3 kernel (Winograd), at stride 2 (stride-2 Winograd), a 1x1x1 kernel with 8 output
# channels (pointwise); FFT serves the first.
_SHAPES = (((1, 4, 3, 4, 5), (4, 4, 2, 2, 2), 1, 1), ((1, 4, 3, 4, 5), (4, 1, 2, 2, 2), 4, 1),
           ((1, 4, 3, 4, 5), (4, 4, 3, 3, 3), 1, 1), ((1, 4, 3, 4, 5), (4, 4, 3, 3, 3), 1, 2),
           ((1, 4, 3, 4, 5), (4, 4, 3, 1, 1), 1, 1), ((1, 4, 3, 4, 5), (8, 4, 1, 1, 1), 1, 1))


def _operands(algorithm, dtype):
    """A plan forcing ``algorithm`` on a tiny problem it serves, and its operands."""
    for input_shape, weight_shape, groups, stride in _SHAPES:
        try:
            plan = plan_conv3d(input_shape, weight_shape, groups=groups, stride=stride, dtype=dtype,
                               algorithm=algorithm.name)
        except ValueError:  # the algorithm does not serve this problem
            continue
        return (plan, np.ones(input_shape, dtype), np.ones(weight_shape, dtype),
                np.ones(weight_shape[0], dtype))
    return None


def warm_cache(dtypes=("float32", "float64"), report=None, jitted=False):
    """Run each CPU algorithm once per dtype on C-contiguous operands, so that later processes load the
    compiled kernels from the cache instead of compiling them (Numba caches per argument types: other
    layouts, such as strided views, compile on their first use).

    Parameters
    ----------
    dtypes : iterable of str
        Dtypes to compile for.
    report : callable(str, float), optional
        Called with the algorithm/dtype name and the seconds it took.
    jitted : bool
        Also compile, per dtype, the C function through which ``conv3d`` in users' ``@njit`` code runs
        the kernels (``jit_kernels.py``; about a minute each the first time). Not for float16 and
        bfloat16, which Numba's CPU target cannot hold.

    Returns
    -------
    float
        Total seconds.
    """
    start = time.perf_counter()
    for dtype in dtypes:
        for algorithm in ALGORITHMS:
            problem = _operands(algorithm, dtype)
            if problem is None:
                continue
            began = time.perf_counter()
            run_plan(*problem)
            if report:
                report(f"{algorithm.name} {dtype}", time.perf_counter() - began)
        if jitted and dtype not in REDUCED_DTYPES:
            began = time.perf_counter()
            ensure_compiled(dtype)
            if report:
                report(f"jitted-conv3d {dtype}", time.perf_counter() - began)
    return time.perf_counter() - start
