"""Scratch memory of a CPU call beyond its output (issue 4's bound), measured in a fresh process."""
import json
import pathlib
import subprocess
import sys

import numba
import pytest

from numba_conv3d import plan_conv3d

SCRIPT = pathlib.Path(__file__).parents[1] / "benchmarks" / "bench_memory.py"


@pytest.mark.skipif(not pathlib.Path("/proc/self/clear_refs").exists(),
                    reason="peak-RSS reset needs Linux /proc/self/clear_refs")
def test_dense_call_needs_no_more_than_its_plan_says_beyond_its_output():
    threads = numba.config.NUMBA_NUM_THREADS
    out = subprocess.run([sys.executable, str(SCRIPT), "--case", "dense-k3-c64-32^3", "--side", "ours",
                          "--threads", str(threads), "--json"], capture_output=True, text=True,
                         check=True)
    record = json.loads(out.stdout.splitlines()[-1])
    plan = plan_conv3d((1, 64, 32, 32, 32), (64, 64, 3, 3, 3), padding=1)
    assert record["output"] == plan.output_bytes
    planned = plan.memory_bytes(threads) - plan.output_bytes
    # One MiB for what the plan leaves out: index maps, task bookkeeping, allocator rounding.
    assert record["beyond_output"] <= planned + 2 ** 20, (record, planned)
    assert record["beyond_output"] < 64 * 2 ** 20


_POINTS_CALL = """
import json, sys
import numpy as np
from numba_conv3d import conv3d, plan_conv3d

def resident(field):
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) * 1024 for line in status if line.startswith(field))

x = np.random.default_rng(0).standard_normal((1, 256, 4, 8, 8), dtype=np.float32)
w = np.random.default_rng(1).standard_normal((256, 256, 5, 5, 5), dtype=np.float32)
conv3d(x, w, padding=2)
before = resident("VmRSS:")
with open("/proc/self/clear_refs", "w") as refs:
    refs.write("5")
out = conv3d(x, w, padding=2)
print(json.dumps({"beyond_output": resident("VmHWM:") - before - out.nbytes, "output": out.nbytes}))
"""


@pytest.mark.skipif(not pathlib.Path("/proc/self/clear_refs").exists(),
                    reason="peak-RSS reset needs Linux /proc/self/clear_refs")
def test_point_by_point_winograd_call_needs_no_more_than_its_plan_says():
    """Its weight points and transformed input are held once per call (``call_bytes``), not per thread:
    the plan counts them beside the threads' workspace."""
    plan = plan_conv3d((1, 256, 4, 8, 8), (256, 256, 5, 5, 5), padding=2)
    assert plan.algorithm == "winograd-points" and plan.call_bytes > 0
    out = subprocess.run([sys.executable, "-c", _POINTS_CALL], capture_output=True, text=True, check=True)
    record = json.loads(out.stdout.splitlines()[-1])
    planned = plan.memory_bytes(numba.config.NUMBA_NUM_THREADS) - plan.output_bytes
    assert record["beyond_output"] <= planned + 2 ** 20, (record, planned)
