"""Start-up: importing compiles nothing, every kernel is cached on disk, and warmup fills the cache."""
import subprocess
import sys

from click.testing import CliRunner

from numba_conv3d.cli import main

NOTHING_COMPILED = """
import sys, numba.core.dispatcher as d, numba_conv3d
jitted = [v for name, m in list(sys.modules.items()) if name.startswith("numba_conv3d")
          for v in vars(m).values() if isinstance(v, d.Dispatcher)]
assert len(jitted) > 10, len(jitted)
uncached = [f.py_func.__name__ for f in jitted if type(f._cache).__name__ == "NullCache"]
print(sum(len(f.overloads) for f in jitted), uncached)
"""


def test_import_compiles_nothing_and_every_kernel_caches():
    done = subprocess.run([sys.executable, "-c", NOTHING_COMPILED], capture_output=True, text=True,
                          check=True)
    assert done.stdout.strip() == "0 []"


def test_warmup_compiles_each_algorithm_and_the_jitted_entry_per_dtype(tmp_path):
    result = CliRunner().invoke(main, ["warmup", "--dtype", "float64", "--jit"], catch_exceptions=False)
    lines = result.output.splitlines()
    assert [line.split()[:2] for line in lines[:16]] == [["fft", "float64"],
                                                         ["depthwise", "float64"],
                                                         ["winograd-points", "float64"],
                                                         ["winograd", "float64"],
                                                         ["winograd-strided", "float64"],
                                                         ["tap-gemm", "float64"],
                                                         ["winograd-depth", "float64"],
                                                         ["plane-gemm", "float64"],
                                                         ["pointwise", "float64"],
                                                         ["gemm", "float64"],
                                                         ["phase-flat", "float64"],
                                                         ["channel-vectorized", "float64"],
                                                         ["blocked", "float64"],
                                                         ["row-blocked", "float64"],
                                                         ["direct", "float64"],
                                                         ["jitted-conv3d", "float64"]]
    assert lines[16].startswith("total") and "cache:" in lines[16]
