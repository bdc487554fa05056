"""``call_apart`` calls a jitted function by its symbol: the caller must work when compiled, when loaded
from Numba's cache in a fresh process, when the callee alone was compiled again since (under another
symbol), and it must propagate the callee's exceptions."""
import glob
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from numba import njit
from numba.core.errors import TypingError

from numba_conv3d.cpu.unlinked import call_apart

MODULE = textwrap.dedent("""
    import numpy as np
    from numba import njit, prange
    from numba_conv3d.cpu.unlinked import call_apart

    @njit(cache=True)
    def scaled_row(x, out, row, factor):
        for j in range(x.shape[1]):
            out[row, j] = x[row, j] * factor
        return row

    @njit(parallel=True, cache=True)
    def scaled(x, factor):
        out = np.empty_like(x)
        rows = 0
        for row in prange(x.shape[0]):
            rows += call_apart(scaled_row, x, out, np.int64(row), factor) * 0 + 1
        return out, rows

    @njit(cache=True)
    def outer(x, factor):
        return scaled(x, factor)
""")

RUN = textwrap.dedent("""
    import json, sys, numpy as np, apart_module
    function = getattr(apart_module, sys.argv[1])
    x = np.arange(12.0).reshape(4, 3)
    out, rows = function(x, 2.5)
    print(json.dumps({"right": bool(np.array_equal(out, x * 2.5)) and rows == 4,
                      "cache_hits": sum(function.stats.cache_hits.values())}))
""")


def _run(directory, function="scaled"):
    env = dict(os.environ, NUMBA_CACHE_DIR=str(directory / "cache"),
               PYTHONPATH=os.pathsep.join([str(directory)] + sys.path))
    done = subprocess.run([sys.executable, "-c", RUN, function], env=env, cwd=directory, check=True,
                          capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_a_caller_works_compiled_from_the_cache_and_after_its_callee_is_compiled_again(tmp_path):
    (tmp_path / "apart_module.py").write_text(MODULE)
    assert _run(tmp_path) == {"right": True, "cache_hits": 0}
    assert _run(tmp_path) == {"right": True, "cache_hits": 1}
    callee_cache = glob.glob(str(tmp_path / "cache" / "**" / "*scaled_row*"), recursive=True)
    assert callee_cache
    for path in callee_cache:
        os.remove(path)
    assert _run(tmp_path) == {"right": True, "cache_hits": 1}


def test_a_caller_compiled_against_a_cached_kernel_works_loaded_from_the_cache(tmp_path):
    """``outer`` compiled in a process that loaded ``scaled`` from the cache, then loaded alone: Numba
    dropped the reload hooks of a library it loaded from the cache, and the process that loaded
    ``outer`` neither gave LLVM ``scaled_row``'s symbol nor started the parallel runtime (it crashed;
    the C entry of jitted ``conv3d`` stopped on "Symbol not found")."""
    (tmp_path / "apart_module.py").write_text(MODULE)
    assert _run(tmp_path, "scaled") == {"right": True, "cache_hits": 0}
    assert _run(tmp_path, "outer") == {"right": True, "cache_hits": 0}
    assert _run(tmp_path, "outer") == {"right": True, "cache_hits": 1}


@njit
def _checked(value):
    if value < 0:
        raise ValueError("negative")
    return value * 2


@njit
def _call_checked(value):
    return call_apart(_checked, value)


def test_the_callee_result_and_exceptions_reach_the_caller():
    assert _call_checked(21) == 42
    with pytest.raises(ValueError, match="negative"):
        _call_checked(-1)


@njit
def _fill(a, value):
    a[:] = value


@njit
def _call_fill(a):
    call_apart(_fill, a, 7.0)


def test_arrays_are_passed_not_copied():
    a = np.zeros(5)
    _call_fill(a)
    np.testing.assert_array_equal(a, 7.0)


def test_a_local_function_is_refused_at_compile_time():
    @njit
    def local(value):
        return value

    @njit
    def caller(value):
        return call_apart(local, value)

    with pytest.raises(TypingError, match="module-level"):
        caller(1)
