"""Start-up cost in fresh processes: import, then the first conv3d call, with a cold Numba cache (an
empty NUMBA_CACHE_DIR) and then warm (the same directory, medians of the repeats).

Usage: python benchmarks/bench_startup.py [--repeat N] [--dtype float32] [--installed-cache]

With --installed-cache, only warm runs against the cache where the installed package keeps it (run
`numba-conv3d warmup` first): what a user sees after installing.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

CHILD = """
import json, time
start = time.perf_counter()
import numpy as np
import numba_conv3d
imported = time.perf_counter()
x = np.ones((1, 8, 16, 16, 16), {dtype!r})
w = np.ones((8, 8, 3, 3, 3), {dtype!r})
numba_conv3d.conv3d(x, w, np.ones(8, {dtype!r}), padding=1)
called = time.perf_counter()
print(json.dumps({{"import_s": imported - start, "first_call_s": called - imported,
                  "total_s": called - start}}))
"""


def measure(cache_dir, dtype):
    """One fresh interpreter: seconds to import and to run the first call (``cache_dir`` None: Numba's
    default cache location)."""
    env = dict(os.environ, NUMBA_CACHE_DIR=cache_dir) if cache_dir else dict(os.environ)
    done = subprocess.run([sys.executable, "-c", CHILD.format(dtype=dtype)], env=env, check=True,
                          capture_output=True, text=True)
    return json.loads(done.stdout)


def main():
    """Parse the command line, run, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--installed-cache", action="store_true")
    args = parser.parse_args()
    print(f"{'':6} {'import s':>9} {'first call s':>13} {'total s':>8}")
    if args.installed_cache:
        warm = [measure(None, args.dtype) for _ in range(args.repeat)]
    else:
        with tempfile.TemporaryDirectory() as cache_dir:
            cold = measure(cache_dir, args.dtype)
            warm = [measure(cache_dir, args.dtype) for _ in range(args.repeat)]
        print(f"{'cold':6} {cold['import_s']:9.2f} {cold['first_call_s']:13.2f} "
              f"{cold['total_s']:8.2f}")
    medians = {key: statistics.median(run[key] for run in warm) for key in warm[0]}
    print(f"{'warm':6} {medians['import_s']:9.2f} {medians['first_call_s']:13.2f} "
          f"{medians['total_s']:8.2f}   (median of {args.repeat})")


if __name__ == "__main__":
    main()
