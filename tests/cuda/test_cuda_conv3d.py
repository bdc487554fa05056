"""The CUDA backend against the float64 reference, for every algorithm of its table that serves a case."""
import numpy as np
import pytest

from checks import assert_close, assert_matches_reference, random_operands, rounding_bound
from conftest import SIMULATED
from numba_conv3d import conv3d
from numba_conv3d.api import run_plan
from numba_conv3d.cuda import ALGORITHMS
from numba_conv3d.planner import plan_for_arrays
from reference import conv3d_reference

cuda = pytest.importorskip("numba.cuda")

# (input shape, weight shape, conv3d keywords): every padding mode, stride, dilation, groups, 'same'
# with even kernels, and extents that leave partial tiles on every side.
CASES = {
    "reflect, stride, pads": ((2, 3, 4, 6, 7), (5, 3, 2, 3, 2),
                              dict(stride=(1, 2, 1), padding=(1, 2, 1), padding_mode="reflect")),
    "same, even kernel, circular": ((1, 2, 5, 4, 6), (3, 2, 2, 3, 4),
                                    dict(padding="same", padding_mode="circular")),
    "groups, dilation, replicate": ((1, 6, 4, 7, 5), (6, 2, 2, 2, 3),
                                    dict(groups=3, dilation=(1, 2, 1), padding=1,
                                         padding_mode="replicate")),
    "depthwise": ((2, 4, 3, 5, 6), (4, 1, 3, 3, 3), dict(groups=4, padding=1)),
    "one channel, stride 2, zero pads": ((1, 1, 6, 7, 9), (1, 1, 3, 3, 3), dict(stride=2, padding=2)),
    "valid, stride 3, dilation 2": ((1, 3, 7, 8, 9), (4, 3, 2, 2, 2),
                                    dict(stride=3, dilation=2, padding="valid")),
    "pointwise": ((2, 5, 2, 3, 5), (6, 5, 1, 1, 1), {}),
}
if not SIMULATED:
    # Real tiles are 32 columns by 16 or 32 rows: cross several of them, and channel stages.
    CASES.update({
        "big dense, reflect": ((2, 20, 5, 37, 41), (24, 20, 3, 3, 3),
                               dict(padding=1, padding_mode="reflect")),
        "big depthwise, stride": ((2, 12, 6, 70, 45), (12, 1, 3, 5, 3),
                                  dict(groups=12, stride=(1, 2, 1), padding=(1, 2, 1))),
        "big one channel k7, circular": ((1, 1, 20, 66, 70), (1, 1, 7, 7, 7),
                                         dict(padding=3, padding_mode="circular")),
        "huge dilated kernel (direct)": ((1, 2, 4, 40, 40), (2, 2, 1, 9, 9), dict(dilation=(1, 4, 4))),
    })


def serving(plan):
    return [a.name for a in ALGORITHMS if a.applies(plan)]


def on_device(*arrays):
    return tuple(None if a is None else cuda.to_device(a) for a in arrays)


@pytest.mark.parametrize("case", CASES)
def test_every_serving_algorithm_matches_the_reference(case):
    input_shape, weight_shape, kwargs = CASES[case]
    x, w, b = random_operands(np.random.default_rng(7), input_shape, weight_shape, True, np.float32)
    plan = plan_for_arrays(*on_device(x, w, b), backend="cuda", **kwargs)
    assert plan.algorithm == serving(plan)[0]
    for name in serving(plan):
        forced = plan_for_arrays(x, w, b, backend="cuda", algorithm=name, **kwargs)
        out = run_plan(forced, *on_device(x, w, b))
        assert_matches_reference(out.copy_to_host(), x, w, b, **kwargs)


@pytest.mark.parametrize("dtype", ["float64", "complex64", "complex128"])
def test_dtypes(dtype):
    input_shape, weight_shape, kwargs = CASES["groups, dilation, replicate"]
    x, w, b = random_operands(np.random.default_rng(1), input_shape, weight_shape, True, dtype)
    out = conv3d(*on_device(x, w, b), **kwargs)
    assert out.dtype == dtype
    assert_matches_reference(out.copy_to_host(), x, w, b, **kwargs)


def test_unbatched_input_without_bias_and_host_weight():
    x, w, _ = random_operands(np.random.default_rng(2), (3, 4, 5, 6), (4, 3, 3, 2, 3), False,
                              np.float32)
    out = conv3d(cuda.to_device(x), w, padding=(1, 0, 2), padding_mode="reflect")
    assert out.shape == (4, 4, 4, 8)
    assert_matches_reference(out.copy_to_host(), x, w, padding=(1, 0, 2), padding_mode="reflect")


def test_strided_device_input_is_read_in_place():
    base, w, b = random_operands(np.random.default_rng(3), (2, 3, 6, 5, 12), (4, 3, 2, 2, 3), True,
                                 np.float32)
    device_view = cuda.to_device(base)[:, :, ::2, :, 1::2]
    out = conv3d(device_view, w, b, padding=1)
    assert_matches_reference(out.copy_to_host(), base[:, :, ::2, :, 1::2], w, b, padding=1)


def test_empty_batch_gives_an_empty_device_array():
    x = cuda.to_device(np.zeros((0, 2, 3, 3, 3), np.float32))
    out = conv3d(x, np.ones((4, 2, 2, 2, 2), np.float32))
    assert out.shape == (0, 4, 2, 2, 2)


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")  # the simulator's inf * 0
def test_nan_and_inf_stay_in_their_receptive_fields():
    x, w, b = random_operands(np.random.default_rng(4), (1, 2, 5, 6, 7), (3, 2, 3, 3, 3), True,
                              np.float32)
    x[0, 1, 2, 3, 3] = np.nan
    x[0, 0, 0, 0, 6] = np.inf
    out = conv3d(*on_device(x, w, b), padding=1).copy_to_host()
    expected = conv3d_reference(x, w, b, padding=1)
    assert_close(out, expected, rounding_bound(np.float32, np.nan_to_num(x), w, b, padding=1))


# Input channels per group that fill the GEMM's stages (a partial last one too): it reduces tap by tap.
TAP_MAJOR_CASES = {
    "replicate": ((1, 8, 3, 4, 5), (6, 8, 2, 3, 2), dict(padding=1, padding_mode="replicate")),
    "groups, stride, channel tail": ((2, 14, 3, 5, 4), (8, 7, 2, 2, 3), dict(groups=2, stride=(1, 2, 1))),
}


@pytest.mark.parametrize("case", TAP_MAJOR_CASES)
def test_the_gemm_reducing_tap_by_tap_matches_the_reference(case, monkeypatch):
    from numba_conv3d import cuda_config, plan_cache
    from numba_conv3d.cuda import gemm_plan

    monkeypatch.setattr(cuda_config, "CUDA_GEMM_TAP_MAJOR_MIN_MACS", 0)
    plan_cache.clear()
    input_shape, weight_shape, kwargs = TAP_MAJOR_CASES[case]
    x, w, b = random_operands(np.random.default_rng(11), input_shape, weight_shape, True, np.float32)
    plan = plan_for_arrays(x, w, b, backend="cuda", **kwargs)
    assert plan.algorithm == "cuda-implicit-gemm" and gemm_plan.launch_for(plan).tap_major
    out = conv3d(*on_device(x, w, b), **kwargs).copy_to_host()
    assert_matches_reference(out, x, w, b, **kwargs)
    plan_cache.clear()


def test_results_are_bitwise_equal_run_to_run():
    x, w, b = on_device(*random_operands(np.random.default_rng(5), (1, 5, 3, 5, 6), (4, 5, 3, 3, 3),
                                         True, np.float32))
    first = conv3d(x, w, b, padding=1).copy_to_host()
    for _ in range(3):
        np.testing.assert_array_equal(conv3d(x, w, b, padding=1).copy_to_host(), first)


def test_inputs_are_not_modified():
    x, w, b = random_operands(np.random.default_rng(6), (1, 2, 4, 5, 6), (2, 2, 3, 3, 3), True,
                              np.float32)
    xd, wd, bd = on_device(x, w, b)
    conv3d(xd, wd, bd, padding=1, padding_mode="reflect")
    for host, device in ((x, xd), (w, wd), (b, bd)):
        np.testing.assert_array_equal(device.copy_to_host(), host)


def test_torch_cuda_tensors_in_torch_tensors_out():
    torch = pytest.importorskip("torch")
    if SIMULATED or not torch.cuda.is_available():
        pytest.skip("torch sees no CUDA device")
    x, w, b = random_operands(np.random.default_rng(8), (1, 3, 4, 5, 6), (2, 3, 3, 3, 3), True,
                              np.float32)
    out = conv3d(torch.from_numpy(x).cuda(), torch.from_numpy(w).cuda(), b, padding=1)
    assert isinstance(out, torch.Tensor) and out.is_cuda
    assert_matches_reference(out.cpu().numpy(), x, w, b, padding=1)
    with pytest.raises(TypeError, match=r"input is a CUDA tensor that requires grad; pass input.detach"):
        conv3d(torch.from_numpy(x).cuda().requires_grad_(), w)


def test_cupy_arrays_in_cupy_arrays_out():
    cupy = pytest.importorskip("cupy")
    if SIMULATED:
        pytest.skip("CuPy needs a real GPU")
    x, w, _ = random_operands(np.random.default_rng(9), (4, 4, 5, 6), (2, 2, 1, 3, 3), False,
                              np.float64)
    out = conv3d(cupy.asarray(x), cupy.asarray(w), groups=2, padding=(0, 1, 1), padding_mode="reflect")
    assert isinstance(out, cupy.ndarray)
    assert_matches_reference(cupy.asnumpy(out), x, w, groups=2, padding=(0, 1, 1),
                             padding_mode="reflect")


def test_dask_arrays_of_cupy_chunks_compute_on_the_gpu():
    cupy = pytest.importorskip("cupy")
    da = pytest.importorskip("dask.array")
    if SIMULATED:
        pytest.skip("CuPy needs a real GPU")
    from numba_conv3d import dask_conv3d

    x, w, b = random_operands(np.random.default_rng(10), (2, 4, 12, 14, 16), (6, 4, 3, 3, 3), True,
                              np.float32)
    chunked = da.from_array(cupy.asarray(x), chunks=(1, 4, 5, 7, 9), asarray=False)
    y = dask_conv3d(chunked, w, b, padding=1, padding_mode="reflect")
    assert isinstance(y._meta, cupy.ndarray)
    out = y.compute()
    assert isinstance(out, cupy.ndarray)
    assert_matches_reference(cupy.asnumpy(out), x, w, b, padding=1, padding_mode="reflect")
