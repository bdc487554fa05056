"""float16, bfloat16 and TF32 on the GPU: the tensor-core kernel (under the simulator, a NumPy model of
the tensor cores' register layouts) and the float32 algorithms on operands widened on the device,
against the float64 reference of the rounded operands."""
import numpy as np
import pytest

from checks import BFLOAT16, assert_close, reduced_bound, rounding_bound, torch_of
from conftest import SIMULATED
from numba_conv3d import Conv3d, conv3d, cuda_config, conv3d_backward, conv3d_input, conv_transpose3d
from numba_conv3d.api import run_plan
from numba_conv3d.cuda import ALGORITHMS
from numba_conv3d.planner import plan_for_arrays
from reference import conv3d_reference

cuda = pytest.importorskip("numba.cuda")

DTYPES = (np.dtype(np.float16), BFLOAT16)
CASES = {
    "dense, padding": ((1, 5, 4, 5, 6), (9, 5, 3, 3, 3), dict(padding=1)),
    "groups, stride, dilation, replicate": ((2, 6, 5, 6, 5), (16, 3, 2, 3, 2),
                                            dict(groups=2, stride=(1, 2, 1), dilation=(2, 1, 1),
                                                 padding=1, padding_mode="replicate")),
    "pointwise, odd channels": ((1, 3, 2, 3, 5), (10, 3, 1, 1, 1), {}),
    "split reduction": ((1, 16, 2, 2, 2), (8, 16, 3, 3, 3), dict(padding=1)),
    "depthwise": ((1, 4, 3, 4, 5), (4, 1, 3, 3, 3), dict(groups=4, padding=1)),
}
TENSOR_CORE = "cuda-tensor-core"


def _operands(case, dtype, seed=0):
    rng = np.random.default_rng(seed)
    x_shape, w_shape, _ = CASES[case]
    return tuple(rng.standard_normal(shape).astype(dtype) for shape in (x_shape, w_shape, w_shape[:1]))


def _on_device(*arrays):
    return tuple(cuda.to_device(a) for a in arrays)


def _serving(plan):
    """The rows that serve ``plan``, each judged on the plan it runs (see ``Algorithm.operands``)."""
    return [a.name for a in ALGORITHMS if a.applies(plan if a.operands == "stored" else plan.computed())]


def _host(array):
    return array.copy_to_host()


def _expected(case, x, w, b):
    """The float64 result of the rounded operands, and its bound: float32 sums and one rounding; for
    float32 operands on TF32, each operand rounded to 10 fraction bits (relative 2**-11, so each product
    within about 2**-10) and float32 sums."""
    kwargs = CASES[case][2]
    wide = [a.astype(np.float64) for a in (x, w, b)]
    expected = conv3d_reference(*wide, **kwargs)
    if x.dtype == np.float32:
        magnitude = conv3d_reference(*(np.abs(a) for a in wide), **kwargs)
        return expected, rounding_bound(np.float32, *wide, **kwargs) + 2.0 ** -10 * magnitude
    return expected, reduced_bound(x.dtype, expected, *wide, **kwargs)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("case", [case for case in CASES if case != "depthwise"])
def test_tensor_cores_sum_in_float32_and_round_once(dtype, case):
    x, w, b = _operands(case, dtype)
    operands = _on_device(x, w, b)
    plan = plan_for_arrays(*operands, backend="cuda", **CASES[case][2])
    assert plan.algorithm == TENSOR_CORE
    out = _host(run_plan(plan, *operands))
    assert out.dtype == dtype
    assert_close(out.astype(np.float64), *_expected(case, x, w, b))


@pytest.fixture
def tap_by_tap(monkeypatch):
    """Every tensor-core launch reduces tap by tap (whatever its size and channel rounding)."""
    from numba_conv3d.cuda import tensor_core

    monkeypatch.setattr(cuda_config, "CUDA_GEMM_TAP_MAJOR_MIN_MACS", 0)
    monkeypatch.setattr(cuda_config, "CUDA_GEMM_TAP_MAJOR_PADDING", 100.0)
    tensor_core._prepared.cache_clear()
    yield
    tensor_core._prepared.cache_clear()


@pytest.mark.parametrize("case, dtype", [("groups, stride, dilation, replicate", "float16"),
                                         ("split reduction", "bfloat16"), ("split reduction", "float32")])
def test_tensor_cores_tap_by_tap(tap_by_tap, case, dtype):
    from numba_conv3d.cuda import tensor_core_plan

    x, w, b = _operands(case, dtype)
    operands = _on_device(x, w, b)
    plan = plan_for_arrays(*operands, backend="cuda", allow_tf32=True, **CASES[case][2])
    assert plan.algorithm == TENSOR_CORE and tensor_core_plan.launch_for(plan).tap_major
    assert_close(_host(run_plan(plan, *operands)).astype(np.float64), *_expected(case, x, w, b))


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("case", ["pointwise, odd channels", "depthwise"])
def test_float32_algorithms_round_their_float32_result_once(dtype, case):
    kwargs = CASES[case][2]
    x, w, b = _operands(case, dtype)
    plan = plan_for_arrays(*_on_device(x, w, b), backend="cuda", **kwargs)
    names = _serving(plan)
    serves = plan.out_per_group >= cuda_config.CUDA_GEMM_MIN_OUT_CHANNELS
    assert plan.algorithm == names[0] and (TENSOR_CORE in names) == serves
    for name in names[names[0] == TENSOR_CORE:]:
        forced = plan_for_arrays(*_on_device(x, w, b), backend="cuda", algorithm=name, **kwargs)
        out = _host(run_plan(forced, *_on_device(x, w, b)))
        assert out.dtype == dtype, name
        single = _host(conv3d(*_on_device(*(a.astype(np.float32) for a in (x, w, b))), algorithm=name,
                              **kwargs))
        np.testing.assert_array_equal(out.view(np.uint16), single.astype(dtype).view(np.uint16))
        assert_close(out.astype(np.float64), *_expected(case, x, w, b))


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_tensor_cores_round_overflow_to_inf_and_propagate_nan(dtype):
    # Multiples of 64 and 16 below 256: every operand, product and float32 sum is exact, so the result
    # is the exact sum rounded once, Inf beyond float16's largest value.
    rng = np.random.default_rng(3)
    x = (rng.integers(-3, 4, (1, 6, 3, 4, 5)) * 64).astype(dtype)
    w = (rng.integers(-3, 4, (8, 6, 3, 3, 3)) * 16).astype(dtype)
    x[0, 2, 1, 1, 1] = np.nan
    xd, wd = _on_device(x, w)
    assert plan_for_arrays(xd, wd, backend="cuda", padding=1).algorithm == TENSOR_CORE
    out = _host(conv3d(xd, wd, padding=1))
    with np.errstate(over="ignore", invalid="ignore"):
        expected = conv3d_reference(x.astype(np.float64), w.astype(np.float64), padding=1).astype(dtype)
    nan = np.isnan(expected.astype(np.float32))
    assert nan.any() and (np.isinf(expected.astype(np.float32)).any() or dtype == BFLOAT16)
    np.testing.assert_array_equal(np.isnan(out.astype(np.float32)), nan)
    np.testing.assert_array_equal(out.view(np.uint16)[~nan], expected.view(np.uint16)[~nan])


def test_tf32_is_opt_in_and_within_its_rounding():
    x, w, b = _operands("dense, padding", np.float32, seed=4)
    operands = _on_device(x, w, b)
    assert plan_for_arrays(*operands, backend="cuda", padding=1).algorithm != TENSOR_CORE
    plan = plan_for_arrays(*operands, backend="cuda", padding=1, allow_tf32=True)
    assert plan.algorithm == TENSOR_CORE
    out = _host(conv3d(*operands, padding=1, allow_tf32=True)).astype(np.float64)
    expected, bound = _expected("dense, padding", x, w, b)
    assert_close(out, expected, bound)
    exact = rounding_bound(np.float32, x, w, b, padding=1)
    assert (np.abs(out - expected) > exact).any(), "the operands were not rounded to TF32"


def test_without_tensor_cores_the_float32_algorithms_serve(monkeypatch):
    from numba_conv3d.cuda import tensor_core

    monkeypatch.setattr(tensor_core, "has_tensor_cores", lambda: False)
    kwargs = CASES["pointwise, odd channels"][2]
    for dtype in DTYPES:
        x, w, b = _operands("pointwise, odd channels", dtype)
        out = _host(conv3d(*_on_device(x, w, b), **kwargs))
        single = _host(conv3d(*_on_device(*(a.astype(np.float32) for a in (x, w, b))), **kwargs))
        np.testing.assert_array_equal(out.view(np.uint16), single.astype(dtype).view(np.uint16))
    operands = _on_device(*(a.astype(np.float32) for a in (x, w, b)))
    np.testing.assert_array_equal(_host(conv3d(*operands, allow_tf32=True, **kwargs)),
                                  _host(conv3d(*operands, **kwargs)))


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_half_precision_layers_on_the_gpu(dtype):
    layer = Conv3d(4, 8, 3, padding=1, dtype=dtype, device="cuda", rng=0)
    assert layer.weight.dtype == dtype
    x = np.random.default_rng(5).standard_normal((1, 4, 3, 4, 4)).astype(dtype)
    out = _host(layer(cuda.to_device(x)))
    assert out.dtype == dtype
    wide = [np.asarray(_host(a), np.float64) for a in (layer.weight, layer.bias)]
    expected = conv3d_reference(x.astype(np.float64), *wide, padding=1)
    assert_close(out.astype(np.float64), expected,
                 reduced_bound(dtype, expected, x.astype(np.float64), *wide, padding=1))


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_gradients_and_transposed_round_their_float32_results_once(dtype):
    rng = np.random.default_rng(8)
    x, w, g = (rng.standard_normal(shape).astype(dtype) for shape in
               ((1, 3, 3, 4, 4), (4, 3, 3, 3, 3), (1, 4, 3, 4, 4)))
    kwargs = dict(padding=(1, 1, 1), stride=1)

    def both(function, *operands):
        half = function(*(cuda.to_device(a) if isinstance(a, np.ndarray) else a for a in operands),
                        **kwargs)
        single = function(*(cuda.to_device(a.astype(np.float32)) if isinstance(a, np.ndarray) else a
                            for a in operands), **kwargs)
        return half, single

    for half, single in zip(*both(conv3d_backward, x, w, g)):
        half = _host(half)
        assert half.dtype == dtype
        np.testing.assert_array_equal(half.view(np.uint16), _host(single).astype(dtype).view(np.uint16))
    half, single = both(conv3d_input, x.shape, w, g)
    np.testing.assert_array_equal(_host(half).view(np.uint16), _host(single).astype(dtype).view(np.uint16))
    half, single = both(conv_transpose3d, g, w)
    np.testing.assert_array_equal(_host(half).view(np.uint16), _host(single).astype(dtype).view(np.uint16))
    with pytest.raises(TypeError, match="conv3d_input: grad_output dtype float32 does not match weight"):
        conv3d_input(x.shape, cuda.to_device(w), cuda.to_device(g.astype(np.float32)), **kwargs)


def test_torch_bfloat16_cuda_tensors_in_and_out():
    torch = pytest.importorskip("torch")
    if SIMULATED or not torch.cuda.is_available():
        pytest.skip("torch sees no CUDA device")
    x, w, b = _operands("dense, padding", BFLOAT16, seed=6)
    out = conv3d(*(torch_of(torch, a).cuda() for a in (x, w, b)), padding=1)
    assert out.dtype == torch.bfloat16 and out.is_cuda
    wide = [a.astype(np.float64) for a in (x, w, b)]
    expected = conv3d_reference(*wide, padding=1)
    assert_close(out.float().cpu().numpy().astype(np.float64), expected,
                 reduced_bound(BFLOAT16, expected, *wide, padding=1))
