"""Resources of the compiled CUDA kernels (registers, local memory, shared memory) for each dtype and
algorithm of the CUDA suite's first case: spills show up as local memory.

Usage (on a GPU machine): python benchmarks/cuda_kernels.py
"""
import numpy as np
from numba import cuda

from numba_conv3d import conv3d
from numba_conv3d.cuda import kernels, tiling


def main():
    x = cuda.to_device(np.ones((1, 16, 8, 40, 40), np.float32))
    for dtype in ("float32", "float64", "complex64", "complex128"):
        xs = cuda.to_device(np.ones((1, 16, 8, 40, 40), dtype))
        for weight_shape, groups in (((16, 16, 3, 3, 3), 1), ((16, 1, 3, 3, 3), 16)):
            conv3d(xs, np.ones(weight_shape, dtype), padding=1, groups=groups)
        for name, kernel in (("channel-tiled", kernels.tiled_kernel(dtype, tiling.channel_tile())),
                             ("row-tiled", kernels.tiled_kernel(dtype, tiling.row_tile()))):
            for signature in kernel.overloads:
                print(f"{dtype:10} {name:14} registers {kernel.get_regs_per_thread(signature):3} "
                      f"local bytes {kernel.get_local_mem_per_thread(signature)}")
    del x


if __name__ == "__main__":
    main()
