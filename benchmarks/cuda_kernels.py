"""Resources of the compiled CUDA kernels (registers, local memory, shared memory) for each dtype and
algorithm of the CUDA suite's first case: spills show up as local memory.

Usage (on a GPU machine): python benchmarks/cuda_kernels.py
"""
import numpy as np
from numba import cuda

from numba_conv3d import config, conv3d
from numba_conv3d.cuda import kernels, tiling


def main():
    """Print registers and local memory of each tiled kernel per dtype, then the host-side overhead."""
    for dtype in ("float32", "float64", "complex64", "complex128"):
        xs = cuda.to_device(np.ones((1, 16, 8, 40, 40), dtype))
        for weight_shape, groups in (((16, 16, 3, 3, 3), 1), ((16, 1, 3, 3, 3), 16)):
            conv3d(xs, np.ones(weight_shape, dtype), padding=1, groups=groups)
        for name, make_tile in (("channel-tiled", tiling.channel_tile), ("row-tiled", tiling.row_tile)):
            kernel = kernels.tiled_kernel(dtype, make_tile(dtype), config.CUDA_MIN_BLOCKS_PER_SM)
            registers, local = kernel.get_regs_per_thread(), kernel.get_local_mem_per_thread()
            for signature in registers:
                print(f"{dtype:10} {name:14} registers {registers[signature]:3} "
                      f"local bytes {local[signature]}")
    overhead()


def overhead(calls=200):
    """Host-side cost of one call on a tiny device problem, and of its pieces."""
    import time

    from numba_conv3d.planner import plan_for_arrays

    x = cuda.to_device(np.ones((1, 1, 4, 4, 4), np.float32))
    w = cuda.to_device(np.ones((1, 1, 3, 3, 3), np.float32))
    pieces = {"conv3d": lambda: conv3d(x, w),
              "plan": lambda: plan_for_arrays(x, w, backend="cuda"),
              "device_array": lambda: cuda.device_array((1, 1, 2, 2, 2), np.float32)}
    for name, fn in pieces.items():
        fn()
        cuda.synchronize()
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        cuda.synchronize()
        print(f"{name:12} {(time.perf_counter() - start) / calls * 1e6:8.1f} us per call")


if __name__ == "__main__":
    main()
