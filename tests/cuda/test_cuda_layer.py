"""``Conv3d`` on the GPU: ``to('cuda')`` / ``to('cpu')`` and ``device=`` in the constructor."""
import numpy as np
import pytest

from checks import assert_matches_reference
from numba_conv3d import Conv3d

cuda = pytest.importorskip("numba.cuda")


def test_to_cuda_and_back_moves_the_parameters():
    layer = Conv3d(4, 6, 3, padding=1, groups=2, padding_mode="circular", rng=0)
    weight, bias = layer.weight.copy(), layer.bias.copy()
    assert layer.to("cuda") is layer
    assert layer.device == "cuda" and not isinstance(layer.weight, np.ndarray)
    x = np.random.default_rng(1).standard_normal((2, 4, 3, 5, 6)).astype(np.float32)
    out = layer(cuda.to_device(x))
    assert_matches_reference(out.copy_to_host(), x, weight, bias, padding=1, groups=2,
                             padding_mode="circular")
    layer.to("cpu")
    assert layer.device == "cpu" and isinstance(layer.weight, np.ndarray)
    np.testing.assert_array_equal(layer.weight, weight)
    np.testing.assert_array_equal(layer.bias, bias)


def test_device_in_the_constructor_draws_the_same_parameters():
    on_gpu = Conv3d(2, 3, (1, 2, 3), bias=False, device="cuda", dtype=np.float64, rng=3)
    on_cpu = Conv3d(2, 3, (1, 2, 3), bias=False, dtype=np.float64, rng=3)
    assert on_gpu.device == "cuda" and on_gpu.bias is None
    np.testing.assert_array_equal(on_gpu.weight.copy_to_host(), on_cpu.weight)
    x = np.random.default_rng(2).standard_normal((1, 2, 3, 4, 5))
    np.testing.assert_allclose(on_gpu(cuda.to_device(x)).copy_to_host(), on_cpu(x), rtol=1e-12,
                               atol=1e-12)
