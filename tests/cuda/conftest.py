"""The CUDA suite runs on a real GPU, or under Numba's simulator in its own process:

    NUMBA_ENABLE_CUDASIM=1 pytest tests/cuda

Without either, every test here is skipped with that reason. Under the simulator the tiles shrink (a few
threads per block, at most a few blocks), so that tiny shapes still cross blocks, tile edges, channel
stages and the grid-stride loop.
"""
import numba
import pytest

from numba_conv3d import cuda_config, plan_cache

SIMULATED = bool(numba.config.ENABLE_CUDASIM)


def _gpu_available():
    try:
        from numba import cuda
    except ImportError:
        return False
    return cuda.is_available()


def pytest_collection_modifyitems(config, items):
    if _gpu_available():
        return
    reason = pytest.mark.skip(reason="no CUDA GPU here (numba-cuda missing or no device); the "
                                     "simulator runs this suite: NUMBA_ENABLE_CUDASIM=1 pytest tests/cuda")
    for item in items:
        if "tests/cuda/" in item.nodeid:
            item.add_marker(reason)


@pytest.fixture(autouse=True)
def simulator_tiles(monkeypatch):
    """Tiny tiles under the simulator: 4 columns x 2 thread rows x 2 channel threads, 2 rows and 2
    channels per thread, 2 channels per stage; GEMM tiles of 8 threads for 2 or more output channels
    per group that split reductions longer than 4 stages (the weight gradient's too); tensor-core tiles
    of one warp with two products side by side (up to 8 output channels), and of 2 x 2 warps with two
    products stacked and two steps a stage; 8 threads per
    elementwise block, 4 per reduction (the bias's split every 8 positions); at most 3 blocks per
    launch."""
    if SIMULATED:
        monkeypatch.setattr(cuda_config, "CUDA_CHANNEL_TILE", dict(
            columns=4, thread_rows=2, rows_per_thread=2, channel_threads=2, channels_per_thread=2,
            stage_channels=2))
        monkeypatch.setattr(cuda_config, "CUDA_ROW_TILE", dict(
            columns=4, thread_rows=2, rows_per_thread=2, channel_threads=1, channels_per_thread=1,
            stage_channels=1))
        monkeypatch.setattr(cuda_config, "CUDA_GEMM_CLASSES", (
            (4, None, (8, 4, 4, 2, 2), 8), (None, None, (4, 8, 4, 1, 4), 8)))
        monkeypatch.setattr(cuda_config, "CUDA_GEMM_MIN_OUT_CHANNELS", 2)
        monkeypatch.setattr(cuda_config, "CUDA_TENSOR_CORE_CLASSES", (
            (8, None, (1, 1, 1, 2, 8), 8), (None, None, (2, 2, 2, 1, 16), 8)))
        monkeypatch.setattr(cuda_config, "CUDA_WEIGHT_GEMM_TILE", (4, 8, 4, 1, 4))
        monkeypatch.setattr(cuda_config, "CUDA_WEIGHT_GEMM_BLOCKS", 8)
        monkeypatch.setattr(cuda_config, "CUDA_GEMM_MIN_SPLIT_STAGES", 2)
        monkeypatch.setattr(cuda_config, "CUDA_DIRECT_THREADS", 8)
        monkeypatch.setattr(cuda_config, "CUDA_REDUCE_THREADS", 4)
        monkeypatch.setattr(cuda_config, "CUDA_REDUCE_BLOCKS", 8)
        monkeypatch.setattr(cuda_config, "CUDA_REDUCE_MIN_SPLIT", 8)
        monkeypatch.setattr(cuda_config, "CUDA_MAX_BLOCKS", 3)
        plan_cache.clear()
