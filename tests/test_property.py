"""Property test: random valid argument sets agree with the float64 oracle (and torch when installed).

The number of examples comes from NUMBA_CONV3D_EXAMPLES (default 300).
"""
import importlib.util
import os

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from checks import assert_every_algorithm_matches_reference, random_operands
from numba_conv3d import conv3d
from numba_conv3d.planner import plan_for_arrays

TORCH_INSTALLED = importlib.util.find_spec("torch") is not None
if TORCH_INSTALLED:
    from torch_oracle import assert_matches_torch

EXAMPLES = int(os.environ.get("NUMBA_CONV3D_EXAMPLES", "300"))
DTYPES = (np.float32, np.float64, np.complex64, np.complex128)
MODES = ("zeros", "reflect", "replicate", "circular")


@st.composite
def conv_arguments(draw):
    """A valid conv3d problem: shapes, arguments, dtype and memory layout."""
    groups = draw(st.integers(1, 3))
    in_channels = groups * draw(st.integers(1, 3))
    out_channels = groups * draw(st.integers(1, 6))
    kernel = draw(st.tuples(*[st.integers(1, 3)] * 3))
    dilation = draw(st.tuples(*[st.integers(1, 3)] * 3))
    stride = draw(st.tuples(*[st.integers(1, 3)] * 3))
    padding = draw(st.one_of(
        st.integers(0, 2), st.tuples(*[st.integers(0, 3)] * 3),
        st.just("valid"), st.just("same") if max(stride) == 1 else st.just("valid")))
    mode = draw(st.sampled_from(MODES))
    if padding == "same":
        pads = [(d * (k - 1) // 2, d * (k - 1) - d * (k - 1) // 2) for k, d in zip(kernel, dilation)]
    elif padding == "valid":
        pads = [(0, 0)] * 3
    else:
        pads = [(p, p) for p in (padding if isinstance(padding, tuple) else (padding,) * 3)]
    sizes = []
    for (front, back), k, d in zip(pads, kernel, dilation):
        smallest = max(1, d * (k - 1) + 1 - front - back)
        if mode == "reflect":
            smallest = max(smallest, front + 1, back + 1)
        elif mode == "circular":
            smallest = max(smallest, front, back)
        sizes.append(smallest + draw(st.integers(0, 3)))
    batch = draw(st.sampled_from([None, 0, 1, 2]))
    input_shape = ((in_channels,) if batch is None else (batch, in_channels)) + tuple(sizes)
    weight_shape = (out_channels, in_channels // groups) + kernel
    kwargs = dict(stride=draw(st.sampled_from([stride, stride[0]])) if len(set(stride)) == 1
                  else stride, padding=padding, dilation=dilation, groups=groups, padding_mode=mode)
    return (input_shape, weight_shape, draw(st.booleans()), kwargs, draw(st.sampled_from(DTYPES)),
            draw(st.sampled_from(["C", "F", "view"])), draw(st.integers(0, 2 ** 32 - 1)))


def _layout(a, layout):
    if layout == "F":
        return np.asfortranarray(a)
    if layout == "view":
        doubled = np.repeat(a, 2, axis=-1)
        return doubled[..., ::2]
    return a


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(conv_arguments())
def test_random_valid_arguments_match_the_oracles(problem):
    input_shape, weight_shape, bias, kwargs, dtype, layout, seed = problem
    x, w, b = random_operands(np.random.default_rng(seed), input_shape, weight_shape, bias, dtype)
    x = _layout(x, layout)
    out = conv3d(x, w, b, **kwargs)
    results = assert_every_algorithm_matches_reference(x, w, b, **kwargs)
    np.testing.assert_array_equal(out, results[plan_for_arrays(x, w, b, **kwargs).algorithm])
    if TORCH_INSTALLED:
        assert_matches_torch(out, x, w, b, **kwargs)
