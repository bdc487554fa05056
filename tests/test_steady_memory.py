"""The benchmarks' allocator setting: freed blocks stay mapped, so a repeated allocation does not
page-fault again."""
import platform
import resource

import numpy as np
import pytest

from numba_conv3d.steady_memory import keep_freed_memory_mapped


def _fill_and_free(size):
    block = np.empty(size, np.uint8)
    block[::4096] = 1


@pytest.fixture
def small_pages():
    """NumPy's large arrays on 4 KiB pages (not transparent huge pages), one fault per page."""
    set_hugepage = np._core.multiarray._set_madvise_hugepage
    previous = set_hugepage(False)
    yield
    set_hugepage(previous)


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt's thresholds are glibc's")
def test_a_freed_block_is_reused_without_page_faults(small_pages):
    assert keep_freed_memory_mapped()
    size = 96 << 20  # above glibc's largest dynamic mmap threshold (32 MiB)
    _fill_and_free(size)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    _fill_and_free(size)
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
    assert faults < (size >> 12) // 10, faults
