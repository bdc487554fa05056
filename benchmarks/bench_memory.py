"""Peak memory of one convolution beyond its output, ours and torch's, each in a fresh process.

Usage: python benchmarks/bench_memory.py [--case NAME] [--threads N] [--side ours|torch] [--json]

Each side runs in its own fresh interpreter: it builds the operands, calls the convolution once to
compile (or load) and warm up, drops that result and hands the freed heap back to the system
(``malloc_trim``, so that the measured call cannot reuse resident pages), then resets the kernel's
peak-RSS mark (Linux: ``/proc/self/clear_refs``), calls once more and reads the peak (``VmHWM``).
What it prints is that peak minus the resident size before the call minus the output's bytes: the
scratch memory the call itself needed (slabs, packed weights, torch's im2col or reorder buffers), the
number issue 4 bounds.
"""
import argparse
import json
import subprocess
import sys

CHILD = r"""
import ctypes, gc, json, sys
import numpy as np
from numba_conv3d.bench_cases import FULL_SUITES

def status(field):
    with open("/proc/self/status") as f:
        line = next(l for l in f if l.startswith(field + ":"))
    return int(line.split()[1]) * 1024

side, name, threads = sys.argv[1], sys.argv[2], int(sys.argv[3])
case = next(c for c in FULL_SUITES["cpu"] if c.name == name)
x, w, b = case.operands()
if side == "torch":
    import torch
    if threads:
        torch.set_num_threads(threads)
    module = torch.nn.Conv3d(x.shape[1], w.shape[0], w.shape[2:], bias=b is not None,
                             dtype=getattr(torch, case.dtype), **case.kwargs)
    xt = torch.from_numpy(x)
    def call():
        with torch.no_grad():
            return module(xt)
    nbytes = lambda y: y.numel() * y.element_size()
else:
    import numba
    from numba_conv3d import conv3d
    if threads:
        numba.set_num_threads(threads)
    call = lambda: conv3d(x, w, b, **case.kwargs)
    nbytes = lambda y: y.nbytes
call()
gc.collect()
ctypes.CDLL("libc.so.6").malloc_trim(0)
before = status("VmRSS")
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")
y = call()
peak = status("VmHWM")
print(json.dumps({"side": side, "before": before, "peak": peak, "output": nbytes(y),
                  "beyond_output": peak - before - nbytes(y)}))
"""


def measure(side, case, threads):
    """Run ``side`` ('ours' or 'torch') on ``case`` in a fresh interpreter; its JSON record."""
    out = subprocess.run([sys.executable, "-c", CHILD, side, case, str(threads or 0)],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.splitlines()[-1])


def main():
    """Parse the command line, measure both sides, print the comparison."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", default="dense-k3-c32-64^3", help="a case of the full CPU suite")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--side", choices=("ours", "torch"), action="append",
                        help="measure only this side; repeatable (default: both)")
    parser.add_argument("--json", action="store_true", help="print one JSON record per side")
    args = parser.parse_args()
    mib = 2 ** 20
    for side in args.side or ("ours", "torch"):
        try:
            record = measure(side, args.case, args.threads)
        except subprocess.CalledProcessError as error:
            print(f"{side:5}: not measured ({error.stderr.strip().splitlines()[-1]})")
            continue
        if args.json:
            print(json.dumps(record))
            continue
        print(f"{side:5}: output {record['output'] / mib:7.1f} MiB, peak beyond the output "
              f"{record['beyond_output'] / mib:7.1f} MiB (resident before {record['before'] / mib:.0f} MiB)")


if __name__ == "__main__":
    main()
