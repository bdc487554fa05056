"""torch.nn.Conv3d as the second oracle (tests that import this skip cleanly without torch)."""
import numpy as np
import pytest

from checks import assert_close, rounding_bound

torch = pytest.importorskip("torch", reason="torch is the optional second oracle (pip install torch)")


def torch_conv3d(x, w, b=None, stride=1, padding=0, dilation=1, groups=1, padding_mode="zeros"):
    """Run torch.nn.Conv3d with the given parameters on NumPy operands; return NumPy."""
    module = torch.nn.Conv3d(w.shape[1] * groups, w.shape[0], w.shape[2:], stride=stride,
                             padding=padding, dilation=dilation, groups=groups, bias=b is not None,
                             padding_mode=padding_mode, dtype=getattr(torch, w.dtype.name))
    with torch.no_grad():
        module.weight.copy_(torch.from_numpy(np.ascontiguousarray(w)))
        if b is not None:
            module.bias.copy_(torch.from_numpy(b))
        return module(torch.from_numpy(np.ascontiguousarray(x))).numpy()


def assert_matches_torch(actual, x, w, b=None, **kwargs):
    """Ours and torch each lie within the rounding bound of the exact result, so within 3 bounds of
    each other (torch's complex path uses three real convolutions, a slightly looser bound)."""
    expected = torch_conv3d(x, w, b, **kwargs)
    assert actual.shape == expected.shape and actual.dtype == expected.dtype
    assert_close(actual, expected, 3 * rounding_bound(actual.dtype, x, w, b, **kwargs))
