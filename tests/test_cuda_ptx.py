"""Every CUDA kernel variant compiles to PTX for every dtype: catches the type errors the simulator
cannot see. Needs numba-cuda with its NVVM library (the test extras install it), not a GPU."""
import numba
import pytest

if numba.config.ENABLE_CUDASIM:
    pytest.skip("the simulator has no PTX compiler", allow_module_level=True)
cuda = pytest.importorskip("numba.cuda")

from numba import types  # noqa: E402

from numba_conv3d import cuda_config  # noqa: E402
from numba_conv3d.cuda import resources, tensor_core_plan  # noqa: E402


@pytest.fixture(scope="module")
def nvvm():
    try:
        cuda.compile_ptx(lambda a: None, (types.float32[::1],), cc=(9, 0))
    except Exception as err:  # noqa: BLE001 - NVVM missing or unloadable
        pytest.skip(f"no usable NVVM: {err}")


def _ptx(variant):
    with resources.named_device((9, 0)):
        return cuda.compile_ptx(variant.kernel.py_func, variant.signature, cc=(9, 0))[0]


@pytest.mark.parametrize("dtype", ["float32", "float64", "complex64", "complex128", "float16",
                                   "bfloat16"])
def test_every_kernel_compiles_to_ptx_without_local_memory(nvvm, dtype):
    variants = resources.variants(dtype)
    first = "tensor-core" if dtype in ("float16", "bfloat16") else "channel-tiled"
    assert any(v.name.startswith(first) for v in variants)
    for variant in variants:
        ptx = _ptx(variant)
        assert ".entry" in ptx, variant.name
        assert "ld.local" not in ptx, f"{variant.name}: register arrays were demoted to local memory"


def test_real_dtypes_have_the_flat_view_kernels(nvvm):
    def names(dtype):
        return {v.name.split(" ")[0] for v in resources.variants(dtype)}

    assert {"implicit-gemm", "split-sum", "depthwise"} <= names("float32")
    assert not {"implicit-gemm", "depthwise"} & names("complex64")


@pytest.mark.parametrize("kind, instruction", [
    ("float16", "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32"),
    ("bfloat16", "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32"),
    ("tfloat32", "mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32")])
def test_tensor_core_kernels_issue_the_warp_products_of_their_kind(nvvm, kind, instruction):
    # one product per fragment pair and step of 8 units, the steps of a stage unrolled; the result
    # rounded to the stored type (TF32: the operands rounded when staged)
    rounding = {"float16": "cvt.rn.f16.f32", "bfloat16": "cvt.rn.bf16.f32", "tfloat32": "cvt.rna.tf32.f32"}
    by_name = {v.name: v for v in resources.tensor_core_variants(kind)}
    for row in cuda_config.CUDA_TENSOR_CORE_CLASSES:
        tile = tensor_core_plan.checked_tile(row[2])
        for order in ("taps order", "weight order, partial"):
            ptx = _ptx(by_name[f"tensor-core {kind} {tuple(tile)} {order}"])
            assert ptx.count(instruction) == tile.frags_m * tile.frags_n * tile.units // 8, tile
            assert rounding[kind] in ptx or order.endswith("partial"), (tile, order)
