"""Concurrent callers, every threading layer, fork, and a user's prange loop around conv3d."""
import os
import subprocess
import sys
import textwrap
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from checks import random_operands
from numba_conv3d import conv3d
from numba_conv3d.parallelism import threading_layer

# Different shapes and algorithms (blocked, row-blocked, direct), each called by several threads.
PROBLEMS = [((1, 8, 6, 9, 10), (8, 8, 3, 3, 3), dict(padding=1), np.float32),
            ((2, 4, 5, 7, 6), (4, 1, 3, 3, 3), dict(groups=4, padding_mode="reflect", padding=1),
             np.float64),
            ((1, 2, 5, 6, 7), (3, 2, 2, 3, 2), dict(stride=(1, 2, 1)), np.complex64),
            ((1, 1, 12, 12, 12), (1, 1, 5, 5, 5), dict(padding="same", padding_mode="circular"),
             np.float32)]

CONCURRENT_CALLS = textwrap.dedent("""
    import threading, numpy as np, sys
    sys.path.insert(0, {tests!r})
    from test_threads import concurrent_results_match_serial
    from numba_conv3d.parallelism import threading_layer
    concurrent_results_match_serial()
    print("ok", threading_layer())
""")


def concurrent_results_match_serial(threads=8, rounds=3):
    """8 threads start together on the problems (2 threads each); every result is bitwise the result
    of a call made alone."""
    operands = [random_operands(np.random.default_rng(i), shape, weight, True, dtype) + (kwargs,)
                for i, (shape, weight, kwargs, dtype) in enumerate(PROBLEMS)]
    alone = [conv3d(x, w, b, **kwargs) for x, w, b, kwargs in operands]
    start = threading.Barrier(threads)

    def call(index):
        x, w, b, kwargs = operands[index % len(operands)]
        start.wait()
        return [conv3d(x, w, b, **kwargs) for _ in range(rounds)]

    with ThreadPoolExecutor(threads) as pool:
        for index, results in enumerate(pool.map(call, range(threads))):
            for result in results:
                np.testing.assert_array_equal(result, alone[index % len(operands)])


def run_python(script, **env):
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600,
                          env=dict(os.environ, **env))


def test_eight_threads_at_once_get_bitwise_the_results_of_calls_alone():
    concurrent_results_match_serial()


@pytest.mark.parametrize("layer", ["workqueue", "omp", "tbb"])
def test_every_threading_layer_survives_concurrent_callers(layer):
    done = run_python(CONCURRENT_CALLS.format(tests=os.path.dirname(__file__)),
                      NUMBA_THREADING_LAYER=layer)
    if "No threading layer could be loaded" in done.stderr:
        pytest.skip(f"Numba's {layer} layer is not available here")
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["ok", layer]


FORK = textwrap.dedent("""
    import multiprocessing as mp, numpy as np
    from numba_conv3d import conv3d
    from numba_conv3d.parallelism import threading_layer
    x = np.arange(4 * 6 ** 3, dtype=np.float32).reshape(1, 4, 6, 6, 6)
    w = np.ones((4, 4, 3, 3, 3), np.float32)

    def child(queue):
        try:
            queue.put(float(conv3d(x, w).sum()))
        except RuntimeError as err:
            queue.put(str(err))

    if __name__ == "__main__":
        expected = float(conv3d(x, w).sum())
        for method in ("fork", "spawn"):
            context = mp.get_context(method)
            queue = context.Queue()
            worker = context.Process(target=child, args=(queue,))
            worker.start()
            answer = queue.get(timeout=300)
            worker.join()
            print(method, threading_layer(), worker.exitcode, answer == expected or answer)
""")


def test_fork_after_a_call_works_or_explains_the_fix(tmp_path):
    script = tmp_path / "fork_after_call.py"
    script.write_text(FORK)
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    fork, spawn = done.stdout.splitlines()
    assert spawn.split()[2:] == ["0", "True"]
    method, layer, exitcode, answer = fork.split(maxsplit=3)
    assert exitcode == "0"
    if layer == "omp":
        assert "forked from one that already ran parallel kernels on GNU OpenMP" in answer
        assert "'spawn' or 'forkserver'" in answer
    else:
        assert answer == "True"


NESTED = textwrap.dedent("""
    import numpy as np
    from numba import njit, prange
    from numba_conv3d import conv3d

    @njit(parallel=True)
    def filter_bank(x, weights):
        out = np.empty((weights.shape[0],) + x.shape[1:])
        for i in prange(weights.shape[0]):
            out[i] = conv3d(x, weights[i:i + 1], padding=1)[0]
        return out

    x = np.random.default_rng(0).standard_normal((1, 6, 7, 8))
    weights = np.random.default_rng(1).standard_normal((4, 1, 3, 3, 3))
    expected = np.stack([conv3d(x, weights[i:i + 1], padding=1)[0] for i in range(4)])
    print(np.array_equal(filter_bank(x, weights), expected))
""")


def test_a_users_prange_loop_around_conv3d_does_not_abort():
    if threading_layer() == "workqueue":
        pytest.skip("Numba's workqueue layer aborts on nested parallelism (README: thread safety)")
    done = run_python(NESTED)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "True"
