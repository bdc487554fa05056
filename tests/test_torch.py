"""numba_conv3d against torch itself, on torch's own conv3d test inputs and on its module."""
import math

import numpy as np
import pytest

from checks import assert_matches_reference, random_operands
from numba_conv3d import Conv3d, conv3d
from torch_oracle import assert_matches_torch, torch

# torch's OpInfo samples for nn.functional.conv3d (sample_inputs_conv3d): input, weight, bias, kwargs
OPINFO_SAMPLES = [
    ((1, 1, 4, 4, 4), (1, 1, 1, 1, 1), (1,), {"padding": "same"}),
    ((1, 1, 4, 4, 4), (1, 1, 4, 4, 4), (1,), {"stride": (2, 2, 2)}),
    ((1, 1, 5, 5, 5), (1, 1, 3, 3, 3), (1,), {"dilation": 2}),
    ((1, 1, 1, 1, 10), (1, 1, 1, 1, 4), None, {"padding": "valid"}),
    ((1, 1, 10, 11, 12), (1, 1, 1, 2, 5), None, {"padding": "same"}),
    ((1, 1, 10, 11, 12), (1, 1, 1, 2, 5), None, {"padding": "same", "dilation": 2}),
    ((1, 1, 10, 11, 12), (1, 1, 4, 4, 4), None, {"padding": "same", "dilation": 3}),
    ((3, 9, 3, 1, 9), (3, 3, 3, 1, 9), (3,), {"groups": 3}),
    ((3, 9, 3, 1, 9), (3, 3, 3, 1, 9), (3,), {"stride": (2, 2, 2), "dilation": 1, "groups": 3}),
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.complex64])
@pytest.mark.parametrize("batched", [True, False])
@pytest.mark.parametrize("sample", range(len(OPINFO_SAMPLES)))
def test_torch_opinfo_samples(sample, batched, dtype):
    x_shape, w_shape, b_shape, kwargs = OPINFO_SAMPLES[sample]
    x, w, b = random_operands(np.random.default_rng(sample), x_shape if batched else x_shape[1:],
                              w_shape, b_shape is not None, dtype)
    out = conv3d(x, w, b, **kwargs)
    assert_matches_torch(out, x, w, b, **kwargs)
    assert_matches_reference(out, x, w, b, **kwargs)


# torch's common_nn Conv3d module tests: constructor arguments, input shape
COMMON_NN = [
    ((2, 3, (2, 3, 2)), {}, (1, 2, 4, 5, 4)),
    ((2, 3, (2, 3, 4), 1, 0, 1, 1, False), {}, (1, 2, 3, 4, 5)),
    ((2, 3, (1, 1, 1), 1, 0, 1, 1, False), {}, (1, 2, 3, 4, 5)),
    ((3, 4, 2, 2), {}, (2, 3, 5, 5, 5)),
    ((3, 4, 2, 2, 1), {}, (2, 3, 5, 5, 5)),
    ((3, 4, (2, 3, 4)), {}, (0, 3, 3, 4, 5)),
    ((2, 4), {"kernel_size": 3, "groups": 2}, (1, 2, 4, 5, 4)),
    ((3, 4), {"kernel_size": 2, "dilation": 2}, (2, 3, 5, 5, 5)),
    ((3, 4), {"kernel_size": 2, "dilation": 2, "stride": 2}, (2, 3, 5, 5, 5)),
    ((3, 4, (2, 3, 4)), {"padding": "valid"}, (2, 3, 6, 5, 4)),
    ((3, 4, (2, 3, 4)), {"padding": "same"}, (2, 3, 6, 5, 4)),
    ((3, 4, (2, 3, 4)), {"padding": "same", "dilation": 2}, (2, 3, 6, 5, 4)),
    # ModuleInfo's module_inputs_torch_nn_ConvNd for N=3: C_in 4, C_out 5, kernel 3
    ((4, 5, 3), {}, (2, 4, 3, 4, 5)),
    ((4, 5, 3), {}, (4, 3, 4, 5)),
    ((4, 5, 3), {"padding": "same"}, (2, 4, 3, 4, 5)),
    ((4, 5, 3), {"padding": "same"}, (4, 3, 4, 5)),
]


@pytest.mark.parametrize("case", range(len(COMMON_NN)))
def test_torch_common_nn_modules(case):
    args, kwargs, input_shape = COMMON_NN[case]
    ours = Conv3d(*args, **kwargs, rng=case)
    theirs = torch.nn.Conv3d(*args, **kwargs)
    x = np.random.default_rng(case).standard_normal(input_shape).astype(np.float32)
    assert repr(ours) == repr(theirs)
    assert ours.weight.shape == tuple(theirs.weight.shape)
    out = ours(x)
    assert_matches_torch(out, x, ours.weight, ours.bias, stride=ours.stride, padding=ours.padding,
                         dilation=ours.dilation, groups=ours.groups)


@pytest.mark.parametrize("mode", ["zeros", "reflect", "replicate", "circular"])
@pytest.mark.parametrize("kwargs", [
    {"padding": "same"},
    {"padding": "same", "dilation": (1, 2, 3)},
    {"padding": (2, 1, 3), "stride": (2, 1, 3)},
    {"padding": (1, 0, 2), "dilation": 2, "groups": 3},
])
def test_torch_padding_modes(mode, kwargs):
    x, w, b = random_operands(np.random.default_rng(9), (2, 6, 5, 6, 7), (6, 6 // kwargs.get("groups", 1),
                                                                          2, 3, 4), True, np.float32)
    assert_matches_torch(conv3d(x, w, b, padding_mode=mode, **kwargs), x, w, b, padding_mode=mode,
                         **kwargs)


@pytest.mark.parametrize("args, kwargs", [
    ((16, 33, 3), {"stride": 2}),
    ((16, 33, (3, 5, 2)), {"stride": (2, 1, 1), "padding": (4, 2, 0)}),
    ((4, 8, 3), {"padding": "same", "dilation": 2, "groups": 4, "bias": False,
                 "padding_mode": "reflect"}),
    ((2, 2, [1, 2, 3]), {"padding": "valid", "padding_mode": "circular"}),
    ((3, 6, 1), {"padding": 0, "dilation": 1, "groups": 3, "padding_mode": "replicate"}),
])
def test_repr_and_init_bound_equal_torch(args, kwargs):
    ours, theirs = Conv3d(*args, **kwargs), torch.nn.Conv3d(*args, **kwargs)
    assert repr(ours) == repr(theirs)
    assert ours.extra_repr() == theirs.extra_repr()
    # float32 weights reach the bound as rounded to float32 (torch drew 1 ulp past the exact one)
    bound = float(np.float32(1 / math.sqrt(ours.weight[0].size)))
    assert float(theirs.weight.detach().abs().max()) <= bound
    assert np.abs(ours.weight).max() <= bound
    assert (ours.bias is None) == (theirs.bias is None)


def test_complex_layer_matches_torch():
    layer = Conv3d(2, 4, 3, padding=1, padding_mode="circular", dtype="complex64", rng=0)
    x = (np.random.default_rng(1).standard_normal((1, 2, 4, 5, 6)) * (1 + 0.5j)).astype(np.complex64)
    assert_matches_torch(layer(x), x, layer.weight, layer.bias, padding=1, padding_mode="circular")
