"""The offline kernel report on the implicit GEMM's tiles, float32 and float64 (compiled for Hopper with
no GPU): no spills, at least 8 resident warps per multiprocessor, and an arithmetic loop that is mostly
fused multiply-adds fed by wide shared-memory loads; and on the tensor-core tiles (float16, bfloat16,
TF32): no spills or local memory, 16 resident warps, a stage loop of HMMA products. Needs numba-cuda
with NVVM, and ptxas, cuobjdump and nvdisasm (the test extras)."""
import numba
import pytest

if numba.config.ENABLE_CUDASIM:
    pytest.skip("the simulator has no PTX compiler", allow_module_level=True)
pytest.importorskip("numba.cuda")

from numba_conv3d.cuda import resources  # noqa: E402


@pytest.fixture(scope="module", params=["float32", "float64"])
def gemm_reports(request):
    if not all(map(resources.tool, ("ptxas", "cuobjdump", "nvdisasm"))):
        pytest.skip("ptxas, cuobjdump or nvdisasm not found (pip install nvidia-cuda-nvcc "
                    "nvidia-cuda-cuobjdump nvidia-cuda-nvdisasm)")
    variants = [v for v in resources.variants(request.param)
                if v.name.startswith(("implicit-gemm", "weight-grad gemm"))]
    return [resources.report(variant) for variant in variants]


def test_every_gemm_tile_keeps_its_sums_in_registers(gemm_reports):
    for report in gemm_reports:
        assert report["spill_stores"] == report["spill_loads"] == report["stack"] == 0, report
        assert report["loop"]["local_memory"] == 0, report


def test_every_gemm_tile_keeps_eight_warps_resident(gemm_reports):
    for report in gemm_reports:
        assert report["warps_per_sm"] >= 8, report


def test_the_gemm_loop_is_mostly_fma_fed_by_wide_shared_loads(gemm_reports):
    for report in gemm_reports:
        loop = report["loop"]
        assert loop["fma_share"] >= 0.6, report
        assert loop["wide_shared_loads"] == loop["shared_loads"] > 0, report


@pytest.fixture(scope="module", params=["float16", "bfloat16", "tfloat32"])
def tensor_core_reports(request):
    if not all(map(resources.tool, ("ptxas", "cuobjdump", "nvdisasm"))):
        pytest.skip("ptxas, cuobjdump or nvdisasm not found (pip install nvidia-cuda-nvcc "
                    "nvidia-cuda-cuobjdump nvidia-cuda-nvdisasm)")
    return [resources.report(variant) for variant in resources.tensor_core_variants(request.param)
            if variant.name.startswith("tensor-core")]


def test_tensor_core_tiles_keep_sums_in_registers_and_sixteen_warps_resident(tensor_core_reports):
    for report in tensor_core_reports:
        assert report["spill_stores"] == report["spill_loads"] == report["stack"] == 0, report
        assert report["loop"]["local_memory"] == 0, report
        assert report["warps_per_sm"] >= 16, report


def test_tensor_core_stage_loop_runs_on_hmma(tensor_core_reports):
    for report in tensor_core_reports:
        assert report["loop"]["mma"] > 0 and report["loop"]["fma"] == 0, report


def test_occupancy_names_its_limit():
    assert resources.occupancy(128, 256, 12544) == (16, "registers")
    assert resources.occupancy(32, 128, 100_000) == (8, "shared memory")
    assert resources.occupancy(16, 1024, 0) == (64, "warps")
