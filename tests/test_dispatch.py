"""Which backend a call goes to, and the errors for CUDA input where CUDA cannot run."""
import sys

import numba
import numpy as np
import pytest

from numba_conv3d import conv3d, cpu, cuda
from numba_conv3d.cuda.arrays import _cuda_status
from numba_conv3d.dispatch import backend_for

W = np.ones((2, 2, 1, 1, 1), np.float32)


class CudaLike:
    """A device array as far as the dispatcher can tell: shape, dtype and the CUDA interface."""

    shape = (1, 2, 3, 3, 3)
    dtype = np.dtype(np.float32)
    __cuda_array_interface__ = {"shape": shape, "typestr": "<f4", "data": (0, False), "version": 3}


class GradTensorLike(CudaLike):
    """Like a torch CUDA tensor that requires grad: the interface raises RuntimeError."""

    @property
    def __cuda_array_interface__(self):
        raise RuntimeError("Can't get __cuda_array_interface__ on Variable that requires grad")


def test_host_arrays_go_to_the_cpu_and_device_arrays_to_cuda():
    assert backend_for(np.zeros(3)) is cpu
    assert backend_for(CudaLike(), W) is cuda
    assert backend_for(GradTensorLike()) is cuda


@pytest.fixture
def fresh_cuda_status():
    """Forget the process's cached answer to 'is numba-cuda here, with a GPU?' around a test."""
    _cuda_status.cache_clear()
    yield
    _cuda_status.cache_clear()


def test_cuda_input_without_numba_cuda_is_a_type_error(monkeypatch, fresh_cuda_status):
    monkeypatch.setitem(sys.modules, "numba.cuda", None)
    monkeypatch.delattr(numba, "cuda", raising=False)
    with pytest.raises(TypeError, match=r"numba-cuda is not installed; pip install 'numba_conv3d\[cuda\]'"):
        conv3d(CudaLike(), W)


def test_cuda_input_without_a_gpu_is_a_runtime_error(fresh_cuda_status):
    numba_cuda = pytest.importorskip("numba.cuda")
    if numba_cuda.is_available():
        pytest.skip("a GPU (or the simulator) is available here")
    with pytest.raises(RuntimeError, match=r"Numba finds no usable CUDA GPU"):
        conv3d(CudaLike(), W)
