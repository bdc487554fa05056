"""Large volumes (int64 index arithmetic, memory checked before allocating) and interrupts."""
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
from numba import njit

from numba_conv3d import conv3d, plan_conv3d
from numba_conv3d.planner import check_host_memory
from numba_conv3d.shape_rules import conv_output_size, padded_source_index

BEYOND_INT32 = 2 ** 31


@njit(cache=True)
def _jitted_rules(position, pad_front, size, mode, kernel, stride, dilation):
    return (padded_source_index(position, pad_front, size, mode),
            conv_output_size(size, pad_front, pad_front, kernel, stride, dilation))


def test_extents_and_offsets_past_int32_are_exact():
    plan = plan_conv3d((2, 3, 1500, 1500, 1000), (4, 3, 3, 3, 3), padding=1)
    assert plan.output_shape == (2, 4, 1500, 1500, 1000)
    assert plan.macs == 2 * 4 * 1500 * 1500 * 1000 * 3 * 27 > BEYOND_INT32
    size = 3 * BEYOND_INT32 + 7
    # reflect (mode 1) and circular (mode 3) positions far past 2**31, in compiled code
    assert _jitted_rules(size + 2, 2, size, 1, 3, 1, 1) == (size - 2, size + 2)
    assert _jitted_rules(size + 3, 2, size, 3, 5, 2, 3) == (1, (size + 4 - 13) // 2 + 1)


def test_a_call_that_cannot_fit_fails_before_allocating():
    huge = np.lib.stride_tricks.as_strided(np.zeros(1, np.float32), (1, 1, 4000, 4000, 4000),
                                           (0,) * 5)
    # the output (953.67 GiB) and the broadcast input's copy into C order (238.42 GiB)
    with pytest.raises(MemoryError, match=r"conv3d: this call needs 1192.\d\d GiB .* input copied "
                                          r"into C order: 238.42 GiB.* but only"):
        conv3d(huge, np.ones((4, 1, 1, 1, 1), np.float32))
    plan = plan_conv3d((1, 8, 64, 64, 64), (8, 8, 3, 3, 3))
    check_host_memory("conv3d", plan, available=plan.memory_bytes(64))
    with pytest.raises(MemoryError, match=r"output \(1, 8, 62, 62, 62\) float32"):
        check_host_memory("conv3d", plan, available=plan.output_bytes - 1)


@pytest.mark.skipif(os.environ.get("NUMBA_CONV3D_SLOW") != "1",
                    reason="needs about 15 GiB and a minute; run with NUMBA_CONV3D_SLOW=1")
def test_an_output_past_two_to_the_31_elements_is_right():
    x = np.empty((1, 1, 1024, 1024, 700), np.float32)
    x[...] = (np.arange(700, dtype=np.float32) % 251)[None, None, None, None, :]
    x[0, 0, :, :, 0] = np.arange(1024, dtype=np.float32)[:, None]
    w = np.array([1.0, -2.0, 0.5, 3.0], np.float32).reshape(4, 1, 1, 1, 1)
    b = np.array([0.25, 1.0, -1.0, 2.0], np.float32)
    start = time.perf_counter()
    out = conv3d(x, w, b)
    print(f"\noutput {out.shape} ({out.size:,} elements, {out.nbytes / 2 ** 30:.1f} GiB) in "
          f"{time.perf_counter() - start:.1f} s")
    assert out.size > BEYOND_INT32
    flat = out.reshape(-1)
    for index in (0, BEYOND_INT32 - 1, BEYOND_INT32, BEYOND_INT32 + 12345, out.size - 1):
        c, d, h, w_ = np.unravel_index(index, out.shape[1:])
        assert flat[index] == w[c, 0, 0, 0, 0] * x[0, 0, d, h, w_] + b[c]
    np.testing.assert_array_equal(out[0, 3, 1023], 3 * x[0, 0, 1023] + 2)


INTERRUPTED = textwrap.dedent("""
    import signal, numpy as np
    from numba_conv3d import conv3d
    # A shell's background job starts with SIGINT ignored, which its children inherit: restore Python's
    # handler, so that the test sees what Ctrl-C does in an interactive session.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    x = np.random.default_rng(0).standard_normal((1, 16, 48, 48, 48)).astype(np.float32)
    w = np.ones((16, 16, 5, 5, 5), np.float32)
    small = conv3d(x[:, :, :8, :8, :8], w)
    # Compile the long call's kernels before the signal: a SIGINT that lands inside Numba's compiler
    # (an llvmlite ctypes callback) is printed and dropped by ctypes, never raised.
    conv3d(x, w)
    print("ready", flush=True)
    try:
        for _ in range(1000):
            conv3d(x, w)
    except KeyboardInterrupt:
        print("interrupted", flush=True)
    np.testing.assert_array_equal(conv3d(x[:, :, :8, :8, :8], w), small)
    print("usable", flush=True)
""")


def test_ctrl_c_during_a_long_call_leaves_the_process_usable():
    child = subprocess.Popen([sys.executable, "-c", INTERRUPTED], stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "ready"
    time.sleep(1.0)
    child.send_signal(signal.SIGINT)
    output, _ = child.communicate(timeout=300)
    assert child.returncode == 0
    assert output.split() == ["interrupted", "usable"]
