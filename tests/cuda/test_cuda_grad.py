"""Gradients and the transposed convolution on the GPU, against the CPU's float64 gradients (checked
against torch's autograd and finite differences in tests/test_grad.py) and, where installed, torch."""
import numpy as np
import pytest

from checks import assert_close, gradient_bounds, random_operands
from conftest import SIMULATED
from numba_conv3d import Conv3d, ConvTranspose3d, conv3d, conv_transpose3d, cuda_config
from numba_conv3d.cuda import gradients as cuda_gradients
from numba_conv3d.grad import conv3d_backward, conv3d_bias, conv3d_input, conv3d_weight
from numba_conv3d.grad_planner import plan_input_grad
from numba_conv3d.input_grad_routes import INPUT_GRAD_ALGORITHMS

cuda = pytest.importorskip("numba.cuda")

# The weight-gradient GEMM's production tile and block target (the simulator's fixture shrinks them).
WEIGHT_GEMM_TILE, WEIGHT_GEMM_BLOCKS = cuda_config.CUDA_WEIGHT_GEMM_TILE, cuda_config.CUDA_WEIGHT_GEMM_BLOCKS

# (input shape, weight shape, conv3d keywords): strides (the gather route), unit stride (the forward
# correlation route), every padding mode, dilation, groups, depthwise, 'same' with an even kernel,
# unbatched input.
CASES = {
    "groups, stride, dilation": ((2, 4, 3, 4, 5), (4, 2, 2, 2, 3),
                                 dict(groups=2, stride=(2, 1, 2), padding=(1, 1, 0), dilation=(1, 2, 1))),
    "reflect, unit stride": ((1, 2, 3, 4, 5), (2, 2, 2, 3, 2),
                             dict(padding=(1, 2, 1), padding_mode="reflect")),
    "same, even kernel, circular": ((1, 2, 3, 4, 5), (2, 2, 2, 3, 2),
                                    dict(padding="same", padding_mode="circular")),
    "replicate, stride 2": ((1, 1, 5, 4, 6), (2, 1, 3, 2, 2),
                            dict(stride=2, padding=1, padding_mode="replicate")),
    "depthwise, unbatched": ((3, 3, 4, 5), (3, 1, 3, 3, 3), dict(groups=3, padding=1)),
}
if not SIMULATED:
    CASES["big dense, reflect"] = ((2, 16, 9, 20, 33), (12, 16, 3, 3, 3), dict(padding=1,
                                                                                padding_mode="reflect"))
    CASES["big strided, dilated"] = ((1, 8, 12, 17, 40), (8, 4, 3, 3, 3),
                                     dict(groups=2, stride=2, dilation=(1, 2, 2), padding=2))


def operands(case, dtype, seed=0):
    input_shape, weight_shape, kwargs = CASES[case]
    rng = np.random.default_rng(seed)
    x, w, _ = random_operands(rng, input_shape, weight_shape, False, dtype)
    g = random_operands(rng, conv3d(x, w, **kwargs).shape, weight_shape, False, dtype)[0]
    return x, w, g, kwargs


def host(array):
    return array.copy_to_host()


def expected_gradients(x, w, g, kwargs):
    """The CPU's float64 (complex128) gradients and their rounding bounds at ``x.dtype``."""
    wide = np.complex128 if np.iscomplexobj(x) else np.float64
    expected = conv3d_backward(x.astype(wide), w.astype(wide), g.astype(wide), **kwargs)
    magnitudes = conv3d_backward(np.abs(x).astype(np.float64), np.abs(w).astype(np.float64),
                                 np.abs(g).astype(np.float64), bias=False, **kwargs)[:2]
    return expected, gradient_bounds(x.dtype, w, g, magnitudes, **kwargs)


@pytest.mark.parametrize("case", CASES)
def test_gradients_match_the_float64_gradients(case):
    x, w, g, kwargs = operands(case, np.float32)
    grads = conv3d_backward(cuda.to_device(x), cuda.to_device(w), cuda.to_device(g), **kwargs)
    expected, bounds = expected_gradients(x, w, g, kwargs)
    for actual, wanted, bound in zip(grads, expected, bounds):
        assert actual.dtype == np.float32 and actual.is_c_contiguous()
        assert_close(host(actual), wanted, bound)


@pytest.mark.parametrize("case, dtype", [("groups, stride, dilation", "float64"),
                                         ("reflect, unit stride", "complex64"),
                                         ("groups, stride, dilation", "complex128")])
def test_dtypes_and_the_conjugate_convention(case, dtype):
    x, w, g, kwargs = operands(case, dtype)
    grads = conv3d_backward(cuda.to_device(x), w, cuda.to_device(g), **kwargs)  # a host weight too
    expected, bounds = expected_gradients(x, w, g, kwargs)
    for actual, wanted, bound in zip(grads, expected, bounds):
        assert actual.dtype == np.dtype(dtype)
        assert_close(host(actual), wanted, bound)


def test_one_gradient_functions_give_the_same_bits_and_run_to_run():
    x, w, g, kwargs = operands("replicate, stride 2", np.float32)
    xd, wd, gd = (cuda.to_device(a) for a in (x, w, g))
    grads = [host(a) for a in conv3d_backward(xd, wd, gd, **kwargs)]
    np.testing.assert_array_equal(host(conv3d_input(x.shape, wd, gd, **kwargs)), grads[0])
    np.testing.assert_array_equal(host(conv3d_weight(xd, w.shape, gd, **kwargs)), grads[1])
    np.testing.assert_array_equal(host(conv3d_bias(gd)), grads[2])
    for again, first in zip(conv3d_backward(xd, wd, gd, **kwargs), grads):
        np.testing.assert_array_equal(host(again), first)


@pytest.mark.parametrize("case, mode, routes", [("reflect, unit stride", "zeros", 3),
                                                 ("reflect, unit stride", "reflect", 2),
                                                 ("replicate, stride 2", "replicate", 2)])
def test_every_input_gradient_route_agrees(case, mode, routes):
    x, w, g, kwargs = operands(case, "complex128")
    plan = plan_input_grad("test", x.shape, w, g, **dict(kwargs, padding_mode=mode, groups=1, dilation=1,
                                                         stride=kwargs.get("stride", 1)), backend="cuda")
    wd, gd, bias = cuda.to_device(w), cuda.to_device(g), cuda.to_device(w[0, :, 0, 0, 0].copy())
    serving = [run for _, applies, run in INPUT_GRAD_ALGORITHMS if applies(plan, gd)]
    assert len(serving) == routes
    for conjugate in (False, True):
        results = [host(run(plan, gd, wd, conjugate, cuda_gradients, bias)) for run in serving]
        for result in results[1:]:
            np.testing.assert_allclose(result, results[0], rtol=1e-13, atol=1e-13)


def test_empty_batch():
    x, w, g, kwargs = operands("groups, stride, dilation", np.float32)
    grads = conv3d_backward(cuda.to_device(x[:0]), cuda.to_device(w), cuda.to_device(g[:0]), **kwargs)
    assert grads[0].shape == x[:0].shape
    assert not host(grads[1]).any() and not host(grads[2]).any()


def test_a_device_operand_with_a_host_lead_is_a_type_error():
    x, w, g, kwargs = operands("replicate, stride 2", np.float32)
    with pytest.raises(TypeError, match="conv3d_input: weight is a CUDA array but grad_output is not"):
        conv3d_input(x.shape, cuda.to_device(w), g, **kwargs)
    with pytest.raises(TypeError, match="conv3d_weight: grad_output is a CUDA array but input is not"):
        conv3d_weight(x, w.shape, cuda.to_device(g), **kwargs)


@pytest.mark.parametrize("dtype", [np.float32, np.complex64])
def test_conv_transpose3d_matches_the_host_result(dtype):
    rng = np.random.default_rng(3)
    x, w, _ = random_operands(rng, (2, 4, 3, 2, 4), (4, 3, 2, 2, 3), False, dtype)
    b = random_operands(rng, (6,), (6, 1, 1, 1, 1), False, dtype)[0]
    kwargs = dict(groups=2, stride=(2, 1, 2), padding=(1, 0, 1), dilation=(1, 2, 1), output_padding=(1, 1, 0))
    wide = np.complex128 if np.iscomplexobj(x) else np.float64
    expected = conv_transpose3d(x.astype(wide), w.astype(wide), b.astype(wide), **kwargs)
    magnitude = conv_transpose3d(np.abs(x).astype(np.float64), np.abs(w).astype(np.float64),
                                 np.abs(b).astype(np.float64), **kwargs)
    actual = host(conv_transpose3d(cuda.to_device(x), cuda.to_device(w), b, **kwargs))
    terms = w.shape[1] * np.prod(w.shape[2:]) + 1
    eps = np.finfo(dtype).eps * (2 if np.dtype(dtype).kind == "c" else 1)
    assert_close(actual, expected, (terms + 2) * eps * magnitude)


def test_layers_train_on_the_device():
    rng = np.random.default_rng(4)
    layer = Conv3d(2, 4, 2, stride=(1, 2, 1), padding=1, padding_mode="circular", dtype="float64", rng=5)
    on_host = Conv3d(2, 4, 2, stride=(1, 2, 1), padding=1, padding_mode="circular", dtype="float64", rng=5)
    layer.to("cuda")
    x = rng.standard_normal((2, 2, 3, 4, 3))
    g = rng.standard_normal(on_host(x).shape)
    layer(cuda.to_device(x))
    grad_input = layer.backward(cuda.to_device(g))
    expected = on_host.backward(g)
    np.testing.assert_allclose(host(grad_input), expected, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(host(layer.weight_grad), on_host.weight_grad, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(host(layer.bias_grad), on_host.bias_grad, rtol=1e-12, atol=1e-12)
    transposed = ConvTranspose3d(4, 2, 2, stride=2, device="cuda", dtype="float64", rng=6)
    assert transposed.device == "cuda"
    y = rng.standard_normal((1, 4, 2, 2, 2))
    np.testing.assert_allclose(host(transposed(cuda.to_device(y))),
                               transposed.to("cpu")(y), rtol=1e-12, atol=1e-12)


def test_torch_cuda_tensors_in_torch_tensors_out():
    torch = pytest.importorskip("torch")
    if SIMULATED or not torch.cuda.is_available():
        pytest.skip("torch sees no CUDA device")
    x, w, g, kwargs = operands("groups, stride, dilation", np.float64)
    tx = torch.from_numpy(x).cuda().requires_grad_()
    tw = torch.from_numpy(w).cuda().requires_grad_()
    out = torch.nn.functional.conv3d(tx, tw, stride=kwargs["stride"], padding=kwargs["padding"],
                                     dilation=kwargs["dilation"], groups=kwargs["groups"])
    wanted = torch.autograd.grad(out, (tx, tw), torch.from_numpy(g).cuda())
    grads = conv3d_backward(tx.detach(), tw.detach(), torch.from_numpy(g).cuda(), **kwargs)
    for actual, expected in zip(grads, wanted):
        assert isinstance(actual, torch.Tensor) and actual.is_cuda
        np.testing.assert_allclose(actual.cpu().numpy(), expected.cpu().numpy(), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("case", ["groups, stride, dilation", "reflect, unit stride"])
def test_the_weight_gradient_gemm_splits_positions_and_agrees_with_the_reduction(case):
    from numba_conv3d.cuda import weight_gemm, weight_gemm_plan
    from numba_conv3d.planner import plan_conv3d

    x, w, g, kwargs = operands(case, np.float64)
    plan = plan_conv3d(x.shape, w.shape, dtype="float64", backend="cuda", **kwargs)
    routes = [run for applies, run in cuda_gradients.WEIGHT_GRAD_ROUTES if applies(plan)]
    assert routes[0] is weight_gemm.execute and weight_gemm_plan.launch_for(plan).splits > 1
    xd, gd = cuda.to_device(x), cuda.to_device(g)
    by_gemm = host(weight_gemm.execute(plan, xd, gd))
    np.testing.assert_allclose(by_gemm, host(cuda_gradients.reduced_weight_gradient(plan, xd, gd)),
                               rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(host(weight_gemm.execute(plan, xd, gd)), by_gemm)


def test_the_weight_gradient_gemm_with_its_production_tile(monkeypatch):
    """256 threads of 64 channels x 128 columns, 16 positions a stage, the positions split in two."""
    from numba_conv3d.cuda import weight_gemm, weight_gemm_plan
    from numba_conv3d.planner import plan_conv3d

    cached = (weight_gemm._prepared, weight_gemm_plan.weight_geometry, weight_gemm_plan.column_taps)
    monkeypatch.setattr(cuda_config, "CUDA_WEIGHT_GEMM_TILE", WEIGHT_GEMM_TILE)
    monkeypatch.setattr(cuda_config, "CUDA_WEIGHT_GEMM_BLOCKS", WEIGHT_GEMM_BLOCKS)
    monkeypatch.setattr(cuda_config, "CUDA_GEMM_MIN_SPLIT_STAGES", 8)
    for cache in cached:
        cache.cache_clear()
    rng = np.random.default_rng(3)
    x, w, _ = random_operands(rng, (2, 8, 4, 8, 8), (12, 8, 3, 3, 3), False, np.float32)
    kwargs = dict(padding=1, stride=(1, 2, 1))
    g = random_operands(rng, conv3d(x, w, **kwargs).shape, w.shape, False, np.float32)[0]
    plan = plan_conv3d(x.shape, w.shape, dtype="float32", backend="cuda", **kwargs)
    launch = weight_gemm_plan.launch_for(plan)
    try:
        assert launch.tile == WEIGHT_GEMM_TILE and launch.splits == 2
        expected, bounds = expected_gradients(x, w, g, kwargs)
        assert_close(host(weight_gemm.execute(plan, cuda.to_device(x), cuda.to_device(g))), expected[1],
                     bounds[1])
    finally:
        for cache in cached:
            cache.cache_clear()


@pytest.mark.parametrize("case", ["groups, stride, dilation", "replicate, stride 2"])
def test_strided_input_gradients_by_stride_phases(case, monkeypatch):
    """Zero pads (phases cropped to the input) and replicate (the padded gradient folded)."""
    monkeypatch.setattr(cuda_config, "CUDA_STRIDE_PHASES_MIN_MACS", 0)
    x, w, g, kwargs = operands(case, np.float64)
    arguments = dict(dict(stride=1, padding=0, dilation=1, groups=1, padding_mode="zeros"), **kwargs)
    plan = plan_input_grad("test", x.shape, w, g, **arguments, backend="cuda")
    gd = cuda.to_device(g)
    assert next(name for name, applies, _ in INPUT_GRAD_ALGORITHMS if applies(plan, gd)) == "stride-phases"
    np.testing.assert_allclose(host(conv3d_input(x.shape, cuda.to_device(w), gd, **kwargs)),
                               conv3d_input(x.shape, w, g, **kwargs), rtol=1e-12, atol=1e-12)


def test_a_transposed_convolution_by_stride_phases_fills_the_phases_no_tap_reaches(monkeypatch):
    """A 1-wide kernel at stride 2: every other output is the bias alone."""
    monkeypatch.setattr(cuda_config, "CUDA_STRIDE_PHASES_MIN_MACS", 0)
    rng = np.random.default_rng(4)
    x, w, _ = random_operands(rng, (2, 4, 3, 2, 3), (4, 3, 1, 2, 1), False, np.float64)
    b = rng.standard_normal(3)
    kwargs = dict(stride=(2, 1, 2), padding=(0, 1, 0), output_padding=(1, 0, 1))
    got = host(conv_transpose3d(cuda.to_device(x), cuda.to_device(w), cuda.to_device(b), **kwargs))
    np.testing.assert_allclose(got, conv_transpose3d(x, w, b, **kwargs), rtol=1e-12, atol=1e-12)
    bias_only = got[:, :, 1::2]
    np.testing.assert_array_equal(bias_only, np.broadcast_to(b.reshape(-1, 1, 1, 1), bias_only.shape))
