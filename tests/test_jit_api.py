"""conv3d called from users' @njit code: the same arguments, bitwise the same result as from Python
(for plans of the register-blocked and direct kernels: jitted code runs no BLAS),
the same ValueError messages, TypingError for wrong types; the kernels reached by name, so that a user's
function neither compiles them again nor loses its own disk cache."""
import re
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from numba import njit, prange
from numba.core.errors import TypingError

from checks import assert_matches_reference, random_operands
from numba_conv3d import conv3d
from numba_conv3d.jit_kernels import symbol


@njit
def user_conv(x, w, b, stride, padding, dilation, groups, padding_mode):
    return conv3d(x, w, b, stride, padding, dilation, groups, padding_mode)


@njit
def user_conv_keywords(x, w):
    return conv3d(x, w, stride=(1, 2, 1), padding=(1, 0, 2),
                  padding_mode="replicate")


@njit(parallel=True)
def user_pipeline(x, w, steps):
    """A user's parallel function: a filter applied repeatedly, with its own prange loop beside."""
    for _ in range(steps):
        x = conv3d(x, w, padding="same", padding_mode="circular")
        for i in prange(x.shape[1]):
            x[0, i] *= 0.5
    return x


# (input shape, weight shape, bias, stride, padding, dilation, groups, padding_mode, dtype): every
# argument form; shapes vary freely within one compiled signature.
FORMS = {
    "ints": ((2, 4, 6, 7, 8), (6, 2, 3, 3, 3), True, 2, 1, 1, 2, "zeros", np.float32),
    "tuples": ((1, 3, 5, 9, 6), (4, 3, 2, 3, 2), True, (1, 2, 1), (1, 0, 2), (2, 1, 1), 1,
               "reflect", np.float32),
    "same, no bias": ((1, 2, 5, 6, 7), (3, 2, 2, 3, 4), None, 1, "same", (1, 2, 1), 1, "circular",
                      np.float32),
    "valid, float64": ((2, 2, 6, 5, 7), (2, 1, 3, 2, 2), True, 1, "valid", 1, 2, "replicate",
                       np.float64),
    "unbatched depthwise": ((4, 6, 5, 7), (4, 1, 3, 3, 3), True, 1, 1, 1, 4, "reflect", np.float32),
    "complex64": ((1, 2, 4, 5, 6), (3, 2, 2, 2, 2), True, (1, 1, 2), 1, 1, 1, "zeros", np.complex64),
    "rows of 14, channel-vectorized": ((1, 3, 4, 6, 14), (32, 3, 3, 3, 3), True, 1, 1, 1, 1, "zeros",
                                       np.float32),
}


@pytest.mark.parametrize("form", FORMS)
def test_every_argument_form_is_bitwise_the_python_call(form):
    input_shape, weight_shape, bias, stride, padding, dilation, groups, mode, dtype = FORMS[form]
    x, w, b = random_operands(np.random.default_rng(0), input_shape, weight_shape, bias, dtype)
    jitted = user_conv(x, w, b, stride, padding, dilation, groups, mode)
    kwargs = dict(stride=stride, padding=padding, dilation=dilation, groups=groups, padding_mode=mode)
    np.testing.assert_array_equal(jitted, conv3d(x, w, b, **kwargs))
    assert_matches_reference(jitted, x, w, b, **kwargs)


def test_keyword_arguments_and_defaults():
    x, w, _ = random_operands(np.random.default_rng(1), (1, 2, 5, 6, 7), (3, 2, 3, 2, 3), False,
                              np.float32)
    kwargs = dict(stride=(1, 2, 1), padding=(1, 0, 2), padding_mode="replicate")
    np.testing.assert_array_equal(user_conv_keywords(x, w), conv3d(x, w, **kwargs))


def test_inside_a_users_parallel_function():
    x, w, _ = random_operands(np.random.default_rng(2), (1, 3, 6, 6, 6), (3, 3, 3, 3, 3), False,
                              np.float64)
    expected = x
    for _ in range(2):
        expected = conv3d(expected, w, padding="same", padding_mode="circular") * 0.5
    np.testing.assert_array_equal(user_pipeline(x, w, 2), expected)


# Tuples throughout, so that the jitted calls share the "tuples" form's compiled signature (a padding
# string adds one more): each new signature compiles the checks again (about 3 s).
BAD_VALUES = {
    "stride zero": dict(stride=(1, 0, 1)),
    "negative dilation": dict(dilation=(1, -1, 1)),
    "negative padding": dict(padding=(0, -2, 0)),
    "groups zero": dict(groups=0),
    "groups not dividing": dict(groups=4),
    "unknown padding string": dict(padding="full"),
    "same with stride": dict(padding="same", stride=(1, 2, 1)),
    "unknown mode": dict(padding_mode="wrap"),
    "reflect pad too large": dict(padding=(5, 5, 5), padding_mode="reflect"),
    "circular pad too large": dict(padding=(6, 0, 0), padding_mode="circular"),
    "kernel larger than input": dict(dilation=(4, 4, 4)),
}


@pytest.mark.parametrize("case", BAD_VALUES)
def test_bad_values_raise_the_python_message(case):
    x, w, b = random_operands(np.random.default_rng(3), (1, 6, 5, 6, 7), (6, 2, 3, 3, 3), True,
                              np.float32)
    arguments = dict(dict(stride=(1, 1, 1), padding=(0, 0, 0), dilation=(1, 1, 1), groups=3,
                          padding_mode="zeros"), **BAD_VALUES[case])
    with pytest.raises(ValueError) as from_python:
        conv3d(x, w, b, **arguments)
    with pytest.raises(ValueError) as from_jit:
        user_conv(x, w, b, *arguments.values())
    assert str(from_jit.value) == str(from_python.value)


def test_bad_shapes_raise_the_python_message():
    x, w, b = random_operands(np.random.default_rng(4), (1, 4, 5, 6, 7), (6, 4, 3, 3, 3), True,
                              np.float32)
    for args in ((x, w, b[:5]), (x[:, :3], w, b), (x[:, :, :0], w, b)):
        with pytest.raises(ValueError) as from_python:
            conv3d(*args)
        with pytest.raises(ValueError) as from_jit:
            user_conv(*args, 1, 0, 1, 1, "zeros")
        assert str(from_jit.value) == str(from_python.value)


BAD_TYPES = {
    "float stride": ((1.5, 0, 1, 1, "zeros"), r"stride must be an int or a tuple of 3 ints"),
    "pair padding": ((1, (1, 1), 1, 1, "zeros"), r"padding must be an int, a tuple of 3 ints"),
    "float groups": ((1, 0, 1, 2.0, "zeros"), r"groups must be an int"),
    "int padding mode": ((1, 0, 1, 1, 0), r"padding_mode must be a string"),
}


@pytest.mark.parametrize("case", BAD_TYPES)
def test_wrong_types_are_typing_errors_naming_the_argument(case):
    arguments, message = BAD_TYPES[case]
    x, w, b = random_operands(np.random.default_rng(5), (1, 2, 4, 4, 4), (2, 2, 1, 1, 1), True,
                              np.float32)
    with pytest.raises(TypingError, match=message):
        user_conv(x, w, b, *arguments)


def test_mismatched_dtypes_and_int_arrays_are_typing_errors():
    x = np.ones((1, 2, 4, 4, 4), np.float32)
    with pytest.raises(TypingError, match=r"weight dtype must be the input dtype float32"):
        user_conv(x, np.ones((2, 2, 1, 1, 1)), None, 1, 0, 1, 1, "zeros")
    with pytest.raises(TypingError, match=r"input dtype must be float32, float64"):
        user_conv(x.astype(np.int32), np.ones((2, 2, 1, 1, 1), np.int32), None, 1, 0, 1, 1, "zeros")


def test_a_users_function_calls_the_kernels_by_name_without_compiling_them_in():
    x, w, _ = random_operands(np.random.default_rng(6), (1, 2, 4, 5, 6), (4, 2, 3, 3, 3), False,
                              np.float32)
    user_conv_keywords(x, w)
    llvm = user_conv_keywords.inspect_llvm(user_conv_keywords.signatures[0])
    assert symbol("float32") in llvm
    defined = re.findall(r"^define [^@]*@\"?([^(\"]+)", llvm, re.MULTILINE)
    assert defined and not [name for name in defined if "numba_conv3d3cpu" in name]


CACHED_USER_FUNCTION = textwrap.dedent("""
    import numpy as np
    from numba import njit
    from numba_conv3d import conv3d

    @njit(cache=True)
    def smooth(x, w):
        return conv3d(x, w, padding="same", padding_mode="reflect")

    x = np.random.default_rng(0).standard_normal((1, 2, 9, 10, 11))
    w = np.random.default_rng(1).standard_normal((3, 2, 3, 3, 3))
    same = np.array_equal(smooth(x, w), conv3d(x, w, padding="same", padding_mode="reflect"))
    print(same, sum(smooth.stats.cache_hits.values()))
""")


def test_a_users_cached_function_runs_when_loaded_from_the_cache(tmp_path):
    script = tmp_path / "user_module.py"
    script.write_text(CACHED_USER_FUNCTION)
    runs = [subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=600)
            for _ in range(2)]
    for run in runs:
        assert run.returncode == 0, run.stderr[-2000:]
    # The second process loads the user's function from its cache and must find the kernels' name.
    assert [run.stdout.split() for run in runs] == [["True", "0"], ["True", "1"]]


WORKSPACE_BEYOND_THE_LIMIT = textwrap.dedent("""
    import re, resource
    import numpy as np
    from numba import njit
    from numba_conv3d import conv3d

    @njit
    def user(x, w):
        return conv3d(x, w)

    x = np.ones((1, 256, 3, 3, 3))
    small = np.ones((8, 256, 3, 3, 3))
    user(x, small)
    large = np.ones((2048, 256, 3, 3, 3))  # 113 MB: the kernels' packed copy cannot fit below
    used = int(re.search(r"VmSize:\\s+(\\d+)", open("/proc/self/status").read()).group(1)) * 1024
    resource.setrlimit(resource.RLIMIT_AS, (used + 32 * 2 ** 20, resource.RLIM_INFINITY))
    try:
        user(x, large)
        print("no error")
    except MemoryError as error:
        print(error)
    print(np.array_equal(user(x, small), conv3d(x, small)))
""")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="limits the address space via /proc")
def test_kernels_that_cannot_allocate_raise_memory_error_and_the_process_goes_on():
    done = subprocess.run([sys.executable, "-c", WORKSPACE_BEYOND_THE_LIMIT], capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.splitlines() == ["conv3d: the CPU kernels could not allocate their workspace",
                                        "True"]
