"""Every CUDA kernel variant compiles to PTX for every dtype: catches the type errors the simulator
cannot see. Needs numba-cuda with its NVVM library (the test extras install it), not a GPU."""
import numba
import pytest

if numba.config.ENABLE_CUDASIM:
    pytest.skip("the simulator has no PTX compiler", allow_module_level=True)
cuda = pytest.importorskip("numba.cuda")

from numba import types  # noqa: E402

from numba_conv3d.cuda import resources  # noqa: E402


@pytest.fixture(scope="module")
def nvvm():
    try:
        cuda.compile_ptx(lambda a: None, (types.float32[::1],), cc=(9, 0))
    except Exception as err:  # noqa: BLE001 - NVVM missing or unloadable
        pytest.skip(f"no usable NVVM: {err}")


@pytest.mark.parametrize("dtype", ["float32", "float64", "complex64", "complex128"])
def test_every_kernel_compiles_to_ptx_without_local_memory(nvvm, dtype):
    variants = resources.variants(dtype)
    assert any(v.name == "channel-tiled" for v in variants)
    for variant in variants:
        with resources.named_device((9, 0)):
            ptx, _ = cuda.compile_ptx(variant.kernel.py_func, variant.signature, cc=(9, 0))
        assert ".entry" in ptx, variant.name
        assert "ld.local" not in ptx, f"{variant.name}: register arrays were demoted to local memory"


def test_real_dtypes_have_the_flat_view_kernels(nvvm):
    def names(dtype):
        return {v.name.split(" ")[0] for v in resources.variants(dtype)}

    assert {"implicit-gemm", "split-sum", "depthwise"} <= names("float32")
    assert not {"implicit-gemm", "depthwise"} & names("complex64")
