"""Sweep CUDA tile shapes and launch bounds over the CUDA suite: median ms of ours per variant, to
choose ``config.CUDA_*`` from measurements. Variants are JSON objects of config overrides.

Usage (on a GPU machine):
  python benchmarks/cuda_tiles.py '{}' '{"CUDA_MIN_BLOCKS_PER_SM": 3}' \\
      '{"CUDA_CHANNEL_TILE": {"columns": 32, "thread_rows": 8, "rows_per_thread": 2, ...}}'
"""
import json
import statistics
import sys
import time

from numba import cuda

from numba_conv3d import config, conv3d
from numba_conv3d.bench_cases import CUDA_SUITE


def median_ms(fn, repeat=9):
    """Median milliseconds of ``fn()`` with the device synchronized around each run, after a warm-up."""
    fn()
    cuda.synchronize()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def main():
    """Time every CUDA-suite case under each variant of config overrides given on the command line."""
    variants = [json.loads(text) for text in sys.argv[1:]] or [{}]
    operands = {case.name: [None if a is None else cuda.to_device(a) for a in case.operands()]
                for case in CUDA_SUITE}
    defaults = {name: getattr(config, name) for variant in variants for name in variant}
    print("variant".ljust(60) + "".join(f"{case.name[:18]:>20}" for case in CUDA_SUITE))
    for variant in variants:
        for name, value in defaults.items():
            setattr(config, name, value)
        for name, value in variant.items():
            setattr(config, name, dict(getattr(config, name), **value) if isinstance(value, dict)
                    else value)
        cells = []
        for case in CUDA_SUITE:
            ms = median_ms(lambda case=case: conv3d(*operands[case.name], **case.kwargs))
            cells.append(f"{ms:7.3f}ms {case.plan().flops / ms / 1e9:5.1f}TF")
        print(json.dumps(variant)[:59].ljust(60) + "".join(f"{c:>20}" for c in cells))


if __name__ == "__main__":
    main()
