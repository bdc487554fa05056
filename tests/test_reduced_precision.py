"""float16 and bfloat16 operands: summed in float32, the bias added in float32, one rounding at the end
(to nearest, ties to even), through every CPU front; against the float64 oracle of the rounded operands
and against torch in the same dtype."""
import ml_dtypes
import numpy as np
import pytest

import numba_conv3d as nc
from checks import BFLOAT16, MODES, assert_close, pads_fit, reduced_bound, torch_of
from numba_conv3d.api import run_plan
from numba_conv3d.grad import conv3d_backward, conv3d_bias, conv3d_input, conv3d_weight
from numba_conv3d.planner import plan_conv3d, resolve_dtype
from numba_conv3d.precision import narrow, widen
from reference import conv3d_reference

DTYPES = (np.dtype(np.float16), BFLOAT16)

# (input shape, weight shape, kwargs): dense, strided, dilated, grouped, depthwise, odd and 1-wide
# extents, unbatched.
SHAPES = (
    ((2, 6, 5, 7, 6), (4, 6, 3, 3, 3), {"padding": 1}),
    ((1, 4, 7, 5, 9), (6, 4, 3, 1, 3), {"stride": (2, 1, 2), "padding": (1, 0, 1)}),
    ((1, 4, 8, 8, 7), (4, 2, 3, 3, 2), {"dilation": 2, "groups": 2, "padding": "same"}),
    ((2, 8, 4, 6, 1), (8, 1, 3, 3, 1), {"groups": 8, "padding": (1, 1, 0)}),
    ((16, 3, 9, 9), (24, 16, 1, 3, 3), {"padding": (0, 1, 1)}),
)


def _draw(rng, shape, dtype, scale=1.0):
    return (scale * rng.standard_normal(shape)).astype(dtype)


def _operands(shape_case, dtype, seed=0):
    x_shape, w_shape, _ = shape_case
    rng = np.random.default_rng(seed)
    return _draw(rng, x_shape, dtype), _draw(rng, w_shape, dtype), _draw(rng, w_shape[:1], dtype)


def _wide(*arrays):
    return [None if a is None else np.asarray(a, np.float64) for a in arrays]


def _float32_rounded(function, dtype, *arrays, **kwargs):
    """``function`` on the operands widened to float32, its array results rounded to ``dtype``."""
    result = function(*[a.astype(np.float32) if isinstance(a, np.ndarray) else a for a in arrays], **kwargs)
    with np.errstate(over="ignore"):  # beyond the largest float16, rounding gives Inf, as in torch
        if isinstance(result, tuple):
            return tuple(None if r is None else r.astype(dtype) for r in result)
        return result.astype(dtype)


def _assert_identical(actual, expected):
    """Same dtype and the same bits, NaN where NaN (whose payloads may differ)."""
    for a, e in zip(actual, expected) if isinstance(actual, tuple) else ((actual, expected),):
        if e is None:
            assert a is None
            continue
        assert a.dtype == e.dtype and a.shape == e.shape
        nan = np.isnan(e.astype(np.float32))
        np.testing.assert_array_equal(np.isnan(a.astype(np.float32)), nan)
        np.testing.assert_array_equal(a.view(np.uint16)[~nan], e.view(np.uint16)[~nan])


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape_case", SHAPES, ids=lambda c: "x".join(map(str, c[0])))
@pytest.mark.parametrize("mode", MODES)
def test_forward_within_float32_sums_and_one_rounding(dtype, shape_case, mode):
    if not pads_fit(shape_case[0], shape_case[2], mode):
        pytest.skip(f"padding_mode={mode} needs pads smaller than the extent")
    x, w, b = _operands(shape_case, dtype)
    kwargs = dict(shape_case[2], padding_mode=mode)
    out = nc.conv3d(x, w, b, **kwargs)
    assert out.dtype == dtype
    wide = _wide(x, w, b)
    expected = conv3d_reference(*wide, **kwargs)
    assert_close(out.astype(np.float64), expected, reduced_bound(dtype, expected, *wide, **kwargs))
    computed = nc.conv3d(x, w, b, algorithm=nc.plan_conv3d(x.shape, w.shape, **kwargs).algorithm, **kwargs)
    _assert_identical(computed, _float32_rounded(nc.conv3d, dtype, x, w, b, **kwargs))


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_gradients_are_the_float32_gradients_rounded_once(dtype):
    shape_case = SHAPES[1]
    x, w, _ = _operands(shape_case, dtype)
    kwargs = shape_case[2]
    g = _draw(np.random.default_rng(1), nc.conv3d(x, w, **kwargs).shape, dtype)
    _assert_identical(conv3d_input(x.shape, w, g, **kwargs),
                      _float32_rounded(conv3d_input, dtype, x.shape, w, g, **kwargs))
    _assert_identical(conv3d_weight(x, w.shape, g, **kwargs),
                      _float32_rounded(conv3d_weight, dtype, x, w.shape, g, **kwargs))
    _assert_identical(conv3d_bias(g), _float32_rounded(conv3d_bias, dtype, g))
    _assert_identical(conv3d_backward(x, w, g, **kwargs),
                      _float32_rounded(conv3d_backward, dtype, x, w, g, **kwargs))
    _assert_identical(conv3d_backward(x, w, g, bias=False, **kwargs),
                      _float32_rounded(conv3d_backward, dtype, x, w, g, bias=False, **kwargs))


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_transposed_and_layers(dtype):
    rng = np.random.default_rng(2)
    x, w, b = _draw(rng, (1, 6, 3, 4, 5), dtype), _draw(rng, (6, 4, 3, 3, 3), dtype), _draw(rng, (4,), dtype)
    kwargs = {"stride": 2, "padding": 1, "output_padding": 1}
    _assert_identical(nc.conv_transpose3d(x, w, b, **kwargs),
                      _float32_rounded(nc.conv_transpose3d, dtype, x, w, b, **kwargs))
    transposed = nc.ConvTranspose3d(6, 4, 3, padding=1, dtype=dtype.name, rng=3)
    assert transposed.weight.dtype == transposed.bias.dtype == dtype
    assert transposed.forward(x).dtype == dtype
    layer = nc.Conv3d(6, 4, 3, padding=1, dtype=dtype.name, rng=3)
    assert layer.weight.dtype == layer.bias.dtype == dtype
    out = layer.forward(x)
    _assert_identical(out, _float32_rounded(nc.conv3d, dtype, x, layer.weight, layer.bias, padding=1))
    grad_input = layer.backward(np.ones_like(out))
    assert grad_input.dtype == layer.weight_grad.dtype == layer.bias_grad.dtype == dtype
    assert grad_input.shape == x.shape


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_run_plan_and_batch_zero(dtype):
    x, w, b = _operands(SHAPES[0], dtype)
    plan = nc.plan_conv3d(x.shape, w.shape, padding=1, dtype=dtype)
    assert plan.dtype == dtype.name and plan.compute_dtype == "float32"
    assert plan.algorithm == nc.plan_conv3d(x.shape, w.shape, padding=1).algorithm
    _assert_identical(run_plan(plan, x, w, b), nc.conv3d(x, w, b, padding=1))
    empty = nc.conv3d(x[:0], w, b, padding=1)
    assert empty.shape == (0,) + nc.conv3d(x, w, b, padding=1).shape[1:] and empty.dtype == dtype


def test_dask_front_rounds_each_chunk_once():
    da = pytest.importorskip("dask.array", reason="the Dask front needs dask[array]")
    x, w, b = _operands(SHAPES[0], BFLOAT16)
    lazy = nc.conv3d(da.from_array(x, chunks=(1, 6, 3, 4, 6)), w, b, padding=1)
    assert lazy.dtype == BFLOAT16
    _assert_identical(lazy.compute(), nc.conv3d(x, w, b, padding=1))


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_nonfinite_and_overflow_as_float32_rounded(dtype):
    x, w, b = _operands(SHAPES[0], dtype)
    x[0, 1, 2, 3, 3] = np.inf
    x[1, 0, 0, 0, 0] = np.nan
    x[1, 2, 4, 6, 5] = 6e4  # float16's largest finite value is 65504: these sums overflow to Inf
    w[:, 2] = 4
    out = nc.conv3d(x, w, b, padding=1)
    _assert_identical(out, _float32_rounded(nc.conv3d, dtype, x, w, b, padding=1))
    assert np.isnan(out[1, :, 0, 0, 0].astype(np.float32)).all()
    assert np.isinf(out[0, :, 2, 3, 3].astype(np.float32)).any()


# Sizes converted by the parallel loops and by the casts (``half_precision._CAST_MAX_ELEMENTS``).
@pytest.mark.parametrize("size", [20000, 1000])
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_conversions_are_numpys_casts(dtype, size):
    rng = np.random.default_rng(5)
    with np.errstate(all="ignore"):
        values = (rng.standard_normal(size) * 10.0 ** rng.integers(-45, 39, size)).astype(np.float32)
        values = np.concatenate([values, np.array([np.inf, -np.inf, 0.0, -0.0, 65504, 65519.99, 65520,
                                                   3.4e38, 1e-45, -1e-40, 1 + 3 * 2 ** -9], np.float32)])
        expected = values.astype(dtype)
    np.testing.assert_array_equal(narrow(values, dtype).view(np.uint16), expected.view(np.uint16))
    np.testing.assert_array_equal(widen(expected[::-2]), expected[::-2].astype(np.float32))
    nan = narrow(np.array([np.nan, -np.nan], np.float32), dtype).astype(np.float32)
    assert np.isnan(nan).all() and np.signbit(nan).tolist() == [False, True]


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_conversions_give_the_same_bits_whatever_the_size(dtype):
    # Signaling and quiet NaNs of both signs, and a 0-d array keeping its shape.
    nans = np.array([0x7F800001, 0xFF800001, 0x7FC00000, 0xFFC00001], np.uint32).view(np.float32)
    small, large = narrow(nans, dtype), narrow(np.tile(nans, 1000), dtype)
    np.testing.assert_array_equal(small.view(np.uint16), large.view(np.uint16)[:4])
    np.testing.assert_array_equal(widen(small).view(np.uint32), widen(large).view(np.uint32)[:4])
    assert narrow(np.array(1.5, np.float32), dtype).shape == widen(np.array(1.5, dtype)).shape == ()


def test_rounds_to_nearest_even():
    # 1 + 3 * 2**-8 lies halfway between the bfloat16 values 1 + 2**-7 and 1 + 2 * 2**-7: ties to even.
    x = np.ones((1, 1, 1, 1, 1), BFLOAT16)
    w = np.full((1, 1, 1, 1, 1), 1 + 2 ** -7, BFLOAT16)
    b = np.full(1, 2 ** -8, BFLOAT16)
    assert float(nc.conv3d(x, w, b)[0, 0, 0, 0, 0]) == 1 + 2 * 2 ** -7
    assert float(nc.conv3d(x, w)[0, 0, 0, 0, 0]) == 1 + 2 ** -7


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_matches_torch_in_the_same_dtype(dtype):
    torch = pytest.importorskip("torch", reason="torch is the optional second oracle")
    shape_case = SHAPES[0]
    x, w, b = _operands(shape_case, dtype)
    kwargs = shape_case[2]
    xt, wt, bt = (torch_of(torch, a).requires_grad_(True) for a in (x, w, b))
    theirs = torch.nn.functional.conv3d(xt, wt, bt, **kwargs)
    ours = nc.conv3d(x, w, b, **kwargs)
    wide = _wide(x, w, b)
    expected = conv3d_reference(*wide, **kwargs)
    bound = reduced_bound(dtype, expected, *wide, **kwargs)
    assert_close(ours.astype(np.float64), theirs.detach().float().double().numpy(), 2 * bound)
    g = _draw(np.random.default_rng(4), ours.shape, dtype)
    theirs.backward(torch_of(torch, g))
    for mine, torch_grad in zip(conv3d_backward(x, w, g, **kwargs), (xt.grad, wt.grad, bt.grad)):
        reference = torch_grad.float().double().numpy()
        scale = np.abs(reference).max()
        # torch and ours both sum in float32 (differently ordered), then round once
        limit = 2 * float(ml_dtypes.finfo(dtype).eps) * scale
        assert np.abs(mine.astype(np.float64) - reference).max() <= limit


@pytest.mark.parametrize("spec", ["bfloat16", BFLOAT16, ml_dtypes.bfloat16, "float16", np.float16])
def test_dtype_names(spec):
    assert resolve_dtype("op", "dtype", spec).name in ("bfloat16", "float16")


def test_torch_dtype_names():
    torch = pytest.importorskip("torch", reason="torch dtypes are accepted where torch is installed")
    assert resolve_dtype("op", "dtype", torch.bfloat16) == BFLOAT16
    assert resolve_dtype("op", "dtype", torch.float16) == np.float16
    with pytest.raises(TypeError, match="complex half precision.*NumPy has no such dtype"):
        nc.Conv3d(2, 2, 1, dtype=torch.complex32)


def test_complex_half_is_refused_saying_why():
    with pytest.raises(TypeError, match="complex half precision.*use complex64"):
        plan_conv3d((1, 2, 3, 3, 3), (2, 2, 1, 1, 1), dtype="complex32")


def test_mixed_dtypes_are_refused():
    x, w, b = _operands(SHAPES[0], BFLOAT16)
    with pytest.raises(TypeError, match="weight dtype float32 does not match input dtype bfloat16"):
        nc.conv3d(x, w.astype(np.float32), padding=1)
    with pytest.raises(TypeError, match="bias dtype float16 does not match input dtype bfloat16"):
        nc.conv3d(x, w, b.astype(np.float16), padding=1)
    with pytest.raises(TypeError, match="grad_output dtype float32 does not match weight dtype bfloat16"):
        conv3d_input(x.shape, w, np.ones((2, 4, 5, 7, 6), np.float32), padding=1)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_gpu_plans_take_the_tensor_cores_where_they_serve(dtype):
    dense = plan_conv3d((1, 32, 8, 8, 8), (64, 32, 3, 3, 3), padding=1, dtype=dtype, backend="cuda")
    assert (dense.algorithm, dense.dtype) == ("cuda-tensor-core", dtype.name)
    depthwise = plan_conv3d((1, 8, 8, 8, 8), (8, 1, 3, 3, 3), groups=8, dtype=dtype, backend="cuda")
    assert depthwise.algorithm == "cuda-depthwise"  # run in float32 on widened operands


def test_tf32_is_an_opt_in_of_float32_on_the_gpu_only():
    shapes = ((1, 32, 8, 8, 8), (64, 32, 3, 3, 3))
    assert plan_conv3d(*shapes, backend="cuda").algorithm == "cuda-implicit-gemm"
    tf32 = plan_conv3d(*shapes, backend="cuda", allow_tf32=True)
    assert (tf32.algorithm, tf32.allow_tf32) == ("cuda-tensor-core", True)
    assert plan_conv3d(*shapes, backend="cuda", dtype="float64", allow_tf32=True).algorithm != (
        "cuda-tensor-core")
    cpu = plan_conv3d(*shapes, allow_tf32=True)
    assert cpu.algorithm == plan_conv3d(*shapes).algorithm
    with pytest.raises(TypeError, match="allow_tf32 must be True or False, but got str"):
        plan_conv3d(*shapes, allow_tf32="yes")


def test_memory_counts_the_float32_copies():
    half = plan_conv3d((1, 8, 16, 16, 16), (8, 8, 3, 3, 3), padding=1, dtype="float16")
    single = plan_conv3d((1, 8, 16, 16, 16), (8, 8, 3, 3, 3), padding=1)
    elements = 8 * 16 ** 3
    assert half.output_bytes == 2 * elements
    assert half.memory_bytes(2) == single.memory_bytes(2) + 2 * elements + 4 * elements
