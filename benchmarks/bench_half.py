"""float16 and bfloat16 against torch in the same dtype, on dense layers of the networks suite.

Each case runs as ``numba-conv3d bench`` runs a case (ours and torch alternating in one process, a pause
before each run, medians). bfloat16 runs every layer; float16 a few, since torch's CPU float16
convolution takes seconds on the larger ones. The % of peak is of the dtype's GEMM peak
(``benchmark.peak_precision``: torch's bfloat16 GEMM for bfloat16, float32's for float16).

Usage: python benchmarks/bench_half.py [--repeat N] [--dtype float16|bfloat16 ...] [--json FILE]
"""
import argparse
import json

from numba_conv3d.bench_cases import BenchCase
from numba_conv3d.benchmark import format_report, run_suite
from numba_conv3d.environment import describe

# (name, input shape, weight shape, conv3d keyword arguments, also in float16)
LAYERS = (
    ("c3d.conv2a", (1, 64, 16, 56, 56), (128, 64, 3, 3, 3), {"padding": 1}, False),
    ("c3d.conv3a", (1, 128, 8, 28, 28), (256, 128, 3, 3, 3), {"padding": 1}, False),
    ("c3d.conv4b", (1, 512, 4, 14, 14), (512, 512, 3, 3, 3), {"padding": 1}, False),
    ("c3d.conv5a", (1, 512, 2, 7, 7), (512, 512, 3, 3, 3), {"padding": 1}, False),
    ("r3d.layer1", (1, 64, 8, 56, 56), (64, 64, 3, 3, 3), {"padding": 1}, False),
    ("unet3d.down1.conv2", (1, 32, 32, 32, 32), (64, 32, 3, 3, 3), {"padding": 1}, True),
    ("unet3d.down3.conv2", (1, 128, 8, 8, 8), (256, 128, 3, 3, 3), {"padding": 1}, True),
    ("vnet.down2.conv0", (1, 64, 8, 16, 16), (64, 64, 5, 5, 5), {"padding": 2}, False),
    ("vnet.down3.conv0", (1, 128, 4, 8, 8), (128, 128, 5, 5, 5), {"padding": 2}, True),
    ("runet.bottom.conv2", (1, 256, 4, 4, 4), (256, 256, 3, 3, 3), {"padding": 1}, True),
)


def cases(dtype):
    """The layers as bench cases of ``dtype`` (float16: the few marked for it)."""
    return [BenchCase(name, x_shape, w_shape, kwargs, dtype) for name, x_shape, w_shape, kwargs, half
            in LAYERS if dtype == "bfloat16" or half]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--dtype", action="append", choices=("float16", "bfloat16"))
    parser.add_argument("--json")
    args = parser.parse_args()
    record = {"environment": describe(), "runs": {}}
    for dtype in args.dtype or ("bfloat16", "float16"):
        peaks, results = run_suite(cases(dtype), repeat=args.repeat)
        print(format_report(peaks, results), "\n")
        record["runs"][dtype] = {"peak_gflops": peaks, "results": [r.as_dict() for r in results]}
    if args.json:
        with open(args.json, "w") as out:
            json.dump(record, out, indent=2)


if __name__ == "__main__":
    main()
