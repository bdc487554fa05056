"""The offline CUDA kernel report: every kernel variant compiled for a compute capability with no GPU,
its registers, stack and spills, static and dynamic shared memory, theoretical occupancy (warps per
multiprocessor and what limits them) and the instruction mix of its innermost arithmetic loop (its
tensor-core products, HMMA, for the float16, bfloat16 and TF32 kernels).

Usage: python benchmarks/cuda_report.py [--dtype float32 ...] [--cc 9.0] [--json FILE]
Needs numba-cuda with NVVM, and ptxas and cuobjdump (the test extras install them).
"""
import argparse
import json

from numba_conv3d.cuda import resources


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dtype", nargs="*", default=["float32", "float64", "float16", "bfloat16"])
    parser.add_argument("--cc", default="9.0")
    parser.add_argument("--json")
    args = parser.parse_args()
    cc = tuple(int(part) for part in args.cc.split("."))
    rows = []
    print(f"{'kernel':34} {'dtype':8} {'thr':>4} {'regs':>4} {'stack':>5} {'spill':>5} {'smem':>6} "
          f"{'dyn':>6} {'warps':>5} {'limit':14} {'loop':>5} {'fma%':>5} {'mma':>4} {'lds/fma':>7} "
          f"{'int%':>5}")
    for dtype in args.dtype:
        for variant in resources.variants(dtype):
            row = dict(resources.report(variant, cc), dtype=dtype)
            rows.append(row)
            loop = row["loop"]
            print(f"{row['name'][:34]:34} {dtype:8} {row['threads']:4} {row['registers']:4} "
                  f"{row['stack']:5} {row['spill_stores'] + row['spill_loads']:5} {row['static_shared']:6} "
                  f"{row['dynamic_shared']:6} {row['warps_per_sm']:5} {row['occupancy_limit']:14} "
                  f"{loop['instructions']:5} {loop['fma_share']:5.0%} {loop['mma']:4} "
                  f"{loop['shared_loads_per_fma']:7.3f} "
                  f"{loop['integer_share']:5.0%}", flush=True)
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(rows, handle, indent=1)


if __name__ == "__main__":
    main()
