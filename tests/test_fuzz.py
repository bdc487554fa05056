"""Hostile input: arbitrary (mostly invalid) arguments either give the reference result or raise
ValueError/TypeError with a message; never another exception, a crash or a hang."""
import os

import numpy as np
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from checks import assert_matches_reference
from numba_conv3d import conv3d

EXAMPLES = int(os.environ.get("NUMBA_CONV3D_FUZZ_EXAMPLES", "300"))

small_int = st.integers(-3, 6)
triple = st.tuples(small_int, small_int, small_int)
weird = st.one_of(st.none(), st.floats(-2, 4), st.text(max_size=4), st.booleans(),
                  st.lists(small_int, max_size=4), st.tuples(small_int, small_int))


def mostly(valid, invalid):
    """``valid`` about four times in five, so that whole argument sets are often valid."""
    return st.sampled_from([True, True, True, True, False]).flatmap(
        lambda use_valid: valid if use_valid else invalid)


positive = st.one_of(st.integers(1, 3), st.tuples(*[st.integers(1, 3)] * 3))
int_argument = mostly(positive, st.one_of(small_int, triple, weird))
padding = mostly(st.one_of(st.integers(0, 2), st.tuples(*[st.integers(0, 2)] * 3),
                           st.sampled_from(["same", "valid"])),
                 st.one_of(small_int, triple, weird, st.sampled_from(["full", ""])))
padding_mode = mostly(st.sampled_from(["zeros", "reflect", "replicate", "circular"]),
                      st.one_of(st.sampled_from(["wrap", ""]), weird))
dtype = mostly(st.sampled_from(["float32", "float64", "complex64", "complex128", "float16"]),
               st.sampled_from(["int32", "uint8", "bool", ">f4"]))
dims = st.lists(st.integers(0, 5), min_size=3, max_size=6)


@st.composite
def operand(draw, dims_strategy):
    """An array of drawn dims and dtype, sometimes a strided view, a read-only array or a list."""
    shape = tuple(draw(dims_strategy))
    array = np.random.default_rng(draw(st.integers(0, 9))).standard_normal(shape).astype(draw(dtype))
    kind = draw(mostly(st.sampled_from(["c", "view", "read-only"]), st.just("list")))
    if kind == "view" and array.ndim:
        array = np.repeat(array, 2, axis=-1)[..., ::2]
    if kind == "read-only":
        array.flags.writeable = False
    return array.tolist() if kind == "list" else array


@st.composite
def nearly_valid(draw):
    """Operands whose channels agree with ``groups`` (so that the other arguments decide), or not."""
    groups = draw(st.integers(1, 3))
    per_group_in, per_group_out = draw(st.integers(1, 2)), draw(st.integers(1, 3))
    spatial = st.lists(st.integers(1, 5), min_size=3, max_size=3)
    batch = draw(st.sampled_from([[], [0], [1], [2]]))
    x = draw(operand(st.just(batch + [groups * per_group_in] + draw(spatial))))
    w = draw(operand(st.just([groups * per_group_out, per_group_in] + draw(spatial))))
    same_dtype = draw(mostly(st.just(True), st.just(False)))
    if isinstance(x, np.ndarray) and isinstance(w, np.ndarray) and same_dtype:
        w = w.real.astype(x.dtype)
    bias = draw(st.one_of(st.none(), operand(st.just([groups * per_group_out]))))
    if isinstance(bias, np.ndarray) and isinstance(x, np.ndarray) and same_dtype:
        bias = bias.real.astype(x.dtype)
    return x, w, bias, draw(mostly(st.just(groups), st.one_of(small_int, weird)))


@st.composite
def anything(draw):
    """Operands of arbitrary dims, dtypes and kinds, and any ``groups``."""
    bias = draw(st.one_of(st.none(), operand(st.lists(st.integers(0, 5), min_size=1, max_size=2))))
    return draw(operand(dims)), draw(operand(dims)), bias, draw(st.one_of(small_int, weird))


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
@given(operands=mostly(nearly_valid(), anything()), stride=int_argument, padding=padding,
       dilation=int_argument, mode=padding_mode)
def test_any_arguments_give_the_reference_or_a_clear_error(operands, stride, padding, dilation, mode):
    x, w, bias, groups = operands
    kwargs = dict(stride=stride, padding=padding, dilation=dilation, groups=groups, padding_mode=mode)
    snapshots = [np.array(a, copy=True) for a in (x, w, bias) if isinstance(a, np.ndarray)]
    try:
        out = conv3d(x, w, bias, **kwargs)
    except (ValueError, TypeError) as err:
        assert str(err).startswith("conv3d: ") and len(str(err)) > 20, repr(err)
        event(f"refused: {type(err).__name__}: {str(err)[8:40]}")
        return
    event("computed")
    assert_matches_reference(out, x, w, bias, **kwargs)
    for before, after in zip(snapshots, (a for a in (x, w, bias) if isinstance(a, np.ndarray))):
        np.testing.assert_array_equal(after, before)
    assert not any(np.shares_memory(out, a) for a in (x, w, bias) if isinstance(a, np.ndarray))
