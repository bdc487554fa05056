"""Every CUDA kernel variant compiles to PTX for every dtype: catches the type errors the simulator
cannot see. Needs numba-cuda with its NVVM library (the test extras install it), not a GPU."""
import numba
import numpy as np
import pytest

if numba.config.ENABLE_CUDASIM:
    pytest.skip("the simulator has no PTX compiler", allow_module_level=True)
cuda = pytest.importorskip("numba.cuda")

from numba import types  # noqa: E402

from numba_conv3d import config  # noqa: E402
from numba_conv3d.cuda import kernels, tiling  # noqa: E402


@pytest.fixture
def any_device(monkeypatch):
    """Let device functions (our ``register_jitable`` rules) compile for a named compute capability
    without a GPU: numba-cuda asks the current device for it, and ``compile_ptx`` passes none."""
    import numba.cuda.dispatcher

    class Hopper:
        compute_capability = (9, 0)

    try:
        cuda.compile_ptx(lambda a: None, (types.float32[::1],), cc=(9, 0))
    except Exception as err:  # noqa: BLE001 - NVVM missing or unloadable
        pytest.skip(f"no usable NVVM: {err}")
    monkeypatch.setattr(numba.cuda.dispatcher, "get_current_device", lambda: Hopper())


def kernel_signature(dtype):
    value = numba.from_dtype(np.dtype(dtype))
    triple = types.UniTuple(types.int64, 3)
    volume = types.Array(value, 5, "A")
    return (volume, types.Array(value, 5, "C"), types.Array(value, 1, "C"),
            types.Array(value, 5, "C"), types.int64, triple, triple, triple, triple, types.int64,
            types.boolean)


@pytest.mark.parametrize("dtype", ["float32", "float64", "complex64", "complex128"])
def test_every_kernel_compiles_to_ptx_without_local_memory_for_the_sums(any_device, dtype):
    variants = [kernels.tiled_kernel(dtype, make(dtype), config.CUDA_MIN_BLOCKS_PER_SM)
                for make in (tiling.channel_tile, tiling.row_tile)]
    variants.append(kernels.direct_kernel(dtype, config.CUDA_DIRECT_THREADS))
    for kernel in variants:
        ptx, _ = cuda.compile_ptx(kernel.py_func, kernel_signature(dtype), cc=(9, 0))
        assert ".entry" in ptx
        assert "ld.local" not in ptx, "register sums were demoted to local memory"


def gradient_kernels(dtype):
    """Every gradient kernel variant for ``dtype`` with its argument types: (kernel, signature)."""
    from numba_conv3d.cuda import grad_kernels

    value = numba.from_dtype(np.dtype(dtype))
    triple = types.UniTuple(types.int64, 3)
    view, result = types.Array(value, 5, "A"), types.Array(value, 5, "C")
    maps = types.Array(types.int64, 2, "C")
    threads, reduce = config.CUDA_DIRECT_THREADS, config.CUDA_REDUCE_THREADS
    variants = [(grad_kernels.gather_kernel(dtype, threads, conjugate),
                 (view, view, types.int64, triple, triple, result)) for conjugate in (False, True)]
    variants.append((grad_kernels.upsample_kernel(dtype, threads), (view, triple, result)))
    variants += [(grad_kernels.flip_kernel(dtype, threads, conjugate), (view, result))
                 for conjugate in (False, True)]
    variants.append((grad_kernels.fold_kernel(dtype, threads),
                     (result, maps, maps, types.Array(value, 1, "A"), types.boolean, result)))
    variants.append((grad_kernels.weight_grad_kernel(dtype, reduce),
                     (view, view, result, types.int64, triple, triple, triple, types.int64)))
    variants.append((grad_kernels.bias_grad_kernel(dtype, reduce), (view, types.Array(value, 1, "C"))))
    return variants


@pytest.mark.parametrize("dtype", ["float32", "float64", "complex64", "complex128"])
def test_every_gradient_kernel_compiles_to_ptx(any_device, dtype):
    for kernel, signature in gradient_kernels(dtype):
        ptx, _ = cuda.compile_ptx(kernel.py_func, signature, cc=(9, 0))
        assert ".entry" in ptx
