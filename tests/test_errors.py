"""Every bad argument: the right exception type, a message naming the argument, raised before any kernel."""
import numpy as np
import pytest

import numba_conv3d.cpu
import numba_conv3d.cuda
from numba_conv3d import Conv3d, conv3d, plan_conv3d

X = np.zeros((1, 4, 5, 6, 7), np.float32)
W = np.zeros((6, 2, 3, 3, 3), np.float32)


@pytest.fixture(autouse=True)
def no_kernel_may_run(monkeypatch):
    def forbidden(*args):
        raise AssertionError("a kernel ran although the arguments are invalid")

    for backend in (numba_conv3d.cpu, numba_conv3d.cuda):
        monkeypatch.setattr(backend, "execute", forbidden)


BAD_VALUES = {
    "stride zero": (dict(stride=0), r"stride must be >= 1 .* \(0, 0, 0\)"),
    "stride negative in one dim": (dict(stride=(1, -2, 1)), r"stride must be >= 1 .* \(1, -2, 1\)"),
    "dilation zero": (dict(dilation=(1, 0, 1)), r"dilation must be >= 1"),
    "groups zero": (dict(groups=0), r"groups must be a positive integer, but got groups=0"),
    "groups negative": (dict(groups=-2), r"groups=-2"),
    "negative padding": (dict(padding=-1), r"padding must be >= 0 .* \(-1, -1, -1\)"),
    "padding tuple of 2": (dict(padding=(1, 1)), r"padding must be an int or have 3 elements.* 2"),
    "stride tuple of 4": (dict(stride=(1, 1, 1, 1)), r"stride must .* 3 elements.* 4"),
    "dilation tuple of 1": (dict(dilation=[2]), r"dilation must .* 3 elements"),
    "unknown padding string": (dict(padding="full"), r"invalid padding string 'full'"),
    "padding string wrong case": (dict(padding="SAME"), r"invalid padding string 'SAME'"),
    "unknown padding mode": (dict(padding_mode="mirror"), r"padding_mode must be one of .*'mirror'"),
    "same with stride": (dict(padding="same", stride=(1, 2, 1)), r"padding='same' .* stride=\(1, 2, 1\)"),
    "groups not dividing out channels": (dict(groups=4), r"6 output channels, which groups=4"),
    "groups mismatching in channels": (dict(groups=1), r"expected input .* to have 2 channels, but got 4"),
    "kernel larger than padded input": (dict(dilation=(3, 1, 1)), r"padded input extent \(5, 6, 7\) "
                                        r"is smaller than the dilated kernel extent \(7, 3, 3\)"),
    "reflect pad equal to extent": (dict(padding=5, padding_mode="reflect", dilation=(1, 1, 1)),
                                    r"reflect.* pads \(5, 5\) for extent 5"),
    "circular pad past extent": (dict(padding=(6, 0, 0), padding_mode="circular"),
                                 r"circular.* pads \(6, 6\) for extent 5"),
}


@pytest.mark.parametrize("case", BAD_VALUES)
def test_bad_values_raise_value_error(case):
    kwargs, message = BAD_VALUES[case]
    kwargs = dict({"groups": 2}, **kwargs)
    with pytest.raises(ValueError, match=message):
        conv3d(X, W, **kwargs)


BAD_SHAPES = {
    "3-D input": (np.zeros((4, 5, 6), np.float32), W, None, r"input .* 4 or 5 dimensions.* \(4, 5, 6\)"),
    "6-D input": (np.zeros((1, 1, 4, 5, 6, 7), np.float32), W, None,
                  r"input of shape \(1, 1, 4, 5, 6, 7\) \(6 dimensions\)"),
    "4-D weight": (X, np.zeros((6, 2, 3, 3), np.float32), None, r"weight to have 5 dimensions"),
    "empty spatial extent": (np.zeros((1, 4, 0, 6, 7), np.float32), W, None,
                             r"input of shape \(1, 4, 0, 6, 7\) has an empty dimension"),
    "empty channels": (np.zeros((1, 0, 5, 6, 7), np.float32), W, None, r"empty dimension"),
    "empty kernel": (X, np.zeros((6, 2, 0, 3, 3), np.float32), None, r"weight of shape .* empty"),
    "no output channels": (X, np.zeros((0, 2, 3, 3, 3), np.float32), None, r"weight of shape .* empty"),
    "bias too long": (X, W, np.zeros(7, np.float32), r"bias to be 1-dimensional with 6 elements, "
                                                     r"but got bias of shape \(7,\)"),
    "bias of rank 2": (X, W, np.zeros((6, 1), np.float32), r"bias of shape \(6, 1\)"),
    "scalar bias": (X, W, np.zeros((), np.float32), r"bias of shape \(\)"),
}


@pytest.mark.parametrize("case", BAD_SHAPES)
def test_bad_shapes_raise_value_error(case):
    x, w, b, message = BAD_SHAPES[case]
    with pytest.raises(ValueError, match=message):
        conv3d(x, w, b, groups=2)


class FakeCudaArray:
    __cuda_array_interface__ = {"shape": (1, 4, 5, 6, 7), "typestr": "<f4", "version": 3}


BAD_TYPES = {
    "int input": (X.astype(np.int32), W, None, {}, r"input dtype int32 is not supported"),
    "bool input": (X.astype(bool), W, None, {}, r"input dtype bool is not supported"),
    "uint8 input": (X.astype(np.uint8), W.astype(np.uint8), None, {}, r"uint8 is not supported"),
    "mismatched weight dtype": (X, W.astype(np.float64), None, {},
                                r"weight dtype float64 does not match input dtype float32"),
    "mismatched bias dtype": (X, W, np.zeros(6, np.complex64), {},
                              r"bias dtype complex64 does not match input dtype float32"),
    "big-endian input": (X.astype(">f4"), W, None, {}, r"native byte order"),
    "list input": (X.tolist(), W, None, {}, r"input must be a NumPy array, but got list"),
    "string weight": (X, "weights", None, {}, r"weight must be a NumPy array, but got str"),
    "list bias": (X, W, [0.0] * 6, {}, r"bias must be a NumPy array, but got list"),
    "float stride": (X, W, None, {"stride": 1.5}, r"stride must be an int .* float 1.5"),
    "float in padding tuple": (X, W, None, {"padding": (1, 1.0, 1)}, r"padding must be an int .* float"),
    "bool dilation": (X, W, None, {"dilation": True}, r"dilation must be an int .* bool"),
    "float groups": (X, W, None, {"groups": 2.0}, r"groups must be an int, but got float"),
    "non-string padding mode": (X, W, None, {"padding_mode": 0}, r"padding_mode must be a string"),
    "CUDA array without dtype": (FakeCudaArray(), W, None, {}, r"input \(FakeCudaArray\) has no shape"),
    "CUDA weight, host input": (X, FakeCudaArray(), None, {}, r"weight is a CUDA array but input is not"),
    "CUDA bias, host input": (X, W, FakeCudaArray(), {}, r"bias is a CUDA array but input is not"),
}


@pytest.mark.parametrize("case", BAD_TYPES)
def test_bad_types_raise_type_error(case):
    x, w, b, kwargs, message = BAD_TYPES[case]
    with pytest.raises(TypeError, match=message):
        conv3d(x, w, b, **dict({"groups": 2}, **kwargs))


def test_planner_rejects_bad_shapes_and_dtypes_directly():
    with pytest.raises(TypeError, match=r"input shape must be an int"):
        plan_conv3d((1, 2, 3.0, 4, 5), (1, 2, 1, 1, 1))
    with pytest.raises(TypeError, match=r"dtype int64 is not supported"):
        plan_conv3d((1, 2, 3, 4, 5), (1, 2, 1, 1, 1), dtype=np.int64)
    with pytest.raises(TypeError, match=r"'no-such-type' is not a dtype"):
        plan_conv3d((1, 2, 3, 4, 5), (1, 2, 1, 1, 1), dtype="no-such-type")
    with pytest.raises(TypeError, match=r"shape must be a tuple of ints, but got int"):
        plan_conv3d(5, (1, 2, 1, 1, 1))
    with pytest.raises(ValueError, match=r"empty dimension"):
        plan_conv3d((-1, 2, 3, 4, 5), (1, 2, 1, 1, 1))


BAD_LAYERS = {
    "zero in_channels": (dict(in_channels=0), ValueError, r"in_channels must be a positive integer"),
    "zero out_channels": (dict(out_channels=0), ValueError, r"out_channels must be a positive integer"),
    "zero kernel": (dict(kernel_size=0), ValueError, r"kernel_size must be >= 1"),
    "kernel tuple with zero": (dict(kernel_size=(3, 0, 3)), ValueError, r"kernel_size .* \(3, 0, 3\)"),
    "in_channels not divisible": (dict(in_channels=5), ValueError,
                                  r"in_channels must be divisible by groups, but got in_channels=5"),
    "out_channels not divisible": (dict(out_channels=3), ValueError, r"out_channels=3 and groups=2"),
    "groups zero": (dict(groups=0), ValueError, r"groups must be a positive integer"),
    "same with stride": (dict(padding="same", stride=2), ValueError, r"padding='same'"),
    "unknown padding string": (dict(padding="full"), ValueError, r"invalid padding string"),
    "unknown mode": (dict(padding_mode="wrap"), ValueError, r"padding_mode must be one of"),
    "negative padding": (dict(padding=(0, -1, 0)), ValueError, r"padding must be >= 0"),
    "unknown device": (dict(device="tpu"), ValueError, r"device must be None, 'cpu', 'cuda'.*'tpu'"),
    "float channels": (dict(in_channels=4.0), TypeError, r"in_channels must be an int"),
    "float stride": (dict(stride=2.5), TypeError, r"stride must be an int"),
    "int dtype": (dict(dtype=np.int32), TypeError, r"dtype int32 is not supported"),
    "string bias": (dict(bias="yes"), TypeError, r"bias must be True or False"),
}


@pytest.mark.parametrize("case", BAD_LAYERS)
def test_layer_constructor_rejects(case):
    kwargs, error, message = BAD_LAYERS[case]
    arguments = dict(dict(in_channels=4, out_channels=6, kernel_size=3, groups=2), **kwargs)
    with pytest.raises(error, match=message):
        Conv3d(**arguments)


def test_layer_call_applies_the_same_rules():
    layer = Conv3d(4, 6, 3, padding=3, padding_mode="reflect", groups=2)
    with pytest.raises(ValueError, match=r"reflect.* pads \(3, 3\) for extent 3"):
        layer(np.zeros((1, 4, 3, 8, 8), np.float32))
    with pytest.raises(ValueError, match=r"expected input .* to have 4 channels, but got 3"):
        layer(np.zeros((1, 3, 8, 8, 8), np.float32))
    with pytest.raises(TypeError, match=r"weight dtype float32 does not match input dtype float64"):
        layer(np.zeros((1, 4, 8, 8, 8), np.float64))
