"""Cached kernels are rebuilt after an edit to any file of the package, not only their own."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numba_conv3d
from numba_conv3d import kernel_cache
from numba_conv3d.cpu import blocked

# Runs one small cached function of a copy of the package; prints "hits misses" of its cache.
SCRIPT = """
import numpy as np
from numba_conv3d.cpu.slab import index_map
index_map(5, 1, 3, 1)
print(index_map.stats.cache_hits.get(index_map.signatures[0], 0),
      index_map.stats.cache_misses.get(index_map.signatures[0], 0))
"""


def test_our_kernels_are_stamped_with_every_source_file_of_the_package():
    locator = blocked._blocked_kernel._cache._impl.locator
    assert type(locator).__module__ == kernel_cache.__name__
    files = [name for name, _, _ in locator.get_source_stamp()[1]]
    assert {"config.py", "shape_rules.py", "cpu/simd.py", "cpu/blocked.py"} <= set(files)


def test_an_edit_to_another_module_invalidates_the_cache(tmp_path):
    package = tmp_path / "numba_conv3d"
    shutil.copytree(Path(numba_conv3d.__file__).parent, package,
                    ignore=shutil.ignore_patterns("__pycache__"))
    env = dict(os.environ, PYTHONPATH=str(tmp_path))
    env.pop("NUMBA_CACHE_DIR", None)

    def run():
        result = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True,
                                timeout=300, cwd=tmp_path)
        assert result.returncode == 0, result.stderr[-2000:]
        return tuple(int(n) for n in result.stdout.split())

    assert run() == (0, 1)  # compiled, then cached
    assert run() == (1, 0)  # loaded from the cache
    with open(package / "config.py", "a") as config:
        config.write("\n# an edit that changes no kernel's own file\n")
    assert run() == (0, 1)  # compiled again
