"""The CPU kernels are built from SIMD vectors as wide as the target's registers (``config.VECTOR_BYTES``:
64 bytes with AVX-512, 32 with AVX2). The rest of the suite runs the width of this machine; on an
AVX-512 machine this test also runs the AVX2 width, in a fresh process that compiles for a Haswell
target (its own cache), so that both widths' block shapes, row ends and masked tails are checked."""
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from numba_conv3d import config

TESTS = Path(__file__).parent

SCRIPT = textwrap.dedent("""
    import numpy as np
    from checks import (assert_every_algorithm_matches_reference, assert_close, gradient_bounds,
                        random_operands)
    from numba_conv3d import config, conv3d
    from numba_conv3d.grad import conv3d_backward
    from test_grad import torch_gradients

    assert config.VECTOR_BYTES == 32, config.VECTOR_BYTES
    rng = np.random.default_rng(0)
    # (input, weight, keywords): rows ending in wide, narrow and single-vector blocks, stacked rows,
    # strides, dilation, depthwise, one channel
    cases = [((1, 5, 3, 6, 61), (6, 5, 2, 3, 3), dict(padding=1, padding_mode="reflect")),
             ((2, 4, 5, 9, 8), (8, 2, 3, 3, 3), dict(groups=2, stride=(1, 2, 1), padding=(1, 2, 1))),
             ((1, 3, 6, 7, 30), (3, 1, 3, 3, 3), dict(groups=3, dilation=2, padding="same")),
             ((1, 1, 7, 9, 45), (1, 1, 3, 5, 3), dict(padding=2, padding_mode="circular"))]
    for dtype in (np.float32,):  # float64 blocks differ only in lanes; its compile would double the time
        for input_shape, weight_shape, kwargs in cases:
            x, w, b = random_operands(rng, input_shape, weight_shape, True, dtype)
            assert_every_algorithm_matches_reference(x, w, b, **kwargs)
            g = random_operands(rng, conv3d(x, w, **kwargs).shape, weight_shape, False, dtype)[0]
            expected = torch_gradients(x, w, b, g, **kwargs)
            magnitudes = torch_gradients(np.abs(x), np.abs(w), None, np.abs(g), **kwargs)[:2]
            bounds = gradient_bounds(dtype, w, g, magnitudes, **kwargs)
            for actual, wanted, bound in zip(conv3d_backward(x, w, g, **kwargs), expected, bounds):
                assert_close(actual, wanted, bound)
    print("ok")
""")


@pytest.mark.skipif(config.VECTOR_BYTES == 32, reason="this CPU has no AVX-512: the whole suite already "
                                                      "runs the 32-byte (AVX2) kernels")
def test_avx2_width_kernels_match_the_reference(tmp_path):
    pytest.importorskip("torch", reason="torch is the gradients' oracle here")
    env = dict(os.environ, NUMBA_CPU_NAME="haswell", NUMBA_CPU_FEATURES="", NUMBA_CACHE_DIR=str(tmp_path),
               PYTHONPATH=os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]))
    result = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True,
                            timeout=900)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr[-3000:]
