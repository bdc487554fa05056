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
